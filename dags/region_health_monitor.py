"""
### Region health monitor

**Watches every region continuously and starts `regional_failover` when the region serving traffic
fails.** One run at a time (`@continuous`); the waiting happens in the triggerer, not in a worker slot.

**How it watches:** `wait_for_unhealthy_primary` reads which region serves now (Route 53), then its
trigger checks every region each `health.check_interval_seconds`: the API (`GET /health`: HTTP 200
within `health.thresholds.response_time_seconds`), the database (`SELECT 1` where the estate has a
database connection), and CloudWatch metrics from the region's own CloudWatch (`ErrorRate`,
`Latency` p95, `Availability` against the thresholds). Score = passed / applicable checks; a region
is healthy at `health.healthy_score` (0.8). Every cycle is stored in `dr_region_health` (audit
database): each region's score over time, with every check.

**When it acts:** the serving region unhealthy `health.consecutive_failures` (3) cycles in a row.
One healthy cycle resets the count, so flapping never adds up to a failover. A triggerer restart
continues the count from `dr_region_health`.

**What it does (`decide_and_act`, one task so no scheduler round trips sit between detection and the failover):** classifies the incident (one region down: level 3) with its business
impact, picks the target (healthy secondary, then DR) and triggers `regional_failover` with
`requested_by=region_health_monitor`, the level and a reason that summarises the evidence; the full
evidence is the sensor's XCom and the history table. It does nothing when a `regional_failover`
run is already queued or running, when traffic was switched within
`health.failover_cooldown_minutes`, or when traffic already moved. Every region down: no failover,
a level-4 alert instead (once per cool-down). Each decision is audited (`health.decision`).

**Runbook:** a failover started by the monitor shows up as a `regional_failover` run with run id
`region_health_monitor__<this run id>`. To stop automatic failovers, pause this DAG (runs in
flight finish their current wait). To see why it fired: this run's `wait_for_unhealthy_primary`
XCom, or `SELECT * FROM dr_region_health WHERE monitor_id LIKE 'region_health_monitor/<run id>/%'`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag

from dr_automation.dag_defaults import dag_tags, default_args
from dr_automation.estate import load_estate
from dr_automation.operators.region_health import RegionHealthDecisionOperator
from dr_automation.sensors.region_health import RegionHealthSensor

estate = load_estate()


@dag(
    dag_id="region_health_monitor",
    schedule="@continuous",
    # A start_date is required in practice: without one, Airflow 3.3's continuous timetable gives the
    # first run a zero-length interval and the second run the same logical date, so it is never
    # created ("run already exists") and monitoring stops after the first run.
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(estate, retries=3, retry_delay_seconds=10),
    tags=dag_tags("health", "failover", "incident"),
    doc_md=__doc__,
)
def region_health_monitor() -> None:
    wait_for_unhealthy_primary = RegionHealthSensor(task_id="wait_for_unhealthy_primary")
    decide_and_act = RegionHealthDecisionOperator(
        task_id="decide_and_act", event_task_id="wait_for_unhealthy_primary", retries=2
    )
    wait_for_unhealthy_primary >> decide_and_act


region_health_monitor()
