"""
### Regional failover

**Moves API traffic to another region** — by the UI form, the REST API during an incident, or the
`region_health_monitor` after consecutive failed checks.

REST: `POST /api/v2/dags/regional_failover/dagRuns` with
`{"logical_date": null, "conf": {"target_region": "us-west-2", "reason": "...", "requested_by": "sre-oncall",
"incident_level": 3, "mode": "health_check", "dry_run": false}}`. A malformed conf is refused with 400.

**Steps:** authorize the requester (config allow-list; levels that need approval wait for a human
Approve/Reject), refuse an unhealthy target, preflight (failover records and health checks exist),
then switch DNS (nothing slow sits in front of it: notifications go out beside it), wait for
Route 53 INSYNC and for resolvers to answer the target, verify the target answers `/health` through
that address, record the failover, notify completion.

**Safety:** one traffic move at a time (pool `dr_traffic`, one active run); a run for the region
already serving is a successful no-op; `dry_run` reports the plan and changes nothing. If anything
fails after DNS moved, DNS is put back exactly as it was, the failure is notified, and the run fails.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import dag, task
from airflow.task.trigger_rule import TriggerRule

from dr_automation.dag_defaults import dag_tags, default_args
from dr_automation.estate import load_estate
from dr_automation.failover import failover_params
from dr_automation.operators.route53 import Route53RollbackOperator, Route53SwitchTrafficOperator
from dr_automation.sensors.route53 import DnsAnswerSensor, Route53ChangeInsyncSensor

estate = load_estate()
aws_conn_id = estate.connections["aws"]
SWITCH = "switch_dns"
RECORD = estate.route53["record_name"]
STEP_TASKS = (
    "authorize",
    "check_target_healthy",
    "preflight",
    SWITCH,
    "dns_answers_target",
    "verify_traffic",
)
# target region -> its address, resolved by Jinja at run time from the run's params
TARGET_ADDRESS = "{{ %r[params.target_region] }}" % {n: r.address for n, r in estate.regions.items()}


@dag(
    dag_id="regional_failover",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(estate, retries=1, retry_delay_seconds=5),
    params=failover_params(estate),
    tags=dag_tags("failover", "dns", "incident"),
    doc_md=__doc__,
    dagrun_timeout=timedelta(hours=1),
)
def regional_failover() -> None:
    @task(retries=0)
    def authorize(**context) -> dict:
        """Refuse unknown keys, unknown requesters and placeholder reasons before anything moves."""
        from dr_automation.failover import authorize as decide
        from dr_automation.failover import new_failover_id

        decision = decide(load_estate(), context["dag_run"].conf or {}, context["params"])
        decision["failover_id"] = new_failover_id(context["run_id"])
        return decision

    @task.branch(retries=0)
    def approval_needed(decision: dict) -> str:
        return "await_approval" if decision["needs_approval"] else "check_target_healthy"

    await_approval = ApprovalOperator(
        task_id="await_approval",
        subject=f"Approve failover of {RECORD} to {{{{ params.target_region }}}}?",
        body="Requested by **{{ params.requested_by }}** at level {{ params.incident_level }}: {{ params.reason }}",
        response_timeout=timedelta(minutes=30),
        retries=0,
    )

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, retries=0)
    def check_target_healthy(**context) -> dict:
        """Never move traffic onto a region that is not answering healthy."""
        from dr_automation.failover import require_healthy_target

        return require_healthy_target(load_estate(), context["params"]["target_region"])

    @task(retries=0)
    def preflight(**context) -> dict:
        """Failover records and health checks exist (the data plane is ready)."""
        from dr_automation.hooks.route53 import Route53Hook
        from dr_automation.route53_plan import health_check_name, routing_state

        current = load_estate()
        hook = Route53Hook(aws_conn_id=current.connections["aws"])
        zone_id = hook.get_hosted_zone_id(current.route53["hosted_zone"])
        state = routing_state(current, hook.list_record_sets(zone_id))
        checks = {r: bool(hook.find_health_check(health_check_name(current, r))) for r in current.regions}
        if state.mode == "absent":
            raise ValueError(f"no records for {current.route53['record_name']}: run dns_failover_setup first")
        return {"routing": state.mode, "serving": state.primary_region, "health_checks": checks}

    switch = Route53SwitchTrafficOperator(
        task_id=SWITCH,
        target_region="{{ params.target_region }}",
        mode="{{ params.mode }}",
        dry_run="{{ params.dry_run }}",
        aws_conn_id=aws_conn_id,
        pool="dr_traffic",
        retries=0,
    )

    @task(retries=0)
    def notify_initiation(decision: dict, **context) -> dict:
        """Beside the switch, never in front of it."""
        from dr_automation.failover import notify_failover

        p = context["params"]
        return notify_failover(
            context,
            f"Failover of {RECORD} to {p['target_region']} started",
            f"{p['reason']} (requested by {p['requested_by']}, mode {p['mode']}{', dry run' if p['dry_run'] else ''})",
        )

    insync = Route53ChangeInsyncSensor(
        task_id="wait_insync",
        change_id=f"{{{{ (ti.xcom_pull(task_ids='{SWITCH}')['change'] or {{}}).get('change_id') }}}}",
        aws_conn_id=aws_conn_id,
        waiter_delay=2,
        retries=0,
    )

    dns_answers_target = DnsAnswerSensor(
        task_id="dns_answers_target",
        name=estate.route53["record_name"],
        expected=TARGET_ADDRESS,
        nameservers=list(estate.route53["verify_nameservers"]),
        record_type=estate.route53["record_type"],
        check_interval=0.5,
        timeout=300,
        retries=0,
    )

    @task.short_circuit(ignore_downstream_trigger_rules=False, retries=0)
    def changes_applied(**context) -> bool:
        """A dry run stops here: nothing moved, so there is nothing to wait for or verify."""
        return not context["params"]["dry_run"]

    @task(retries=0)
    def verify_traffic(**context) -> dict:
        """Through the address DNS now gives, the target answers /health."""
        from dr_automation.failover import require_healthy_target

        return require_healthy_target(load_estate(), context["params"]["target_region"])

    @task(trigger_rule=TriggerRule.NONE_FAILED, retries=2)
    def record_failover(decision: dict, **context) -> dict:
        """Every run that was authorized leaves a record: success, dry run, or not approved."""
        from dr_automation.failover import write_failover_record

        ti = context["ti"]
        steps = {t: ti.xcom_pull(task_ids=t) for t in STEP_TASKS}
        if steps["verify_traffic"]:
            outcome = "success"
        elif decision["dry_run"] and steps[SWITCH]:
            outcome = "dry_run"
        else:
            outcome = "not_approved"
        record = {**decision, "outcome": outcome, "run_id": context["run_id"], "steps": steps}
        location = write_failover_record(load_estate(), record, region=decision["target_region"])
        return {"outcome": outcome, "location": location}

    @task(retries=0)
    def notify_completion(decision: dict, recorded: dict, **context) -> dict:
        from dr_automation.failover import notify_failover

        p = context["params"]
        titles = {
            "success": f"{RECORD} now served from {p['target_region']}",
            "dry_run": f"Dry run: failover of {RECORD} to {p['target_region']} planned, nothing changed",
            "not_approved": f"Failover of {RECORD} to {p['target_region']} was not approved",
        }
        return notify_failover(
            context,
            titles[recorded["outcome"]],
            f"{p['reason']} (requested by {p['requested_by']}). Record: {recorded['location']}",
        )

    rollback = Route53RollbackOperator(
        task_id="rollback_dns",
        switch_result=f"{{{{ ti.xcom_pull(task_ids='{SWITCH}') }}}}",
        aws_conn_id=aws_conn_id,
        trigger_rule=TriggerRule.ONE_FAILED,
        pool="dr_traffic",
        retries=3,
    )

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def notify_failure(**context) -> dict:
        """Stakeholders hear of a failed switch; a refusal before the switch only pages on-call."""
        from airflow.exceptions import AirflowSkipException

        from dr_automation.audit import step_events
        from dr_automation.failover import notify_failover
        from dr_automation.operators.route53 import SWITCH_EVENT

        started = context["ti"].xcom_pull(task_ids=SWITCH, key="switch_started")
        if not started and not step_events(load_estate(), SWITCH_EVENT, context["run_id"]):
            raise AirflowSkipException("the switch never started: nothing moved, on-call was paged")
        p = context["params"]
        return notify_failover(
            context,
            f"Failover of {RECORD} to {p['target_region']} FAILED",
            "The failover failed and DNS was restored to its previous state. See the run for the failing step.",
        )

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher() -> None:
        """Keeps a run whose body failed marked failed even though rollback succeeded."""
        raise RuntimeError("the failover failed; DNS was rolled back (see rollback_dns)")

    decision = authorize()
    branch = approval_needed(decision)
    healthy = check_target_healthy()
    branch >> [await_approval, healthy]
    await_approval >> healthy
    checked = preflight()
    healthy >> checked >> switch
    checked >> notify_initiation(decision)
    verified = verify_traffic()
    switch >> changes_applied() >> insync >> dns_answers_target >> verified
    recorded = record_failover(decision)
    [verified, switch] >> recorded
    notify_completion(decision, recorded)
    moved = [switch, insync, dns_answers_target, verified]
    failure_notice = notify_failure()
    moved >> rollback >> failure_notice
    moved >> failure_notice  # ONE_FAILED looks at direct parents: see the failed step itself
    [decision, healthy, checked, switch, insync, dns_answers_target, verified, recorded] >> watcher()


regional_failover()
