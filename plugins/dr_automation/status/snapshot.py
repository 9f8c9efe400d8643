"""Gather every figure of the status board from where the bundle keeps it (see the package docstring).

Each section is gathered on its own: during an incident a region's bucket or the audit database may
not answer, and the board must still show everything else, with the section's error in its place.
Sources are injectable (DNS answers, Route 53 view, health history, Airflow state) so the function is
testable with moto and a scratch PostgreSQL database; by default they are the bundle's own readers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from dr_automation.status import DRILLS_PREFIX, FAILOVERS_PREFIX

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = "dr-status-snapshot/1"
SERIES_POINTS = 120  # sparkline resolution per region
MONITOR_DAG = "region_health_monitor"
FAILOVER_DAG = "regional_failover"
SETUP_DAG = "dns_failover_setup"
VERIFY_DAG = "verify_backups"
DRILL_DAG = "dr_test_quarterly"
CONSOLE = "https://console.aws.amazon.com"
# a backup id carries its run's time: scheduled__2026-11-04T10-05-00-00-00
_ID_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2})")
_TIME_CANDIDATES = 5
_OTHER_CANDIDATES = 10


class AirflowState(Protocol):
    """What the board reads from Airflow itself (in the api-server: its metadata database)."""

    def pending_approvals(self) -> list[dict[str, Any]]: ...

    def latest_runs(self, dag_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...


Resolve = Callable[[str, str], list[str]]


# -- links ------------------------------------------------------------------------------------------


def dag_link(dag_id: str) -> str:
    return f"/dags/{quote(dag_id, safe='')}"


def run_link(dag_id: str, run_id: str | None) -> str | None:
    return f"{dag_link(dag_id)}/runs/{quote(run_id, safe='')}" if run_id else None


def task_link(dag_id: str, run_id: str, task_id: str) -> str:
    return f"{run_link(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"


def s3_object_console(bucket: str, key: str, region: str) -> str:
    return f"{CONSOLE}/s3/object/{bucket}?region={region}&prefix={quote(key, safe='')}"


def s3_prefix_console(bucket: str, prefix: str, region: str) -> str:
    return f"{CONSOLE}/s3/buckets/{bucket}?region={region}&prefix={quote(prefix, safe='')}&showversions=false"


def monitor_link(monitor_id: str | None) -> str | None:
    """region_health_monitor's sensor names its history rows '<dag_id>/<run_id>/<task_id>'."""
    parts = (monitor_id or "").split("/")
    if len(parts) < 3:
        return None
    return task_link(parts[0], "/".join(parts[1:-1]), parts[-1])


# -- helpers ----------------------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _minutes(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round((now - then).total_seconds() / 60, 2)


def _error(exc: BaseException) -> dict[str, str]:
    from dr_toolbox.redact import redact

    return {"error": f"{type(exc).__name__}: {redact(str(exc))[:300]}"}


def _section(name: str, gather: Callable[[], Any]) -> Any:
    try:
        return gather()
    except Exception as exc:  # one source down must not blank the board
        log.warning("status board: section %s unavailable: %s", name, type(exc).__name__)
        return _error(exc)


def _s3(estate: Estate, region: str) -> Any:
    from dr_automation.backup.components import aws_client

    return aws_client(estate, "s3", region)


