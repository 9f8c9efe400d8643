"""What a verification run concludes, and where it says so.

- a **verification record** per backup, beside its manifest in every location
  (``backups/<tier>/<backup id>/verification.json``): every check (what, where, result, reason),
  per entry and for the backup, and the run that made it;
- **verified RPO** per tier: the age of the newest backup that passed full verification (every entry,
  every location, restore tests included), measured from the backup's manifest time. Published as
  CloudWatch metrics (``VerifiedRPOMinutes``, ``VerifiedRPOBreached``, ``VerificationFailures``,
  dimension ``Tier``) and in the state object ``s3://<primary backup bucket>/verification/state.json``
  that reports and the UI read;
- **alerts** through the incident notifier: one for the run's failed checks (each backup and entry
  with its reason), one per tier whose verified RPO exceeds its RPO, saying when the tier's newest
  backup reports success anyway (the case a green backup DAG hides).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dr_automation.backup.plan import tier_plan
from dr_automation.verification.objects import failed
from dr_automation.verification.settings import (
    DAG_ID,
    RECORD_FORMAT,
    RECORD_NAME,
    STATE_FORMAT,
    STATE_KEY,
    settings,
)

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

PASSED, FAILED = "passed", "failed"
MAX_REASON = 700


class VerificationFailed(RuntimeError):
    """At least one backup failed verification: names each backup and why."""


def _short(text: str, limit: int = MAX_REASON) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# -- records --------------------------------------------------------------------------------------


def build_record(
    checked: Mapping[str, Any],
    restore_checks: Mapping[str, list[dict[str, Any]]],
    *,
    run_id: str,
    now: datetime,
    missing: str | None = None,
) -> dict[str, Any]:
    """One backup's record from its worker checks and its restore tests' checks (by entry name)."""
    entries = []
    for name, entry in (checked.get("entries") or {}).items():
        checks = list(entry["checks"]) + list(restore_checks.get(name, []))
        reasons = failed(checks)
        entries.append(
            {
                "name": name,
                "type": entry["type"],
                "result": FAILED if reasons else PASSED,
                "reason": "; ".join(_short(r) for r in reasons) or None,
                "checks": checks,
            }
        )
    manifest_reasons = failed(checked.get("manifest_checks") or [])
    if missing:
        manifest_reasons.append(missing)
    bad = [e for e in entries if e["result"] == FAILED]
    reasons = manifest_reasons + [e["reason"] for e in bad]
    if not entries and not reasons:
        reasons.append("the manifest lists no system")
    manifest = checked.get("manifest") or {}
    return {
        "format": RECORD_FORMAT,
        "tier": checked["tier"],
        "backup_id": checked["backup_id"],
        "source": checked.get("source"),
        "verified_at": now.isoformat(timespec="seconds"),
        "dag_id": DAG_ID,
        "run_id": run_id,
        "manifest": manifest,
        "backup_time": manifest.get("created_at"),
        "result": FAILED if reasons else PASSED,
        "reason": "; ".join(_short(r) for r in reasons) or None,
        "manifest_checks": checked.get("manifest_checks") or [],
        "entries": entries,
        "summary": {
            "entries": len(entries),
            "failed": [e["name"] for e in bad],
            "checks": sum(len(e["checks"]) for e in entries) + len(checked.get("manifest_checks") or []),
            "failed_checks": sum(not c["ok"] for e in entries for c in e["checks"]) + len(manifest_reasons),
        },
    }


def write_record(estate: Estate, record: Mapping[str, Any]) -> list[str]:
    """Beside the manifest in every location of the tier (SSE-KMS with the location's key, STANDARD
    so it reads at once, SHA-256 recorded; a locked archive bucket's default retention applies)."""
    from dr_automation.backup.components import put_artifact

    plan = tier_plan(estate, record["tier"])
    body = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    written = []
    for location, manifest_key in plan.manifest_keys(record["backup_id"]):
        key = manifest_key.rsplit("/", 1)[0] + "/" + RECORD_NAME
        standard = replace(location, storage_class="STANDARD")
        put_artifact(estate, standard, key, body, metadata={"result": record["result"]})
        written.append(location.url(key))
    return written


# -- verified RPO ---------------------------------------------------------------------------------


def read_state(estate: Estate) -> dict[str, Any]:
    from dr_automation.backup.components import aws_client, error_code

    primary = estate.primary_region
    try:
        body = aws_client(estate, "s3", primary.name).get_object(Bucket=primary.backup_bucket, Key=STATE_KEY)
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return {"format": STATE_FORMAT, "tiers": {}}
        raise
    return json.loads(body["Body"].read())


def update_state(
    estate: Estate,
    state: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    *,
    run_id: str,
    now: datetime,
) -> dict[str, Any]:
    """The new state: per tier, the newest backup seen and the newest that passed, the verified RPO
    (minutes, from now) and whether it exceeds the tier's RPO. Pure: the caller writes it."""
    tiers: dict[str, Any] = {k: dict(v) for k, v in (state.get("tiers") or {}).items()}
    for record in sorted(records, key=lambda r: _time(r.get("backup_time")) or now):
        tier = tiers.setdefault(record["tier"], {})
        when = _time(record.get("backup_time"))
        seen = {
            "backup_id": record["backup_id"],
            "backup_time": record.get("backup_time"),
            "backup_status": (record.get("manifest") or {}).get("status"),
            "verified_at": record["verified_at"],
            "result": record["result"],
            "reason": record["reason"],
        }
        newest = tier.get("newest_backup")
        if when and (not newest or when >= (_time(newest.get("backup_time")) or when)):
            tier["newest_backup"] = seen
        last = tier.get("last_verified")
        if record["result"] == PASSED and when and (not last or when >= _time(last["backup_time"])):
            tier["last_verified"] = seen
        if record["result"] == FAILED:
            tier["last_failure"] = seen
    for key, tier in tiers.items():
        if key not in estate.tiers:
            continue
        rpo = estate.tiers[key].rpo_minutes
        last = tier.get("last_verified")
        age = (now - _time(last["backup_time"])).total_seconds() / 60 if last else None
        tier.update(
            {
                "rpo_minutes": rpo,
                "verified_rpo_minutes": None if age is None else round(age, 2),
                # a tier with backups but none verified has an unbounded verified RPO
                "breached": age is None or age > rpo,
                "dag_id": estate.tiers[key].dag_id,
            }
        )
    return {
        "format": STATE_FORMAT,
        "updated_at": now.isoformat(timespec="seconds"),
        "run_id": run_id,
        "tiers": tiers,
    }


def write_state(estate: Estate, state: Mapping[str, Any]) -> str:
    from dr_automation.backup.components import put_artifact
    from dr_automation.backup.plan import Location

    primary = estate.primary_region
    home = Location(primary.name, primary.backup_bucket, primary.kms_key_alias, "STANDARD")
    put_artifact(estate, home, STATE_KEY, json.dumps(state, indent=2, sort_keys=True).encode())
    return home.url(STATE_KEY)


def publish_metrics(
    estate: Estate, state: Mapping[str, Any], records: Sequence[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """VerifiedRPOMinutes / VerifiedRPOBreached per tier with a verified backup or a breach, and
    VerificationFailures per tier verified in this run, in the primary region."""
    from dr_automation.backup.components import aws_client

    data = []
    for key, tier in sorted((state.get("tiers") or {}).items()):
        dims = [{"Name": "Tier", "Value": key}]
        if tier.get("verified_rpo_minutes") is not None:
            data.append(
                {
                    "MetricName": "VerifiedRPOMinutes",
                    "Dimensions": dims,
                    "Timestamp": now,
                    "Value": tier["verified_rpo_minutes"],
                    "Unit": "None",
                }
            )
        data.append(
            {
                "MetricName": "VerifiedRPOBreached",
                "Dimensions": dims,
                "Timestamp": now,
                "Value": float(bool(tier.get("breached"))),
                "Unit": "Count",
            }
        )
    for key in sorted({r["tier"] for r in records}):
        failures = sum(r["result"] == FAILED for r in records if r["tier"] == key)
        data.append(
            {
                "MetricName": "VerificationFailures",
                "Dimensions": [{"Name": "Tier", "Value": key}],
                "Timestamp": now,
                "Value": float(failures),
                "Unit": "Count",
            }
        )
    if data:
        cloudwatch = aws_client(estate, "cloudwatch", estate.primary_region.name)
        namespace = settings(estate).metrics_namespace
        for start in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])
    return data


# -- alerts ---------------------------------------------------------------------------------------


def _level(estate: Estate) -> int:
    from dr_automation.incidents import failure_level

    return settings(estate).alert_level or failure_level(estate, DAG_ID)


def failure_summary(records: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for record in records:
        if record["result"] != FAILED:
            continue
        lines.append(f"{record['tier']} backup {record['backup_id']}:")
        entries = [e for e in record["entries"] if e["result"] == FAILED]
        if not entries:
            lines.append(f"  - {record['reason']}")
        for entry in entries:
            lines.append(f"  - {entry['name']} ({entry['type']}): {entry['reason']}")
    return "\n".join(lines)


def alert_failures(
    estate: Estate,
    records: Sequence[Mapping[str, Any]],
    *,
    run_id: str,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    from dr_automation.notifications.incident import MAX_SUMMARY, notify_incident, stable_incident_id

    bad = [r for r in records if r["result"] == FAILED]
    if not bad:
        return None
    title = _short(
        f"Backup verification failed: {len(bad)} backup(s) of {', '.join(sorted({r['tier'] for r in bad}))}",
        200,
    )
    summary = _short(
        f"verify_backups run {run_id}: these backups did not pass verification (they may not restore):\n"
        + failure_summary(bad)
        + "\nThe verification record beside each manifest (verification.json) lists every check.",
        MAX_SUMMARY,
    )
    return notify_incident(
        _level(estate),
        title,
        summary,
        incident_id=stable_incident_id(DAG_ID, run_id, "failed-checks"),
        estate=estate,
        audiences={"internal"},
        context=context,
        actor=f"airflow:{DAG_ID}",
    )


def alert_rpo(
    estate: Estate,
    state: Mapping[str, Any],
    *,
    run_id: str,
    tiers: Sequence[str],
    context: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One alert per tier (of `tiers`) whose verified RPO exceeds its RPO."""
    from dr_automation.notifications.incident import notify_incident, stable_incident_id

    sent = []
    for key in tiers:
        tier = (state.get("tiers") or {}).get(key) or {}
        if not tier.get("breached"):
            continue
        last, newest = tier.get("last_verified"), tier.get("newest_backup") or {}
        age = tier.get("verified_rpo_minutes")
        reported_ok = newest.get("backup_status") == "complete"
        title = _short(
            f"Verified RPO of {key} is "
            + (f"{age:.1f} min" if age is not None else "unbounded (nothing verified)")
            + f", above its {tier['rpo_minutes']} min RPO",
            200,
        )
        summary = "\n".join(
            [
                title + ".",
                "Newest backup that passed full verification: "
                + (f"{last['backup_id']} (backup time {last['backup_time']})" if last else "none")
                + ".",
                f"Newest backup: {newest.get('backup_id')} reports {newest.get('backup_status')}"
                + (
                    " (the backup DAG reports success, but it has not passed verification: "
                    + (newest.get("reason") or "not verified yet")
                    + ")"
                    if reported_ok and newest.get("result") != PASSED
                    else ""
                )
                + ".",
                "A restore now could lose more data than the tier's RPO allows. Check the verification "
                "records (verification.json beside each manifest) and the verify_backups runs.",
            ]
        )
        result = notify_incident(
            _level(estate),
            title,
            _short(summary, 4000),
            incident_id=stable_incident_id(DAG_ID, key, "verified-rpo", run_id),
            estate=estate,
            audiences={"internal"},
            context=context,
            actor=f"airflow:{DAG_ID}",
        )
        sent.append({"tier": key, "incident_id": result["incident_id"], "status": result["status"]})
    return sent


# -- the run's conclusion -------------------------------------------------------------------------


def conclude(
    estate: Estate,
    *,
    run_id: str,
    checked: Sequence[Mapping[str, Any]],
    restore_checks: Mapping[tuple[str, str], Mapping[str, list[dict[str, Any]]]],
    targets: Sequence[Mapping[str, Any]],
    sweep: bool = False,
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Records written, state and metrics published, alerts sent; raises VerificationFailed (after
    all of that) when any backup failed, so the run fails and names them."""
    now = now or datetime.now(UTC)
    by_key = {(c["tier"], c["backup_id"]): c for c in checked}
    records = []
    for t in targets:
        key = (t["tier"], t["backup_id"])
        found = by_key.get(key)
        missing = None
        if found is None:
            found, missing = (
                {**t, "entries": {}, "manifest_checks": []},
                "the checks of this backup did not complete",
            )
        records.append(
            build_record(found, restore_checks.get(key, {}), run_id=run_id, now=now, missing=missing)
        )
    written = {f"{r['tier']}/{r['backup_id']}": write_record(estate, r) for r in records}
    state = update_state(estate, read_state(estate), records, run_id=run_id, now=now)
    state_url = write_state(estate, state)
    metrics = publish_metrics(estate, state, records, now)
    failures_alert = alert_failures(estate, records, run_id=run_id, context=context)
    # an event-triggered run speaks for its tiers; the daily sweep for every tier with a state
    alert_tiers = sorted(state["tiers"] if sweep else {r["tier"] for r in records})
    rpo_alerts = alert_rpo(estate, state, run_id=run_id, tiers=alert_tiers, context=context)
    outcome = {
        "records": written,
        "results": {
            f"{r['tier']}/{r['backup_id']}": {"result": r["result"], "reason": r["reason"]} for r in records
        },
        "state": state_url,
        "verified_rpo_minutes": {k: v.get("verified_rpo_minutes") for k, v in state["tiers"].items()},
        "breached": sorted(k for k, v in state["tiers"].items() if v.get("breached")),
        "metrics": len(metrics),
        "alerts": {
            "failed_checks": failures_alert and failures_alert["incident_id"],
            "verified_rpo": rpo_alerts,
        },
    }
    log.info("verification outcome: %s", json.dumps(outcome["results"]))
    bad = [r for r in records if r["result"] == FAILED]
    if bad:
        raise VerificationFailed(
            f"{len(bad)} of {len(records)} backups failed verification: "
            + " | ".join(f"{r['tier']}/{r['backup_id']}: {_short(r['reason'] or '', 600)}" for r in bad)
        )
    return outcome
