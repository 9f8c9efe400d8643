"""The monitor's decision and its action in one task: decide, then trigger the failover, alert, or
do nothing.

One task instead of decide -> branch -> trigger saves two scheduler round trips (about a second
each) between the third failed check and the failover run: that time is part of the outage. The
decision stays visible: it is this task's XCom (key ``decision``), its log, and an audit event.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

DECISION_XCOM_KEY = "decision"


class RegionHealthDecisionOperator(TriggerDagRunOperator):
    """Reads the sensor's evidence, decides (dr_automation.health.decision), then acts on it."""

    def __init__(
        self, *, event_task_id: str, trigger_dag_id: str = "regional_failover", **kwargs: Any
    ) -> None:
        kwargs.setdefault("trigger_run_id", "region_health_monitor__{{ run_id }}")
        super().__init__(
            trigger_dag_id=trigger_dag_id,
            conf={},
            skip_when_already_exists=True,  # a retry never starts a second failover
            fail_when_dag_is_paused=True,  # a paused failover DAG would leave the run queued silently
            wait_for_completion=False,
            **kwargs,
        )
        self.event_task_id = event_task_id

    def execute(self, context: Any) -> Any:
        from dr_automation.estate import load_estate
        from dr_automation.health.decision import (
            ALERT_ALL_DOWN,
            TRIGGER_FAILOVER,
            run_decision,
            send_all_down_alert,
        )

        estate = load_estate()
        ti = context["ti"]
        decision = run_decision(estate, ti.xcom_pull(task_ids=self.event_task_id), context)
        ti.xcom_push(key=DECISION_XCOM_KEY, value=decision)
        self.log.info("decision: %s: %s", decision["action"], decision["why"])
        if decision["action"] == TRIGGER_FAILOVER:
            self.conf = dict(decision["conf"])
            return super().execute(context)
        if decision["action"] == ALERT_ALL_DOWN:
            return send_all_down_alert(estate, decision, context)
        return None
