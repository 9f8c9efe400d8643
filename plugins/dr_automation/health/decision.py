"""What the region health monitor does with its evidence, and the estate-derived monitor settings.

- `monitor_kwargs`: the trigger's plain-value kwargs from the estate (regions, thresholds, interval,
  threshold, connections).
- `routing_view` (in route53_plan): which region serves NOW, from the Route 53 control plane: the PRIMARY record's
  region, or the SECONDARY's when the PRIMARY's health check is inverted (health_check failover), or
  the plain record's region (manual override). Same reading as regional_failback's.
- `decide` (pure): ``trigger_failover`` | ``alert_all_regions_down`` | ``nothing_to_do``, with the
  target (healthy secondary-role region first, then the primary-role one, then DR), the switch mode,
  the incident level, the business impact and the regional_failover conf.
- `run_decision`: `decide` fed from a task's context (running failovers, audit log cool-down).

Safety rules, in order: traffic already moved since the event -> nothing; every region down -> one
level-4 alert per cool-down, never a failover; a regional_failover run queued or running -> nothing;
a successful DNS switch, or a failover this monitor already requested, within
``health.failover_cooldown_minutes`` -> nothing (no flip-flopping, no repeated requests while a
failed attempt is being looked at).
An unreadable audit log does not block a failover (an outage costs more than a second switch, and
regional_failover is idempotent and one-at-a-time); the decision says the cool-down was not checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dr_automation.health import ALL_REGIONS_DOWN, FAILOVER_NEEDED, ROTATE

if TYPE_CHECKING:
    from dr_automation.estate import Estate

FAILOVER_DAG_ID = "regional_failover"
TRIGGER_FAILOVER = "trigger_failover"
ALERT_ALL_DOWN = "alert_all_regions_down"
NOTHING_TO_DO = "nothing_to_do"
ACTIONS = (TRIGGER_FAILOVER, ALERT_ALL_DOWN, NOTHING_TO_DO)
#: Audit event of every monitor decision (status: failover_requested, alert_requested, skipped, alerted).
DECISION_EVENT = "health.decision"
ACTIVE_RUN_STATES = ("queued", "running")
# After a failover the serving region is the secondary: the home (primary-role) region, back in the
# failover pair, ranks before DR.
TARGET_ROLE_ORDER = ("secondary", "primary", "dr")
MAX_REASON = 500
#: Keys of the event that travel as `evidence` in the regional_failover conf.
EVIDENCE_KEYS = (
    "kind",
    "monitor_id",
    "serving_region",
    "cycle",
    "detected_at",
    "check_interval",
    "consecutive_failures_threshold",
    "healthy_score",
    "thresholds",
    "healthy_regions",
    "unhealthy_regions",
    "regions",
)


# -- settings ----------------------------------------------------------------------------------
def monitor_kwargs(
    estate: Estate,
    *,
    monitor_id: str,
    serving_region: str,
    routing: Mapping[str, Any] | None = None,
    max_run_seconds: float | None = None,
) -> dict[str, Any]:
    """RegionHealthTrigger kwargs from the estate (plain values only)."""
    from dr_automation.failover import region_health_url

    health = estate.health
    primary_db = estate.databases.get("primary") or {}
    db_region = primary_db.get("region")
    db_conn = estate.connections.get("primary_database")
    kwargs: dict[str, Any] = {
        "monitor_id": monitor_id,
        "serving_region": serving_region,
        "regions": {
            name: {
                "role": region.role,
                "url": region_health_url(estate, name),
                "database_conn_id": db_conn if name == db_region else None,
            }
            for name, region in estate.regions.items()
        },
        "thresholds": {k: float(v) for k, v in health["thresholds"].items()},
        "check_interval": float(health["check_interval_seconds"]),
        "consecutive_failures": int(health["consecutive_failures"]),
        "healthy_score": float(health["healthy_score"]),
        "metrics_namespace": str(health["metrics_namespace"]),
        "metrics_period_seconds": float(health["metrics_period_seconds"]),
        "aws_conn_id": estate.connections["aws"],
        "history_conn_id": estate.connections["audit_database"],
        "routing": dict(routing) if routing else None,
    }
    if max_run_seconds is not None:
        kwargs["max_run_seconds"] = float(max_run_seconds)
    return kwargs


# -- where traffic goes now --------------------------------------------------------------------
def choose_target(estate: Estate, event: Mapping[str, Any]) -> str | None:
    """The healthy region to move to: secondary role first, then the primary-role region, then DR."""
    serving = event["serving_region"]
    healthy = set(event.get("healthy_regions") or [])
    order = {role: i for i, role in enumerate(TARGET_ROLE_ORDER)}
    candidates = sorted(
        (r for r in estate.regions.values() if r.name != serving and r.name in healthy),
        key=lambda r: (order.get(r.role, len(order)), r.name),
    )
    return candidates[0].name if candidates else None


def switch_mode(routing: Mapping[str, Any] | None, target: str) -> str:
    """record_swap on failover routing, manual_override when the zone is already on a plain record.

    Never health_check: the monitor fires because the serving region is failing, and inverting a
    failing region's check sends traffic back to it as soon as it goes fully down. Making the target
    PRIMARY stays right whatever the old region does next (and the data plane still fails over to it
    as SECONDARY if the new PRIMARY fails)."""
    routing = routing or {}
    if routing.get("mode") == "manual_override":
        return "manual_override"
    return "record_swap"


def classify_event(estate: Estate, event: Mapping[str, Any]) -> dict[str, Any]:
    """Incident level from how many regions failed (one region -> 3, two or more -> 4)."""
    from dr_automation.incidents import classify

    total = len(estate.regions)
    unhealthy = [r for r in event.get("unhealthy_regions") or [] if r in estate.regions]
    if event["kind"] == ALL_REGIONS_DOWN:
        unhealthy = sorted(estate.regions)
    level = classify(estate, infrastructure_share=len(unhealthy) / total, regions_affected=len(unhealthy))
    return {
        "level": level.level,
        "label": level.label,
        "rto_minutes": level.rto_minutes,
        "regions_affected": unhealthy,
        "infrastructure_share": round(len(unhealthy) / total, 4),
    }


def business_impact(estate: Estate, event: Mapping[str, Any], rto_minutes: int) -> dict[str, Any]:
    """Revenue lost so far (since the serving region's first failed check) and if down for the RTO."""
    from dr_automation.incidents import revenue_loss

    serving = event["regions"].get(event["serving_region"], {})
    hours = 0.0
    if serving.get("failing_since") and event.get("detected_at"):
        started = datetime.fromisoformat(serving["failing_since"])
        detected = datetime.fromisoformat(event["detected_at"])
        hours = max(0.0, (detected - started).total_seconds() / 3600.0)
    return {
        "outage_so_far": revenue_loss(estate, outage_hours=hours, affected_share=1.0).as_dict(),
        "if_down_for_rto": {
            **revenue_loss(estate, outage_hours=rto_minutes / 60.0, affected_share=1.0).as_dict(),
            "rto_minutes": rto_minutes,
        },
    }


def _failed_checks(region: Mapping[str, Any]) -> str:
    cycles = region.get("cycles") or []
    if not cycles:
        return "no checks recorded"
    failed = [f"{c['name']}: {c['detail']}" for c in cycles[-1]["checks"] if c.get("status") == "failed"]
    return "; ".join(failed) or "no failed check in the last cycle"


def _score(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.2f}"


def _clip(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def failover_reason(event: Mapping[str, Any], target: str) -> str:
    """One line for regional_failover's `reason` (<= 500 chars, says why): the evidence summary."""
    serving = event["serving_region"]
    region = event["regions"][serving]
    target_score = event["regions"].get(target, {}).get("score")
    text = (
        f"region_health_monitor: {serving} failed {region['consecutive_failures']} consecutive health "
        f"checks (score {_score(region.get('score'))} < {event['healthy_score']}; {_failed_checks(region)}). "
        f"{target} is healthy (score {_score(target_score)}). Monitor {event['monitor_id']} cycle "
        f"{event['cycle']}."
    )
    return _clip(text, MAX_REASON)


def all_down_summary(event: Mapping[str, Any]) -> str:
    lines = [
        f"Every region failed its health checks; the serving region {event['serving_region']} failed "
        f"{event['regions'][event['serving_region']]['consecutive_failures']} in a row. No failover: "
        "there is no healthy region to move traffic to."
    ]
    for name, region in sorted(event["regions"].items()):
        lines.append(f"- {name}: score {_score(region.get('score'))}; {_failed_checks(region)}")
    lines.append(f"Monitor {event['monitor_id']}, cycle {event['cycle']}, detected {event['detected_at']}.")
    text = "\n".join(lines)
    return text if len(text) <= 3000 else text[:2997] + "..."


def evidence(event: Mapping[str, Any]) -> dict[str, Any]:
    return {k: event[k] for k in EVIDENCE_KEYS if k in event}


def decide(
    estate: Estate,
    event: Mapping[str, Any],
    *,
    running_failovers: int = 0,
    recent_switches: Sequence[Mapping[str, Any]] | None = (),
    recent_alerts: Sequence[Mapping[str, Any]] | None = (),
    recent_requests: Sequence[Mapping[str, Any]] | None = (),
    current_serving: str | None = None,
    conf_keys: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The monitor's decision for one event (pure: every outside fact is an argument).

    `recent_switches` (DNS switches that succeeded), `recent_alerts` (level-4 alerts sent) and
    `recent_requests` (failovers this monitor requested) cover the cool-down; None means "the audit
    log could not be read".
    """
    kind = event.get("kind")
    out: dict[str, Any] = {
        "action": NOTHING_TO_DO,
        "why": "",
        "kind": kind,
        "serving_region": event.get("serving_region"),
        "target_region": None,
        "conf": {},
        "incident": None,
        "impact": None,
        "alert": None,
        "notes": [],
    }
    if kind == ROTATE:
        out["why"] = "the monitor run watched its full period with the serving region healthy"
        return out
    if kind not in (FAILOVER_NEEDED, ALL_REGIONS_DOWN):
        raise ValueError(
            f"event.kind: must be {FAILOVER_NEEDED}, {ALL_REGIONS_DOWN} or {ROTATE} (got {kind!r})"
        )
    serving = event["serving_region"]
    if current_serving is not None and current_serving != serving:
        out["why"] = f"traffic already moved from {serving} to {current_serving} since the monitor fired"
        return out
    incident = classify_event(estate, event)
    out["incident"] = incident
    out["impact"] = business_impact(estate, event, incident["rto_minutes"])
    cooldown = int(estate.health["failover_cooldown_minutes"])

    if kind == ALL_REGIONS_DOWN:
        if recent_alerts:
            out["why"] = (
                f"every region is down and a level-4 alert already went out at "
                f"{_when(recent_alerts[-1])} (within the {cooldown}-minute cool-down)"
            )
            return out
        if recent_alerts is None:
            out["notes"].append("audit log unreadable: earlier alerts not checked")
        out["action"] = ALERT_ALL_DOWN
        out["why"] = "every region is unhealthy: no failover target, level-4 alert"
        out["alert"] = {
            "level": incident["level"],
            "title": f"All regions unhealthy: {estate.route53['record_name']} has no healthy region",
            "summary": all_down_summary(event),
        }
        return out

    target = choose_target(estate, event)
    if target is None:
        out["why"] = f"{serving} is failing but no other region was healthy in the same cycle"
        return out
    out["target_region"] = target
    if running_failovers > 0:
        out["why"] = f"a {FAILOVER_DAG_ID} run is already queued or running ({running_failovers})"
        return out
    if recent_switches:
        out["why"] = (
            f"cool-down: traffic was switched at {_when(recent_switches[-1])}, less than "
            f"{cooldown} minutes ago"
        )
        return out
    if recent_requests:
        out["why"] = (
            f"the monitor already requested a failover at {_when(recent_requests[-1])} (run "
            f"{recent_requests[-1].get('run_id')}), less than {cooldown} minutes ago: that run decides"
        )
        return out
    if recent_switches is None or recent_requests is None:
        out["notes"].append("audit log unreadable: cool-down not checked")
    conf: dict[str, Any] = {
        "target_region": target,
        "reason": failover_reason(event, target),
        "requested_by": "region_health_monitor",
        "incident_level": incident["level"],
        "mode": switch_mode(event.get("routing"), target),
        "dry_run": False,
    }
    if conf_keys is not None and "evidence" in conf_keys:
        conf["evidence"] = evidence(event)
    elif conf_keys is not None:
        out["notes"].append("regional_failover does not accept an `evidence` conf key yet: evidence in XCom")
    out["action"] = TRIGGER_FAILOVER
    out["why"] = f"{serving} failed {event['regions'][serving]['consecutive_failures']} consecutive checks"
    out["conf"] = conf
    return out


def _when(event: Mapping[str, Any]) -> str:
    at = event.get("recorded_at")
    return at.isoformat() if isinstance(at, datetime) else str(at)


# -- feeding the decision from a task ----------------------------------------------------------
def audit_events_since(
    estate: Estate, event_type: str, minutes: int, *, status: str, now: datetime | None = None
) -> list[dict[str, Any]] | None:
    """Audit events of one type and status in the last `minutes` (None when unreadable)."""
    if minutes <= 0:
        return []
    from dr_automation.audit import AuditLog

    since = (now or datetime.now(UTC)) - timedelta(minutes=minutes)
    try:
        events = AuditLog.from_estate(estate).events(event_type=event_type, since=since)
    except Exception:
        return None
    return [e for e in events if e.get("status") == status]


def _other_runs(
    events: list[dict[str, Any]] | None, context: Mapping[str, Any]
) -> list[dict[str, Any]] | None:
    """Leave out this run's own events: a retried decide task must not block itself."""
    if events is None:
        return None
    run_id = context.get("run_id") or getattr(context.get("ti"), "run_id", None)
    return [e for e in events if e.get("run_id") != run_id]


def run_decision(estate: Estate, event: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """`decide` with the facts gathered from Airflow, Route 53 and the audit log; audited."""
    from dr_automation.audit import audit_step
    from dr_automation.failover import CONF_KEYS
    from dr_automation.hooks.route53 import Route53Hook
    from dr_automation.operators.route53 import SWITCH_EVENT
    from dr_automation.route53_plan import routing_view

    if not isinstance(event, Mapping) or "kind" not in event:
        raise ValueError(f"event: the sensor's payload is missing or malformed ({type(event).__name__})")
    cooldown = int(estate.health["failover_cooldown_minutes"])
    running = 0
    current = None
    if event["kind"] in (FAILOVER_NEEDED, ALL_REGIONS_DOWN):
        running = int(context["ti"].get_dr_count(dag_id=FAILOVER_DAG_ID, states=list(ACTIVE_RUN_STATES)))
        current = routing_view(estate, Route53Hook(aws_conn_id=estate.connections["aws"]))["serving_region"]
    decision = decide(
        estate,
        event,
        running_failovers=running,
        recent_switches=audit_events_since(estate, SWITCH_EVENT, cooldown, status="succeeded"),
        recent_alerts=audit_events_since(estate, DECISION_EVENT, cooldown, status="alerted"),
        recent_requests=_other_runs(
            audit_events_since(estate, DECISION_EVENT, cooldown, status="failover_requested"), context
        ),
        current_serving=current,
        conf_keys=CONF_KEYS,
    )
    status = {TRIGGER_FAILOVER: "failover_requested", ALERT_ALL_DOWN: "alert_requested"}.get(
        decision["action"], "skipped"
    )
    if event["kind"] != ROTATE:
        audit_step(
            estate,
            DECISION_EVENT,
            status,
            context,
            level=(decision["incident"] or {}).get("level"),
            actor="region_health_monitor",
            target=decision["target_region"],
            detail={k: decision[k] for k in ("action", "why", "kind", "serving_region", "notes", "incident")},
        )
    return decision


def send_all_down_alert(estate: Estate, decision: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
    """The level-4 notification for every region down; audited as `alerted` (the alert cool-down)."""
    from dr_automation.audit import audit_step
    from dr_automation.notifications import notify_incident

    alert = decision["alert"]
    result = notify_incident(
        int(alert["level"]),
        alert["title"],
        alert["summary"],
        estate=estate,
        context=context,
        actor="region_health_monitor",
    )
    audit_step(
        estate,
        DECISION_EVENT,
        "alerted",
        context,
        incident_id=result.get("incident_id"),
        level=int(alert["level"]),
        actor="region_health_monitor",
        detail={"counts": result.get("counts"), "title": alert["title"]},
    )
    return {"incident_id": result.get("incident_id"), "counts": result.get("counts")}
