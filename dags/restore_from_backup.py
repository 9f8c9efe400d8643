"""
### Restore from backup

**Puts a verified backup back** — from the UI form or the REST API during an incident:
`POST /api/v2/dags/restore_from_backup/dagRuns` with `{"logical_date": null, "conf": {"backup_id":
"manual__2026-11-25T03-00-00-00-00", "components": ["database", "files", "configuration"], "target":
"in_place", "dry_run": true}}`. Run it with `dry_run` first: it reports the plan and stops nothing.

**Refused before anything is stopped** (the failed `validate` task names the field and why): an
unknown backup id, a backup that is not complete, one that has not passed verification (unless
`override_unverified_reason` says why it must be), components the backup does not hold, another
restore of the same target running (one at a time: a lock in the primary backup bucket).

**Steps:** validate and plan; thaw archived artifacts; stop services (every Deployment of the
estate's namespaces to zero, previous replicas kept); safety snapshot (a toolbox pod dumps the live
database, another exports the live Kubernetes objects; object and secret versions recorded); restore
the database (toolbox pod: `pg_restore --clean` in one transaction, or a new database for
`new_instance`; RDS snapshots and point-in-time backups restore to a new RDS instance), files (S3
objects copied back to their bucket) and configuration (Kubernetes objects applied, secrets put
back); verify every table's rows and checksum against the figures recorded at backup time; restart
services at their previous replicas; verify the deployments are ready and the API answers healthy.

**On failure:** the safety dump is restored, new object versions deleted, the live Kubernetes objects
and secret versions put back, services restarted; then the failure is notified and the run fails
(`rollback_on_failure: false` leaves everything as it is, services stopped, for investigation).

**Record:** `s3://<backup's bucket>/backups/<tier>/<backup id>/restores/<restore id>.json` (every step,
timing, result, outcome) and `restore.*` events in the audit log with the restore id.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from airflow.task.trigger_rule import TriggerRule

from dr_automation.dag_defaults import dag_tags, default_args
from dr_automation.estate import load_estate
from dr_automation.restore import pods
from dr_automation.restore.plan import restore_id, restore_params

estate = load_estate()
ANY_SUCCESS = TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
DATABASES = pods.databases(estate)


def _plan(context) -> dict:
    return context["ti"].xcom_pull(task_ids="validate")


@dag(
    dag_id="restore_from_backup",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(estate, retries=1, retry_delay_seconds=5),
    params=restore_params(estate),
    user_defined_filters={pods.RESTORE_ID_FILTER: restore_id},
    tags=dag_tags("restore", "incident"),
    doc_md=__doc__,
    dagrun_timeout=timedelta(hours=6),
)
def restore_from_backup() -> None:
    @task(retries=0)
    def validate(**context) -> dict:
        """Everything checked and planned before anything is stopped; the target's lock taken."""
        from dr_automation.restore.plan import describe
        from dr_automation.restore.steps import validate as check
        from dr_automation.restore.steps import xcom_values

        plan = check(load_estate(), context["dag_run"].conf or {}, context["params"], context["run_id"])
        for key, value in xcom_values(plan).items():
            context["ti"].xcom_push(key=key, value=value)
        for line in describe(plan):
            print(line)
        return plan

    @task.short_circuit(ignore_downstream_trigger_rules=False, retries=0)
    def changes_allowed(plan: dict) -> bool:
        """A dry run ends here: the plan is reported (validate's log and the record), nothing stopped."""
        return not plan["request"]["dry_run"]

    def step(name: str, retries: int = 1, trigger_rule: str = TriggerRule.ALL_SUCCESS):
        @task(task_id=name, retries=retries, trigger_rule=trigger_rule)
        def run(**context) -> dict:
            from dr_automation.restore import steps

            current, plan = load_estate(), _plan(context)
            return steps.audited(current, context, name, plan, lambda: getattr(steps, name)(current, plan))

        return run()

    @task.branch(retries=1)
    def safety_snapshot(**context) -> list[str]:
        """Object and secret versions recorded here; the pods this plan needs take the rest."""
        from dr_automation.restore import steps

        current, plan = load_estate(), _plan(context)
        steps.audited(
            current,
            context,
            "safety_versions",
            plan,
            lambda: {**steps.safety_files(current, plan), **steps.safety_secrets(current, plan)},
        )
        return [*steps.chosen_pods(plan, "safety"), "choose_restore_pods"]

    @task.branch(trigger_rule=ANY_SUCCESS, retries=0)
    def choose_restore_pods(**context) -> list[str]:
        from dr_automation.restore.steps import chosen_pods

        return [*chosen_pods(_plan(context), "restore"), "restore_rds"]

    @task(trigger_rule=ANY_SUCCESS, retries=1)
    def restore_rds(**context) -> dict:
        from dr_automation.restore import steps

        current, plan = load_estate(), _plan(context)
        return steps.audited(current, context, "restore_rds", plan, lambda: steps.restore_rds(current, plan))

    @task(retries=0)
    def verify_health(**context) -> dict:
        from airflow.exceptions import AirflowSkipException

        from dr_automation.restore import steps

        current, plan = load_estate(), _plan(context)
        if plan["request"]["target"] != "in_place":
            raise AirflowSkipException("new_instance: the live application was not touched")
        return steps.audited(
            current, context, "verify_health", plan, lambda: steps.verify_health(current, plan)
        )

    @task(retries=1)
    def restart_services(**context) -> dict:
        from airflow.exceptions import AirflowSkipException

        from dr_automation.restore import steps

        current, plan = load_estate(), _plan(context)
        if not plan["request"]["restart_services"]:
            raise AirflowSkipException("restart_services is false: services stay stopped")
        return steps.audited(
            current, context, "restart_services", plan, lambda: steps.restart_services(current, plan)
        )

    @task.branch(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def plan_rollback(**context) -> list[str]:
        """What the failure needs put back, from what ran (nothing, when validate refused)."""
        from dr_automation.restore.steps import rollback_plan

        plan, ti = _plan(context), context["ti"]
        if plan is None:
            return []
        states = ti.get_task_states(dag_id=context["dag"].dag_id, run_ids=[context["run_id"]]).get(
            context["run_id"], {}
        )
        what = rollback_plan(plan, states)
        ti.xcom_push(key="what", value=what)
        return [*what["databases"], "rollback_rest"] if what["rollback"] else []

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=2, retry_delay=timedelta(seconds=2))
    def rollback_rest(**context) -> dict:
        """Files, configuration, then services back, even when a database rollback pod failed."""
        from airflow.exceptions import AirflowSkipException

        from dr_automation.restore import steps

        what = context["ti"].xcom_pull(task_ids="plan_rollback", key="what")
        if not what or not what.get("rollback"):
            raise AirflowSkipException("no rollback needed")
        current, plan = load_estate(), _plan(context)
        done = steps.audited(
            current, context, "rollback", plan, lambda: steps.rollback_rest(current, plan, what)
        )
        states = (
            context["ti"]
            .get_task_states(dag_id=context["dag"].dag_id, run_ids=[context["run_id"]])
            .get(context["run_id"], {})
        )
        failed = [t for t in what["databases"] if states.get(t) != "success"]
        if failed:
            raise RuntimeError(f"rollback incomplete: {', '.join(failed)} did not restore the safety dump")
        return done

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=2)
    def record_restore(**context) -> dict:
        """Every run leaves a restore manifest, whatever its end; the lock is released."""
        from dr_automation.restore import record
        from dr_automation.restore.backup import release_lock
        from dr_automation.restore.steps import audited

        current, ti, plan = load_estate(), context["ti"], _plan(context)
        run_id = context["run_id"]
        states = ti.get_task_states(dag_id=context["dag"].dag_id, run_ids=[run_id]).get(run_id, {})
        crumbs = [dict(c) for c in ti.get_task_breadcrumbs(ti.dag_id, run_id)]
        results = {
            c["task_id"]: ti.xcom_pull(task_ids=c["task_id"]) for c in crumbs if c["task_id"] != "validate"
        }
        manifest = record.build(
            plan,
            dict(context["params"]),
            states,
            record.steps_of(crumbs, results),
            ti.xcom_pull(task_ids="plan_rollback", key="what"),
            run_id=run_id,
            pods=record.pod_results(current, plan) if plan else None,
        )
        if plan is None:
            print(f"refused: {manifest['detail']}")
            return {"outcome": manifest["outcome"], "detail": manifest["detail"], "location": None}
        location = audited(
            current,
            context,
            "record",
            plan,
            lambda: {"location": record.write(current, plan, manifest), "outcome": manifest["outcome"]},
        )["location"]
        if plan.get("lock_taken"):
            release_lock(current, plan["lock"], run_id)
        return {k: manifest[k] for k in ("outcome", "detail", "restore_id", "backup")} | {
            "location": location
        }

    @task(retries=0)
    def notify_restore(recorded: dict, **context) -> dict:
        from airflow.exceptions import AirflowSkipException

        from dr_automation.restore.record import notify

        counts = notify(load_estate(), context, recorded)
        if counts is None:
            raise AirflowSkipException(f"outcome {recorded['outcome']}: nothing to announce")
        return counts

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher() -> None:
        """Keeps a failed restore failed even when its rollback succeeded."""
        raise RuntimeError(
            "the restore failed (see the failed step; the rollback and the restore manifest say what was put back)"
        )

    plan = validate()
    allowed = changes_allowed(plan)
    prepare = step("prepare")
    stop = step("stop_services")
    safety = safety_snapshot()
    safety_pods = [pods.pod(estate, "safety_dump", d) for d in DATABASES] + [
        pods.pod(estate, pods.SAFETY_K8S)
    ]
    chooser = choose_restore_pods()
    restore_pods = [
        pods.pod(estate, kind, d) for d in DATABASES for kind in ("restore_database", "restore_new_database")
    ]
    rds = restore_rds()
    files = step("restore_files", retries=0)
    configuration = step("restore_configuration", retries=0)
    verified = step("verify_data", retries=0)
    restarted = restart_services()
    healthy = verify_health()
    allowed >> prepare >> stop >> safety >> safety_pods
    safety >> chooser
    safety_pods >> chooser >> restore_pods
    [chooser, *restore_pods] >> rds >> files >> configuration >> verified >> restarted >> healthy

    body = [
        prepare,
        stop,
        safety,
        *safety_pods,
        chooser,
        *restore_pods,
        rds,
        files,
        configuration,
        verified,
        restarted,
        healthy,
    ]
    rollback = plan_rollback()
    rollback_pods = [pods.pod(estate, "rollback_database", d, retries=2) for d in DATABASES]
    rest = rollback_rest()
    [plan, *body] >> rollback >> rollback_pods >> rest
    rollback >> rest
    recorded = record_restore()
    # not a direct child of changes_allowed: a dry run skips its direct children, and this must run
    [plan, *body, *rollback_pods, rest] >> recorded  # not a child of the branch plan_rollback: it must run
    notify_restore(recorded)
    [plan, *body, *rollback_pods, rest] >> watcher()


restore_from_backup()
