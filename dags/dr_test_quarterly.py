"""
### Quarterly DR drill

**Runs every drill scenario, one after another, and writes the drill report.** Scheduled by
`drills.schedule` (quarterly, UTC) and runnable by hand or REST at any time.

**Steps:** `plan` checks the params (bad ones fail here, naming the field; nothing runs) and makes one
`dr_test_<scenario>` run per selected scenario, run id `<this run id>__<scenario>`. `run_scenario`
starts them one at a time and waits for each (in the triggerer); a failed scenario does not stop the
drill. `report` reads every scenario's stored result (`drills/results/` in the primary backup
bucket), and builds the report: success rate, overall success (>= 80 %), readiness (HIGH >= 90 %,
else MEDIUM; LOW below 80 %), RTO/RPO/integrity compliance per scenario, each scenario's recovery
split into detect / decide / switch / restore / verify, the business impact of the simulated
outage, recommendations derived from what failed, and the trend across past drills. It stores JSON
and an HTML page with charts under Object Lock in `drills.report_bucket`, copies the JSON to
`reports/drills/` in the primary backup bucket (the DR status board reads it), and sends the
summary to `drills.stakeholders`. The run fails when the drill's overall success is not met.

**Params:** `scenarios` (default all five), `faults` (e.g. `{"database_failure": "remove_backup"}`
to prove a failing scenario is reported and lowers readiness).

**Runbook:** the summary is in `report`'s log and return value; the HTML page is at the `html`
location it returns. A scenario's own run shows its steps and its `measure` log the full result.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from dr_automation.dag_defaults import dag_tags, default_args
from dr_automation.drills.quarterly import quarterly_params
from dr_automation.estate import load_estate

estate = load_estate()


@dag(
    dag_id="dr_test_quarterly",
    # Unpausing makes Airflow schedule the latest past quarter at once (catchup off): `plan` skips a
    # scheduled run that starts more than a day after its cron time, so no drill starts at 3 a.m.
    # just because someone unpaused the DAG.
    schedule=CronTriggerTimetable(estate.section("drills")["schedule"], timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(estate, retries=2, retry_delay_seconds=10),
    params=quarterly_params(),
    tags=dag_tags("drill", "reporting"),
    doc_md=__doc__,
)
def dr_test_quarterly() -> None:
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.task.trigger_rule import TriggerRule

    @task
    def plan(**context) -> list[dict]:
        from airflow.sdk.exceptions import AirflowSkipException

        from dr_automation.drills.quarterly import late_start, plan_runs

        dag_run = context["dag_run"]
        run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
        why = late_start(str(run_type), dag_run.logical_date or dag_run.run_after, datetime.now(UTC))
        if why:
            raise AirflowSkipException(why)
        return plan_runs(context["params"], context["run_id"])

    runs = plan()
    run_scenario = TriggerDagRunOperator.partial(
        task_id="run_scenario",
        wait_for_completion=True,
        deferrable=True,
        poke_interval=2,
        allowed_states=["success", "failed"],
        failed_states=[],
        max_active_tis_per_dagrun=1,
        retries=0,  # a retry would trigger the same run id again
    ).expand_kwargs(runs)

    @task(trigger_rule=TriggerRule.NONE_SKIPPED)  # after failed scenarios too; not after a skipped plan
    def report(runs: list[dict], **context) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from dr_automation.drills.quarterly import (
            build_report,
            notify_stakeholders,
            store_report,
            summary_text,
        )

        built = build_report(estate, runs, run_id=context["run_id"])
        where = store_report(estate, built)
        logging.getLogger(__name__).info("%s", summary_text(built, where))
        sent = notify_stakeholders(estate, built, where, context)
        outcome = {
            "drill_id": built["drill_id"],
            "success_rate": built["success_rate"],
            "overall_success": built["overall_success"],
            "readiness": built["readiness"],
            "report": where,
            "notified": sent["counts"],
        }
        if not built["overall_success"]:
            raise AirflowFailException(
                f"drill {built['drill_id']}: success rate {built['success_rate']:.0%} is below 80 %"
            )
        return outcome

    run_scenario >> report(runs)


dr_test_quarterly()
