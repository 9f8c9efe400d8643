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
CONF_KEYS = frozenset({"target_region", "reason", "requested_by", "incident_level", "mode", "dry_run"})
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


def new_failover_id(dag_run_id: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", dag_run_id)
    return f"failover-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{clean}"[:120]


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


def notify_failover(context: Mapping[str, Any], title: str, summary: str) -> dict[str, Any]:
    """Notify the run's incident level about this failover (one incident id for the whole run)."""
    from dr_automation.notifications import notify_incident

    params = context["params"]
    decision = context["ti"].xcom_pull(task_ids="authorize") or {}
    return notify_incident(
        int(params["incident_level"]),
        title,
        summary,
        incident_id=decision.get("failover_id"),
        context=context,
        actor=params["requested_by"],
    )["counts"]
