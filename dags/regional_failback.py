"""
### Regional failback

**Returns API traffic to the estate's configured primary region** once it is healthy again, after a
`regional_failover`. Manual: the UI form or
`POST /api/v2/dags/regional_failback/dagRuns` with `{"logical_date": null, "conf": {"reason": "...",
"requested_by": "sre-oncall", "incident_level": 3, "dry_run": false, "stable_seconds": 30}}`.

**Steps:** authorize the requester (same allow-list as the failover); read Route 53 to see where
traffic is and how it got there; if it is already on the primary, move nothing. Otherwise probe the
primary's `/health` repeatedly for `stable_seconds` (one failed probe refuses, naming the region and
the probe), then trigger `regional_failover` to the primary and wait for it, so approval (levels that
need it wait for a human), rollback, notifications and the failover record all apply. The mode
follows the routing: `health_check` when the primary's check is inverted, `record_swap` when another
region is PRIMARY, `manual_override` when a plain record overrides the pair. Finally restore the
steady state (the configured PRIMARY/SECONDARY pair, every health check un-inverted) and wait until
resolvers answer the primary.

**Safety:** nothing moves before the primary has been healthy for the whole window; `dry_run`
passes through to the failover (plan only) and skips the restore. If the triggered failover fails,
it has already rolled DNS back; this run fails too.

**If it fails:** `primary_stably_healthy` says which probe failed; `trigger_failover` links the
failover run (its tasks say why); `dns_answers_primary` shows what each resolver answered.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag, task
from airflow.task.trigger_rule import TriggerRule

from dr_automation.dag_defaults import dag_tags, default_args
from dr_automation.estate import load_estate
from dr_automation.failover import failover_params
from dr_automation.sensors.route53 import DnsAnswerSensor

estate = load_estate()
PRIMARY = estate.primary_region
FAILBACK_KEYS = frozenset({"reason", "requested_by", "incident_level", "dry_run", "stable_seconds"})


def _params() -> dict[str, Any]:
    shared = {k: v for k, v in failover_params(estate).items() if k in FAILBACK_KEYS}
    stable = int(estate.health["check_interval_seconds"])
    return {
        **shared,
        "stable_seconds": Param(
            stable,
            type="integer",
            minimum=1,
            maximum=3600,
            title="Stable for (seconds)",
            description=f"How long {PRIMARY.name} must answer healthy, probe after probe, before traffic moves.",
        ),
    }


@dag(
    dag_id="regional_failback",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(estate, retries=1, retry_delay_seconds=5),
    params=_params(),
    tags=dag_tags("failback", "failover", "dns", "incident"),
    doc_md=__doc__,
    dagrun_timeout=timedelta(hours=2),
)
def regional_failback() -> None:
    @task(retries=0)
    def authorize(**context) -> dict:
        """The failover's own rules (allow-list, real reason), checked before anything is probed."""
        from dr_automation.failover import FailoverRefused
        from dr_automation.failover import authorize as decide

        conf = context["dag_run"].conf or {}
        extra = sorted(set(conf) - FAILBACK_KEYS)
        if extra:
            raise FailoverRefused(extra[0], f"unknown conf key (allowed: {sorted(FAILBACK_KEYS)})")
        current = load_estate()
        primary = current.primary_region.name
        params = {**context["params"], "target_region": primary, "mode": "health_check"}
        return {**decide(current, {}, params), "stable_seconds": int(context["params"]["stable_seconds"])}

    @task(retries=1)
    def assess_routing() -> dict:
        """Where traffic is now and which failover mode brings it back (control plane, not DNS caches)."""
        from dr_automation.hooks.route53 import Route53Hook
        from dr_automation.route53_plan import health_check_name, routing_view

        current = load_estate()
        primary = current.primary_region.name
        hook = Route53Hook(aws_conn_id=current.connections["aws"])
        view = routing_view(current, hook)
        if view["mode"] == "absent":
            raise ValueError(f"no records for {current.route53['record_name']}: run dns_failover_setup first")
        checks = {r: hook.find_health_check(health_check_name(current, r)) for r in current.regions}
        inverted = sorted(r for r, c in checks.items() if c and c["HealthCheckConfig"].get("Inverted"))
        serving = view["serving_region"]
        if view["mode"] == "manual_override":
            mode = "manual_override"
        elif view["inverted_checks"]:  # the PRIMARY record's own check is inverted
            mode = "health_check"
        else:
            mode = "record_swap"
        return {
            "routing": view["mode"],
            "primary": primary,
            "serving": serving,
            "on_primary": serving == primary,
            "mode": mode,
            "inverted_checks": inverted,
        }

    @task.short_circuit(ignore_downstream_trigger_rules=False, retries=0)
    def traffic_off_primary(assessment: dict) -> bool:
        """Already on the primary: a successful no-op (only leftovers of the steady state are fixed)."""
        return not assessment["on_primary"]

    @task(retries=0)
    def primary_stably_healthy(decision: dict, **context) -> dict:
        """Moving traffic onto a primary that flaps would start the next incident: every probe must pass."""
        import time

        from dr_automation.failover import FailoverRefused, probe_region

        current = load_estate()
        region, window = current.primary_region.name, decision["stable_seconds"]
        interval = min(5.0, max(0.5, window / 10))
        started, probes = time.monotonic(), []
        while True:
            probe = probe_region(current, region)
            elapsed = round(time.monotonic() - started, 1)
            probes.append({**probe, "at_seconds": elapsed})
            if not probe["healthy"]:
                raise FailoverRefused(
                    "primary",
                    f"{region} is not stably healthy: probe {len(probes)} at +{elapsed}s "
                    f"GET {probe['url']} -> {probe['status']}; no traffic was moved",
                )
            if elapsed >= window and len(probes) >= 2:
                return {"region": region, "stable_seconds": window, "probes": len(probes), "last": probe}
            time.sleep(interval)

    @task(retries=0)
    def prepare_failover(decision: dict, assessment: dict, **context) -> dict:
        """The failover's conf. A record_swap needs the primary's own check un-inverted first (it is not
        PRIMARY, so this moves no traffic) or Route 53 would keep answering the other half."""
        from dr_automation.audit import audit_step
        from dr_automation.hooks.route53 import Route53Hook
        from dr_automation.route53_plan import health_check_name

        current = load_estate()
        primary = assessment["primary"]
        if (
            assessment["mode"] == "record_swap"
            and primary in assessment["inverted_checks"]
            and not decision["dry_run"]
        ):
            hook = Route53Hook(aws_conn_id=current.connections["aws"])
            check = hook.find_health_check(health_check_name(current, primary))
            before = hook.set_health_check_flags(check["Id"], inverted=False)
            audit_step(
                current, "failback.restore", "succeeded", context, detail={"uninverted": {primary: before}}
            )
        return {
            "target_region": primary,
            "reason": f"Failback: {decision['reason']}"[:500],
            "requested_by": decision["requested_by"],
            "incident_level": decision["incident_level"],
            "mode": assessment["mode"],
            "dry_run": decision["dry_run"],
        }

    @task(trigger_rule=TriggerRule.NONE_FAILED, retries=1)
    def restore_steady_state(decision: dict, **context) -> dict:
        """The data plane as dns_failover_setup leaves it: the configured pair, no check inverted."""
        from airflow.exceptions import AirflowSkipException

        from dr_automation.audit import audit_step
        from dr_automation.hooks.route53 import Route53Hook
        from dr_automation.route53_plan import failover_records, health_check_name, routing_state

        if decision["dry_run"]:
            raise AirflowSkipException("dry run: the steady state is not restored")
        current = load_estate()
        hook = Route53Hook(aws_conn_id=current.connections["aws"])
        zone_id = hook.get_hosted_zone_id(current.route53["hosted_zone"])
        checks = {r: hook.find_health_check(health_check_name(current, r)) for r in current.regions}
        missing = sorted(r for r, c in checks.items() if c is None)
        if missing:
            raise ValueError(f"no health check for {missing}: run dns_failover_setup first")
        state = routing_state(current, hook.list_record_sets(zone_id))
        changes = (
            [{"Action": "DELETE", "ResourceRecordSet": state.plain_record}] if state.plain_record else []
        )
        ids = {r: c["Id"] for r, c in checks.items()}
        changes += [{"Action": "UPSERT", "ResourceRecordSet": r} for r in failover_records(current, ids)]
        # One batch: Route 53 applies it atomically, so the name never goes without an answer.
        change = hook.change_record_sets(zone_id, changes, comment="regional_failback steady state")
        uninverted = {r: hook.set_health_check_flags(c["Id"], inverted=False) for r, c in checks.items()}
        uninverted = {r: before for r, before in uninverted.items() if before["Inverted"]}
        result = {
            "records": change.to_dict(),
            "uninverted": sorted(uninverted),
            "changed": bool(change.changed or uninverted),
        }
        if result["changed"]:
            audit_step(current, "failback.restore", "succeeded", context, detail=result)
        return result

    dns_answers_primary = DnsAnswerSensor(
        task_id="dns_answers_primary",
        name=estate.route53["record_name"],
        expected=[PRIMARY.address],
        nameservers=list(estate.route53["verify_nameservers"]),
        record_type=estate.route53["record_type"],
        check_interval=0.5,
        timeout=estate.route53["propagation_timeout_seconds"],
        retries=0,
    )

    decision = authorize()
    assessment = assess_routing()
    decision >> assessment
    gate = traffic_off_primary(assessment)
    healthy = primary_stably_healthy(decision)
    conf = prepare_failover(decision, assessment)
    trigger_failover = TriggerDagRunOperator(
        task_id="trigger_failover",
        trigger_dag_id="regional_failover",
        trigger_run_id="failback__{{ run_id }}",
        conf=conf,
        wait_for_completion=True,
        deferrable=True,
        poke_interval=2,
        allowed_states=["success"],
        failed_states=["failed"],
        fail_when_dag_is_paused=True,  # a paused failover would leave this run waiting for nothing
        openlineage_inject_parent_info=False,  # extra conf keys are refused by the failover
        retries=0,
    )
    gate >> healthy >> conf >> trigger_failover
    restored = restore_steady_state(decision)
    trigger_failover >> restored >> dns_answers_primary


regional_failback()
