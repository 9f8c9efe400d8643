"""The steps of a regional failover (and failback), as plain functions the DAG's tasks call.

Kept out of the DAG file so parsing stays cheap and every decision is testable on its own. Each
step returns JSON-safe facts (with its timing) that end up in the failover record.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dr_automation.estate import Estate
from dr_automation.route53_plan import SWITCH_MODES

MONITOR_REQUESTER = "region_health_monitor"
CONF_KEYS = frozenset(
    {"target_region", "reason", "requested_by", "incident_level", "mode", "dry_run", "evidence"}
)
_TRIVIAL_REASONS = {"test", "testing", "failover", "n/a", "na", "none", "asdf", "because", "x"}


class FailoverRefused(ValueError):
    """The failover must not go ahead; names the field and the reason. Nothing was changed."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def failover_params(estate: Estate, *, default_target: str | None = None) -> dict[str, Any]:
    """Params (JSON schema) for the failover DAGs: the UI form and the REST API both enforce them."""
    from airflow.sdk import Param

    regions = sorted(estate.regions)
    auth = estate.raw["failover_authorization"]
    return {
        "target_region": Param(
            default_target or estate.secondary_region.name,
            type="string",
            enum=regions,
            title="Target region",
            description="The region that will serve traffic.",
        ),
        "reason": Param(
            "",
            type="string",
            minLength=10,
            maxLength=500,
            pattern=r"^(?=.*[A-Za-z].*[A-Za-z].*[A-Za-z]).*\S.*$",
            title="Reason",
            description="Why traffic must move (at least 10 characters; it goes into every notification).",
        ),
        "requested_by": Param(
            "",
            type="string",
            minLength=2,
            maxLength=64,
            pattern=r"^[a-z0-9][a-z0-9._@-]*$",
            title="Requested by",
            description=f"Who asks (allowed: {', '.join(auth['allowed_requesters'])}).",
        ),
        "incident_level": Param(3, type="integer", minimum=1, maximum=4, title="Incident level"),
        "mode": Param(
            "health_check",
            type="string",
            enum=list(SWITCH_MODES),
            title="Mode",
            description="health_check: invert the primary's check (data plane); record_swap: make the "
            "target PRIMARY; manual_override: plain record, TTL 30.",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Report the plan; change nothing."
        ),
        "evidence": Param(
            None,
            type=["object", "null"],
            title="Evidence",
            description="Health checks behind an automatic failover (set by region_health_monitor); "
            "kept in the failover record.",
        ),
    }