def _read_json(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _newest_objects(s3: Any, bucket: str, prefix: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` JSON objects directly under `prefix` (reports are few: a full listing)."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found += [o for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    return sorted(found, key=lambda o: o["LastModified"], reverse=True)[:limit]


# -- serving region ---------------------------------------------------------------------------------


def dns_resolve(name: str, nameserver: str) -> list[str]:
    """One real DNS query to one resolver (what clients are told now); [] when it does not answer."""
    from dr_automation.triggers.route53 import resolve_async

    return asyncio.run(resolve_async(name, "A", nameserver, 2.0))


def route53_view(estate: Estate) -> dict[str, Any]:
    from dr_automation.hooks.route53 import Route53Hook
    from dr_automation.route53_plan import routing_view

    return routing_view(estate, Route53Hook(aws_conn_id=estate.connections["aws"]))


def recorded_serving(estate: Estate) -> dict[str, Any] | None:
    """The newest ``state/serving-region.json`` among the regions' buckets (a failed region's may be
    stale or unreachable: the newest answer wins, and unreachable buckets are listed)."""
    from dr_automation.failover import SERVING_STATE_KEY

    newest, missed = None, {}
    for name, region in estate.regions.items():
        try:
            state = _read_json(_s3(estate, name), region.backup_bucket, SERVING_STATE_KEY)
        except Exception as exc:
            missed[name] = type(exc).__name__
            continue
        state["location"] = f"s3://{region.backup_bucket}/{SERVING_STATE_KEY}"
        if newest is None or (_time(state.get("since")) or datetime.min.replace(tzinfo=UTC)) > (
            _time(newest.get("since")) or datetime.min.replace(tzinfo=UTC)
        ):
            newest = state
    if newest is None:
        return None
    return {**newest, "unreadable": missed}


def serving_section(
    estate: Estate, resolve: Resolve, view: Callable[[], dict[str, Any]] | None
) -> dict[str, Any]:
    from dr_automation.route53_plan import region_by_address

    record = estate.route53["record_name"]
    nameservers = list(estate.route53.get("verify_nameservers") or [])
    by_address = region_by_address(estate)
    answers: dict[str, Any] = {}
    for ns in nameservers:
        try:
            answers[ns] = resolve(record, ns)
        except Exception as exc:
            answers[ns] = _error(exc)
    addresses = sorted({a for v in answers.values() if isinstance(v, list) for a in v})
    regions = sorted({by_address.get(a, f"unknown ({a})") for a in addresses})
    agreed = len(regions) == 1 and all(isinstance(v, list) and v for v in answers.values())
    control = _section("route53", view) if view else None
    return {
        "record_name": record,
        "region": regions[0] if agreed and regions[0] in estate.regions else None,
        "dns": {"nameservers": nameservers, "answers": answers, "addresses": addresses, "regions": regions},
        "route53": control,
        "recorded": _section("serving_state", lambda: recorded_serving(estate)),
        "links": {"setup": dag_link(SETUP_DAG), "failover": dag_link(FAILOVER_DAG)},
    }


# -- region health ----------------------------------------------------------------------------------


def _downsample(rows: Sequence[Mapping[str, Any]], points: int) -> list[Mapping[str, Any]]:
    if len(rows) <= points:
        return list(rows)
    step = len(rows) / points
    picked = [rows[int(i * step)] for i in range(points - 1)]
    return [*picked, rows[-1]]  # the newest always shows


def regions_section(estate: Estate, history: Any, now: datetime, minutes: int) -> list[dict[str, Any]]:
    rows = history.scores(since=now - timedelta(minutes=minutes), limit=100_000)
    by_region: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_region.setdefault(row["region"], []).append(row)
    out = []
    for name, region in estate.regions.items():
        mine = by_region.get(name, [])
        latest = mine[-1] if mine else None
        out.append(
            {
                "region": name,
                "role": region.role,
                "address": region.address,
                "score": latest["score"] if latest else None,
                "healthy": latest["healthy"] if latest else None,
                "checked_at": _time(latest["checked_at"]).isoformat() if latest else None,
                "consecutive_failures": latest["consecutive_failures"] if latest else None,
                "serving_per_monitor": latest["serving"] if latest else None,
                "cycles": len(mine),
                "series": [
                    {"at": _time(r["checked_at"]).isoformat(), "score": r["score"], "healthy": r["healthy"]}
                    for r in _downsample(mine, SERIES_POINTS)
                ],
                "links": {
                    "monitor": monitor_link(latest["monitor_id"]) if latest else None,
                    "dag": dag_link(MONITOR_DAG),
                },
            }
        )
    return out


# -- backups and verified RPO -----------------------------------------------------------------------


def _candidates(backup_ids: Sequence[str]) -> list[str]:
    """Which backups may be the newest, without reading every manifest: ids with a time, newest
    first, and (bounded) the ids without one (custom run ids)."""
    timed = sorted((b for b in backup_ids if _ID_TIME.search(b)), key=lambda b: _ID_TIME.search(b)[1])
    other = sorted(b for b in backup_ids if not _ID_TIME.search(b))
    return timed[-_TIME_CANDIDATES:] + other[-_OTHER_CANDIDATES:]


def newest_manifest(s3: Any, bucket: str, tier: str) -> tuple[dict[str, Any], str] | None:
    """The newest manifest of the tier in `bucket` and its key (by S3's LastModified among candidates)."""
    from dr_automation.backup.plan import MANIFEST_NAME

    prefix = f"backups/{tier}/"
    ids = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        ids += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
    best: tuple[datetime, str] | None = None
    for backup in _candidates(ids):
        key = f"{prefix}{backup}/{MANIFEST_NAME}"
        try:
            modified = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
        except Exception:
            continue  # a run still in progress has no manifest yet
        if best is None or modified >= best[0]:  # ties: the later id (candidates go oldest first)
            best = (modified, key)
    if best is None:
        return None
    return _read_json(s3, bucket, best[1]), best[1]


def backup_entry(estate: Estate, key: str, now: datetime) -> dict[str, Any] | None:
    from dr_automation.backup.plan import tier_plan

    home = tier_plan(estate, key).home
    found = newest_manifest(_s3(estate, home.region), home.bucket, key)
    if found is None:
        return None
    manifest, manifest_key = found
    created = _time(manifest.get("created_at"))
    summary = manifest.get("summary") or {}
    return {
        "backup_id": manifest.get("backup_id"),
        "status": manifest.get("status"),
        "created_at": created.isoformat() if created else None,
        "age_minutes": _minutes(now, created),
        "run_id": manifest.get("run_id"),
        "components": summary.get("components"),
        "succeeded": summary.get("succeeded"),
        "failed": summary.get("failed") or {},
        "size_bytes": summary.get("size_bytes"),
        "manifest": f"s3://{home.bucket}/{manifest_key}",
        "console": s3_object_console(home.bucket, manifest_key, home.region),
        "run_link": run_link(manifest.get("dag_id") or estate.tiers[key].dag_id, manifest.get("run_id")),
    }


def verification_state(estate: Estate) -> dict[str, Any] | None:
    """verify_backups' state object (``verification.record.read_state``); None when none exists."""
    from dr_automation.verification.record import read_state

    state = read_state(estate)
    return state if state.get("tiers") or state.get("updated_at") else None


def verification_entry(
    key: str, rpo_minutes: int, state: Mapping[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """Verified RPO now: the age of the newest backup that passed full verification (it grows
    between verification runs, so it is measured from now, not from the state's last update)."""
    tier = ((state or {}).get("tiers") or {}).get(key)
    if not tier:
        return {"status": "not verified yet", "rpo_minutes": rpo_minutes, "verified_rpo_minutes": None}
    last = tier.get("last_verified")
    age = _minutes(now, _time(last["backup_time"])) if last else None
    breached = age is None or age > rpo_minutes
    run_id = (state or {}).get("run_id")
    return {
        "status": "breached" if breached else "within objective",
        "rpo_minutes": rpo_minutes,
        "verified_rpo_minutes": age,
        "breached": breached,
        "last_verified": last,
        "newest_backup": tier.get("newest_backup"),
        "last_failure": tier.get("last_failure"),
        "state_updated_at": (state or {}).get("updated_at"),
        "run_link": run_link(VERIFY_DAG, run_id),
    }


def tiers_section(estate: Estate, now: datetime) -> list[dict[str, Any]]:
    state = _section("verification_state", lambda: verification_state(estate))
    state_error = state.get("error") if isinstance(state, dict) and "error" in state else None
    out = []
    for key, tier in estate.tiers.items():
        backup = _section(f"backup {key}", lambda key=key: backup_entry(estate, key, now))
        verification = (
            {"status": "unavailable", "error": state_error, "rpo_minutes": tier.rpo_minutes}
            if state_error
            else verification_entry(key, tier.rpo_minutes, state, now)
        )
        age = backup.get("age_minutes") if isinstance(backup, dict) else None
        out.append(
            {
                "tier": key,
                "dag_id": tier.dag_id,
                "schedule": tier.schedule,
                "rpo_minutes": tier.rpo_minutes,
                "rto_minutes": tier.rto_minutes,
                "last_backup": backup,
                "backup_within_rpo": None if age is None else age <= tier.rpo_minutes,
                "verification": verification,
                "links": {"dag": dag_link(tier.dag_id)},
            }
        )
    return out


# -- failovers and drills ---------------------------------------------------------------------------


def failover_entry(
    record: Mapping[str, Any], obj: Mapping[str, Any], bucket: str, region: str
) -> dict[str, Any]:
    approval = record.get("approval") or {}
    return {
        "failover_id": record.get("failover_id"),
        "at": _time(obj["LastModified"]).isoformat(),
        "outcome": record.get("outcome"),
        "detail": record.get("detail"),
        "target_region": record.get("target_region"),
        "mode": record.get("mode"),
        "requested_by": record.get("requested_by"),
        "reason": record.get("reason"),
        "incident_level": record.get("incident_level"),
        "approved_by": approval.get("by"),
        "approval": approval.get("answer"),
        "record": f"s3://{bucket}/{obj['Key']}",
        "console": s3_object_console(bucket, obj["Key"], region),
        "run_link": run_link(FAILOVER_DAG, record.get("run_id")),
    }


def failovers_section(estate: Estate, limit: int) -> dict[str, Any]:
    """The newest failover records over every region's bucket (each is written to its target's)."""
    found, unreadable = [], {}
    for name, region in estate.regions.items():
        s3 = _s3(estate, name)
        try:
            objects = _newest_objects(s3, region.backup_bucket, FAILOVERS_PREFIX, limit)
        except Exception as exc:
            unreadable[name] = type(exc).__name__
            continue
        found += [(obj, s3, region.backup_bucket, name) for obj in objects]
    found.sort(key=lambda f: f[0]["LastModified"], reverse=True)
    records, seen = [], set()
    for obj, s3, bucket, name in found:
        record = _read_json(s3, bucket, obj["Key"])
        if record.get("failover_id") in seen:
            continue
        seen.add(record.get("failover_id"))
        records.append(failover_entry(record, obj, bucket, name))
        if len(records) >= limit:
            break
    return {"records": records, "unreadable": unreadable}


def _scenario(raw: Mapping[str, Any]) -> dict[str, Any]:
    def minutes(name: str) -> float | None:
        if raw.get(f"{name}_minutes") is not None:
            return float(raw[f"{name}_minutes"])
        if raw.get(f"{name}_seconds") is not None:
            return round(float(raw[f"{name}_seconds"]) / 60, 2)
        return None

    return {
        "scenario": raw.get("scenario") or raw.get("name"),
        "passed": raw.get("passed"),
        "rto_minutes": minutes("rto"),
        "rto_objective_minutes": raw.get("rto_objective_minutes"),
        "rpo_minutes": minutes("rpo"),
        "rpo_objective_minutes": raw.get("rpo_objective_minutes"),
        "run_link": run_link(raw["dag_id"], raw.get("run_id")) if raw.get("dag_id") else None,
    }


def drill_entry(
    report: Mapping[str, Any], obj: Mapping[str, Any], bucket: str, region: str
) -> dict[str, Any]:
    """The fields read from a drill report (the contract with the drills, issue 10): ``drill_id``,
    ``dag_id``, ``run_id``, ``finished_at``, ``success_rate``, ``readiness`` and ``scenarios``: a list
    of ``{scenario, dag_id, run_id, passed, rto_minutes|rto_seconds, rto_objective_minutes,
    rpo_minutes|rpo_seconds, rpo_objective_minutes}`` (a list, or a mapping by scenario name)."""
    scenarios = report.get("scenarios") or []
    if isinstance(scenarios, Mapping):
        scenarios = [{"scenario": k, **v} for k, v in scenarios.items()]
    dag_id = report.get("dag_id") or DRILL_DAG
    return {
        "drill_id": report.get("drill_id") or obj["Key"].rsplit("/", 1)[-1].removesuffix(".json"),
        "finished_at": report.get("finished_at") or _time(obj["LastModified"]).isoformat(),
        "success_rate": report.get("success_rate"),
        "readiness": report.get("readiness"),
        "scenarios": [_scenario({"dag_id": None, **s}) for s in scenarios],
        "report": f"s3://{bucket}/{obj['Key']}",
        "console": s3_object_console(bucket, obj["Key"], region),
        "run_link": run_link(dag_id, report.get("run_id")),
    }


def drills_under_way(estate: Estate, s3: Any) -> list[dict[str, Any]]:
    """Drills registered and not yet cleaned up (``drills.registry``): one running now, or one that
    was stopped and whose leftovers the next drill will remove. During an incident, operators must
    know the drill stack and the drill records may be failing on purpose."""
    from dr_automation.drills.registry import entries

    return [
        {
            "drill_id": e["drill_id"],
            "scenario": e.get("scenario"),
            "registered_at": e.get("registered_at"),
            "run_id": e.get("run_id"),
            "run_link": run_link(e["dag_id"], e.get("run_id")) if e.get("dag_id") else None,
        }
        for e in entries(estate, client=s3)
    ]


def drills_section(estate: Estate, limit: int) -> dict[str, Any]:
    primary = estate.primary_region
    s3 = _s3(estate, primary.name)
    objects = _newest_objects(s3, primary.backup_bucket, DRILLS_PREFIX, limit)
    return {
        "location": f"s3://{primary.backup_bucket}/{DRILLS_PREFIX}",
        "under_way": drills_under_way(estate, s3),
        "drills": [
            drill_entry(
                _read_json(s3, primary.backup_bucket, o["Key"]), o, primary.backup_bucket, primary.name
            )
            for o in objects
        ],
    }


# -- the snapshot -----------------------------------------------------------------------------------


def watched_dags(estate: Estate) -> list[str]:
    """The DAGs whose latest run the board shows (the runs behind its figures)."""
    return [
        SETUP_DAG,
        MONITOR_DAG,
        FAILOVER_DAG,
        *(t.dag_id for t in estate.tiers.values()),
        VERIFY_DAG,
        DRILL_DAG,
    ]


def status_snapshot(
    estate: Estate,
    *,
    history: Any = None,
    resolve: Resolve | None = None,
    route53: Callable[[], dict[str, Any]] | None = None,
    airflow: AirflowState | None = None,
    now: datetime | None = None,
    history_minutes: int = 30,
    failover_limit: int = 10,
    drill_limit: int = 5,
) -> dict[str, Any]:
    """Every figure of the board, JSON-safe. Defaults: real DNS queries to the estate's resolvers,
    Route 53 through the estate's AWS connection, the health history in the audit database."""
    for name, value in (
        ("history_minutes", history_minutes),
        ("failover_limit", failover_limit),
        ("drill_limit", drill_limit),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1440:
            raise ValueError(f"{name}: must be an integer from 1 to 1440 (got {value!r})")
    now = now or datetime.now(UTC)
    own_history = history is None
    if own_history:
        from dr_automation.health.history import HealthHistory

        history = HealthHistory.from_estate(estate)
    try:
        snapshot = {
            "format": SNAPSHOT_FORMAT,
            "generated_at": now.isoformat(timespec="seconds"),
            "organization": estate.name,
            "serving": _section(
                "serving",
                lambda: serving_section(
                    estate, resolve or dns_resolve, route53 or (lambda: route53_view(estate))
                ),
            ),
            "regions": _section("regions", lambda: regions_section(estate, history, now, history_minutes)),
            "history_minutes": history_minutes,
            "tiers": _section("tiers", lambda: tiers_section(estate, now)),
            "failovers": _section("failovers", lambda: failovers_section(estate, failover_limit)),
            "drills": _section("drills", lambda: drills_section(estate, drill_limit)),
            "approvals": _section("approvals", lambda: airflow.pending_approvals() if airflow else []),
            "dags": _section("dags", lambda: airflow.latest_runs(watched_dags(estate)) if airflow else {}),
        }
    finally:
        if own_history:
            history.close()
    return json.loads(json.dumps(snapshot, default=str))
