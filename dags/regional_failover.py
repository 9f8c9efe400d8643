"""
### Regional failover

**Moves API traffic to another region** — by the UI form, the REST API during an incident, or the
`region_health_monitor` after consecutive failed checks.

REST: `POST /api/v2/dags/regional_failover/dagRuns` with
`{"logical_date": null, "conf": {"target_region": "us-west-2", "reason": "...", "requested_by": "sre-oncall",
"incident_level": 3, "mode": "health_check", "dry_run": false}}`. A malformed conf is refused with 400.

**Steps:** authorize the requester (config allow-list; levels that need approval wait for a human
Approve/Reject, and an unanswered request times out after `approval_timeout_minutes`), refuse an
unhealthy target, preflight (failover records and health checks exist), then switch DNS (nothing
slow sits in front of it: notifications go out beside it). Then, side by side: wait for Route 53
INSYNC and for resolvers to answer the target; scale the target's Auto Scaling group to its serving
size; copy user sessions to the target's Redis; open the target's load-balancer write gate and
close the old region's (no two regions take writes). Verify the target answers `/health` through
the address DNS gives, record the new serving region, write the failover record, notify.

**Safety:** one traffic move at a time (pool `dr_traffic`, one active run); a run for the region
already serving is a successful no-op; `dry_run` reports the plan and changes nothing. If anything
fails after DNS moved, DNS, capacity and write gates are put back exactly as they were, the failure is
notified, and the run fails. Every run, whatever its end, leaves a failover record (who, why, who
approved, steps, timings, outcome) in the target region's bucket under `reports/failovers/`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task
from airflow.task.trigger_rule import TriggerRule

from dr_automation.dag_defaults import dag_tags, default_args
from dr_automation.estate import load_estate
from dr_automation.failover import MOVED_STEPS, failover_params
from dr_automation.operators.approval import APPROVAL_XCOM_KEY, RecordedApprovalOperator
from dr_automation.operators.route53 import Route53RollbackOperator, Route53SwitchTrafficOperator
from dr_automation.sensors.route53 import DnsAnswerSensor, Route53ChangeInsyncSensor

estate = load_estate()
aws_conn_id = estate.connections["aws"]
SWITCH = "switch_dns"
RECORD = estate.route53["record_name"]
STEP_TASKS = ("authorize", "await_approval", "check_target_healthy", "preflight", *MOVED_STEPS)
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
    @task.branch(retries=0)
    def authorize(**context) -> str | list[str]:
        """Refuse unknown keys, unknown requesters and placeholder reasons before anything moves;
        then wait for an approver, or go on (target health and preflight side by side).

        One task (decision in XCom key `decision`, branch as its result): every scheduler round
        trip before the switch is outage time."""
        from dr_automation.failover import DECISION_KEY, new_failover_id
        from dr_automation.failover import authorize as decide

        decision = decide(load_estate(), context["dag_run"].conf or {}, context["params"])
        decision["failover_id"] = new_failover_id(context["run_id"])
        context["ti"].xcom_push(key=DECISION_KEY, value=decision)
        return "await_approval" if decision["needs_approval"] else ["check_target_healthy", "preflight"]

    await_approval = RecordedApprovalOperator(
        task_id="await_approval",
        subject=f"Approve failover of {RECORD} to {{{{ params.target_region }}}}?",
        body="Requested by **{{ params.requested_by }}** at level {{ params.incident_level }}: {{ params.reason }}",
        response_timeout=timedelta(minutes=estate.raw["failover_authorization"]["approval_timeout_minutes"]),
        retries=0,
    )

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, retries=0)
    def check_target_healthy(**context) -> dict:
        """Never move traffic onto a region that is not answering healthy."""
        from dr_automation.failover import require_healthy_target

        return require_healthy_target(load_estate(), context["params"]["target_region"])

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, retries=0)
    def preflight(**context) -> dict:
        """Failover records and health checks exist (the data plane is ready); who serves now."""
        from dr_automation.failover import effective_switch_mode
        from dr_automation.hooks.route53 import Route53Hook
        from dr_automation.route53_plan import health_check_name, routing_view

        current = load_estate()
        hook = Route53Hook(aws_conn_id=current.connections["aws"])
        view = routing_view(current, hook)
        if view["mode"] == "absent":
            raise ValueError(f"no records for {current.route53['record_name']}: run dns_failover_setup first")
        checks = {r: bool(hook.find_health_check(health_check_name(current, r))) for r in current.regions}
        mode, why = effective_switch_mode(current, context["params"]["mode"], view)
        return {
            "routing": view["mode"],
            "serving": view["serving_region"],
            "health_checks": checks,
            "mode": mode,
            "mode_reason": why,
        }

    switch = Route53SwitchTrafficOperator(
        task_id=SWITCH,
        target_region="{{ params.target_region }}",
        mode="{{ ti.xcom_pull(task_ids='preflight')['mode'] }}",
        dry_run="{{ params.dry_run }}",
        aws_conn_id=aws_conn_id,
        pool="dr_traffic",
        retries=0,
    )

    @task(retries=0)
    def notify_initiation(**context) -> dict:
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
        timeout=estate.route53["propagation_timeout_seconds"],
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

    def _target_step(name: str):
        @task(task_id=name, retries=1, retry_delay=timedelta(seconds=2))
        def step(serving: dict, **context) -> dict:
            from dr_automation.target_region import FAILOVER_STEPS

            p = context["params"]
            return FAILOVER_STEPS[name](
                load_estate(), p["target_region"], serving["serving"], bool(p["dry_run"])
            )

        return step

    @task(retries=2)
    def record_new_primary(serving: dict, **context) -> dict:
        """The serving region, where reports, the monitor and the status board read it."""
        from dr_automation.failover import decision_of, record_serving_region

        decision = decision_of(context)
        return record_serving_region(
            load_estate(),
            region=decision["target_region"],
            previous=serving["serving"],
            failover_id=decision["failover_id"],
        )

    @task(trigger_rule=TriggerRule.ALL_DONE, retries=2)
    def record_failover(**context) -> dict:
        """Every run leaves a record, whatever its end: success, dry run, refused, rejected, timed
        out, or failed and rolled back. The outcome is read from task states and the HITL answer."""
        from dr_automation.failover import approver_of, decision_of, failover_outcome, write_failover_record

        ti, params = context["ti"], context["params"]
        states = ti.get_task_states(dag_id=context["dag"].dag_id, run_ids=[context["run_id"]])
        states = states.get(context["run_id"], {})
        approval = ti.xcom_pull(task_ids="await_approval", key=APPROVAL_XCOM_KEY)
        outcome, detail = failover_outcome(states, dry_run=bool(params["dry_run"]), approval=approval)
        decision = decision_of(context) or {
            k: params[k] for k in ("requested_by", "reason", "incident_level", "target_region", "mode")
        }
        failover_id = decision.get("failover_id") or f"refused-{context['run_id']}"
        record = {
            **decision,
            "failover_id": failover_id,
            "outcome": outcome,
            "detail": detail,
            "approval": approver_of(approval),
            "evidence": params.get("evidence"),
            "run_id": context["run_id"],
            "task_states": states,
            "steps": {t: ti.xcom_pull(task_ids=t) for t in STEP_TASKS if t != "await_approval"},
            "rollback": {t: ti.xcom_pull(task_ids=t) for t in ("rollback_dns", "restore_target")},
        }
        location = write_failover_record(load_estate(), record, region=params["target_region"])
        return {"outcome": outcome, "detail": detail, "location": location}

    @task(retries=0)
    def notify_completion(recorded: dict, **context) -> dict:
        """Success, dry run, rejection and approval timeout; failures have notify_failure."""
        from airflow.exceptions import AirflowSkipException

        from dr_automation.failover import notify_failover

        p = context["params"]
        titles = {
            "success": f"{RECORD} now served from {p['target_region']}",
            "dry_run": f"Dry run: failover of {RECORD} to {p['target_region']} planned, nothing changed",
            "not_approved": f"Failover of {RECORD} to {p['target_region']} was not approved",
            "approval_timed_out": f"Failover of {RECORD} to {p['target_region']}: approval timed out, "
            "nothing moved",
        }
        if recorded["outcome"] not in titles:
            raise AirflowSkipException(f"outcome {recorded['outcome']}: notify_failure or on-call covers it")
        return notify_failover(
            context,
            titles[recorded["outcome"]],
            f"{p['reason']} (requested by {p['requested_by']}). Record: {recorded['location']}",
        )

    rollback = Route53RollbackOperator(
        task_id="rollback_dns",
        switch_task_id=SWITCH,
        aws_conn_id=aws_conn_id,
        trigger_rule=TriggerRule.ONE_FAILED,
        pool="dr_traffic",
        retries=3,
    )

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=3, retry_delay=timedelta(seconds=2))
    def restore_target(**context) -> dict:
        """Put capacity and both write gates back as they were (sessions copied are harmless)."""
        from dr_automation.target_region import restore_capacity, restore_write_gate

        ti, current = context["ti"], load_estate()
        scaled = ti.xcom_pull(task_ids="scale_target") or {}
        gates = ti.xcom_pull(task_ids="update_load_balancers") or {}
        return {
            "capacity_restored": restore_capacity(current, scaled),
            "closed_gate_reopened": restore_write_gate(current, gates.get("closed") or {}),
            "opened_gate_closed": restore_write_gate(current, gates.get("opened") or {}),
        }

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
            "The failover failed; DNS, capacity and write gates were restored to their previous state. "
            "See the run and its failover record for the failing step.",
        )

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
    def watcher() -> None:
        """Keeps a run whose body failed marked failed even though rollback succeeded."""
        raise RuntimeError("the failover failed; DNS was rolled back (see rollback_dns)")

    branch = authorize()
    healthy = check_target_healthy()
    checked = preflight()
    branch >> [await_approval, healthy, checked]
    await_approval >> [healthy, checked]
    [healthy, checked] >> switch
    checked >> notify_initiation()
    verified = verify_traffic()
    applied = changes_applied()
    switch >> applied >> insync >> dns_answers_target >> verified
    target_steps = [
        _target_step("scale_target")(checked),
        _target_step("migrate_sessions")(checked),
        _target_step("update_load_balancers")(checked),
    ]
    switch >> target_steps
    target_steps >> applied  # a dry run reports the plans of these steps, then stops
    new_primary = record_new_primary(checked)
    verified >> new_primary
    moved = [switch, insync, dns_answers_target, *target_steps, verified]
    restored = restore_target()
    failure_notice = notify_failure()
    moved >> rollback >> failure_notice
    moved >> restored >> failure_notice
    moved >> failure_notice  # ONE_FAILED looks at direct parents: see the failed step itself
    recorded = record_failover()
    # not a direct child of await_approval: a Reject skips its direct children, and this must run
    [branch, healthy, new_primary, rollback, restored, failure_notice, *moved] >> recorded
    notify_completion(recorded)
    [branch, healthy, checked, *moved, new_primary, recorded] >> watcher()


regional_failover()