def authorize(estate: Estate, conf: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Who may move traffic, and whether a human must approve first (config decides)."""
    extra = sorted(set(conf) - CONF_KEYS)
    if extra:
        raise FailoverRefused(extra[0], f"unknown conf key (allowed: {sorted(CONF_KEYS)})")
    auth = estate.raw["failover_authorization"]
    requester = str(params["requested_by"])
    if requester not in auth["allowed_requesters"]:
        raise FailoverRefused(
            "requested_by",
            f"{requester!r} may not trigger a failover (allowed: {list(auth['allowed_requesters'])})",
        )
    reason = str(params["reason"]).strip()
    if reason.lower() in _TRIVIAL_REASONS or len(set(reason.lower()) - set(" .-_")) < 4:
        raise FailoverRefused("reason", "must say why traffic moves (not a placeholder)")
    level = int(params["incident_level"])
    human = requester != MONITOR_REQUESTER
    needs_approval = human and level in set(auth["approval_required_levels"])
    return {
        "requested_by": requester,
        "reason": reason,
        "incident_level": level,
        "target_region": params["target_region"],
        "mode": params["mode"],
        "dry_run": bool(params["dry_run"]),
        "needs_approval": needs_approval,
        "approvers": list(auth["approvers"]) if needs_approval else [],
    }


def region_health_url(estate: Estate, region: str) -> str:
    r = estate.regions[region]
    path = estate.route53["health_check"]["resource_path"]
    return f"{r.protocol.lower()}://{r.address}:{r.port}{path}"


def probe_region(estate: Estate, region: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """One real HTTP probe of the region's health endpoint (status and latency)."""
    import httpx

    url = region_health_url(estate, region)
    started = time.monotonic()
    try:
        response = httpx.get(url, timeout=timeout)
        ok = response.status_code == 200
        status: int | str = response.status_code
    except httpx.HTTPError as exc:
        ok, status = False, type(exc).__name__
    return {
        "region": region,
        "url": url,
        "healthy": ok,
        "status": status,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


def require_healthy_target(estate: Estate, region: str) -> dict[str, Any]:
    """Never move traffic onto a region that is not answering healthy (it would deepen the outage)."""
    result = probe_region(estate, region)
    if not result["healthy"]:
        raise FailoverRefused(
            "target_region", f"{region} is not healthy ({result['url']} -> {result['status']})"
        )
    return result


def effective_switch_mode(
    estate: Estate, requested: str, view: Mapping[str, Any], probe: Any = None
) -> tuple[str, str]:
    """The switch mode to use, and why. health_check inverts the serving PRIMARY's health check,
    which only fails traffic over while that region answers healthy: inverting the check of a
    region that is down makes Route 53 see it healthy and send traffic back to it. So when the
    PRIMARY serves and does not answer healthy now, the switch edits the records instead."""
    if requested != "health_check" or view.get("mode") != "failover" or view.get("inverted_checks"):
        return requested, "as requested"
    serving = view.get("serving_region")
    result = (probe or probe_region)(estate, serving)
    if result["healthy"]:
        return requested, f"{serving} answers healthy: inverting its check moves traffic"
    return (
        "record_swap",
        f"{serving} is not healthy ({result['status']}): inverting its health check would make Route 53 "
        "route to it, so the target becomes PRIMARY instead (record_swap)",
    )


def new_failover_id(dag_run_id: str) -> str:
    """At most 64 characters (it is the incident id of every notification): time, the start of the
    run id for people, and a hash of the whole run id so long ids stay unique."""
    import hashlib

    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", dag_run_id)[:24].rstrip("_.-") or "run"
    digest = hashlib.sha256(dag_run_id.encode()).hexdigest()[:8]
    return f"failover-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{clean}-{digest}"


def write_failover_record(estate: Estate, record: Mapping[str, Any], *, region: str) -> str:
    """The failover record (who, why, steps, timings, outcome) into the surviving region's bucket."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    bucket = estate.regions[region].backup_bucket
    key = f"reports/failovers/{record['failover_id']}.json"
    S3Hook(aws_conn_id=estate.connections["aws"], region_name=region).load_string(
        json.dumps(record, indent=2, default=str),
        key=key,
        bucket_name=bucket,
        replace=True,
        encrypt=False,
        acl_policy=None,
    )
    return f"s3://{bucket}/{key}"


DECISION_KEY = "decision"


def decision_of(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's authorize decision (who, why, level, failover id), from authorize's XCom."""
    return context["ti"].xcom_pull(task_ids="authorize", key=DECISION_KEY)


def notify_failover(context: Mapping[str, Any], title: str, summary: str) -> dict[str, Any]:
    """Notify the run's incident level about this failover (one incident id for the whole run)."""
    from dr_automation.notifications import notify_incident

    params = context["params"]
    decision = decision_of(context) or {}
    return notify_incident(
        int(params["incident_level"]),
        title,
        summary,
        incident_id=decision.get("failover_id"),
        context=context,
        actor=params["requested_by"],
    )["counts"]


# Steps after the switch: a failure in any of them puts DNS (and the target region) back.
MOVED_STEPS = (
    "switch_dns",
    "wait_insync",
    "dns_answers_target",
    "scale_target",
    "migrate_sessions",
    "update_load_balancers",
    "verify_traffic",
)
FAILED_STATES = frozenset({"failed", "upstream_failed"})
REFUSAL_STEPS = (
    ("authorize", "refused"),
    ("check_target_healthy", "refused_unhealthy_target"),
    ("preflight", "refused_preflight"),
)


def failover_outcome(
    states: Mapping[str, str | None], *, dry_run: bool, approval: Mapping[str, Any] | None
) -> tuple[str, str]:
    """What happened to a run, from its task states and the approver's answer: (outcome, detail).

    Read from what really happened (task states, the HITL answer), never inferred from a missing
    value, so a record cannot call a crashed run "not approved".
    """
    if states.get("authorize") == "failed":
        return "refused", "the request was refused at authorize (see that task's log)"
    if states.get("await_approval") == "failed":
        return "approval_timed_out", "no approver answered in time; nothing moved"
    if approval and approval.get("chosen_options") and approval["chosen_options"][0] != "Approve":
        who = (approval.get("responded_by_user") or {}).get("name", "an approver")
        return "not_approved", f"rejected by {who}; nothing moved"
    for task_id, outcome in REFUSAL_STEPS[1:]:
        if states.get(task_id) == "failed":
            return outcome, f"{task_id} failed before anything moved"
    failed = [t for t in MOVED_STEPS if states.get(t) == "failed"]
    if failed:
        rolled_back = states.get("rollback_dns") == "success" and states.get("restore_target") == "success"
        return (
            "failed_rolled_back" if rolled_back else "failed_rollback_incomplete",
            f"{failed[0]} failed; rollback {'completed' if rolled_back else 'did NOT complete: act now'}",
        )
    if states.get("verify_traffic") == "success":
        return "success", "traffic verified on the target"
    if dry_run and states.get("switch_dns") == "success":
        return "dry_run", "plan reported; nothing changed"
    return "incomplete", f"unexpected task states: {dict(states)}"


def approver_of(approval: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not approval:
        return None
    return {
        "answer": (approval.get("chosen_options") or [None])[0],
        "by": (approval.get("responded_by_user") or {}).get("name"),
        "at": str(approval.get("responded_at")),
    }


def record_serving_region(
    estate: Estate, *, region: str, previous: str | None, failover_id: str
) -> dict[str, Any]:
    """Which region serves now, in every reachable region's bucket (the failed one may be gone).

    The target's own bucket must take it; the others are best effort and reported.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    state = {
        "serving_region": region,
        "previous_region": previous,
        "since": datetime.now(UTC).isoformat(),
        "failover_id": failover_id,
    }
    written, missed = [], {}
    for name in [region, *[r for r in estate.regions if r != region]]:
        bucket = estate.regions[name].backup_bucket
        try:
            S3Hook(aws_conn_id=estate.connections["aws"], region_name=name).load_string(
                json.dumps(state), key=SERVING_STATE_KEY, bucket_name=bucket, replace=True
            )
            written.append(f"s3://{bucket}/{SERVING_STATE_KEY}")
        except Exception as exc:
            if name == region:
                raise
            missed[name] = type(exc).__name__
    return {**state, "written": written, "missed": missed}


SERVING_STATE_KEY = "state/serving-region.json"
