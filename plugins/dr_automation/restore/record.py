"""The restore manifest (every step, its timing and outcome) and the notice that goes with it.

The manifest is written beside the backup it restored (``backups/<tier>/<backup id>/restores/<restore
id>.json`` in the tier's home location), whatever the run's end, and the run's audit events carry the
same restore id as their incident id. The outcome is read from task states, never inferred from a
missing value: ``success``, ``dry_run``, ``refused``, ``failed_rolled_back``,
``failed_not_rolled_back`` (rollback_on_failure false) or ``failed_rollback_incomplete``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate

# Tasks outside the restore's body: validation, rollback, record and notice.
NOT_BODY = frozenset({"validate", "changes_allowed", "record_restore", "notify_restore", "watcher"})
ROLLBACK_STEPS = ("plan_rollback", "rollback_rest")
FAILED = frozenset({"failed", "upstream_failed"})


def outcome(states: Mapping[str, str | None], plan: Mapping[str, Any] | None) -> tuple[str, str]:
    """(outcome, detail) of a run from its task states."""
    if states.get("validate") == "failed" or plan is None:
        return "refused", "refused at validate before anything was stopped (see that task's log)"
    if plan["request"]["dry_run"]:
        return "dry_run", "plan reported; nothing stopped or changed"
    failed = sorted(
        t
        for t, s in states.items()
        if s in FAILED and t not in NOT_BODY and t not in ROLLBACK_STEPS and not t.startswith("rollback_")
    )
    if failed:
        first = next((t for t in failed if states.get(t) == "failed"), failed[0])
        if not plan["request"]["rollback_on_failure"]:
            return (
                "failed_not_rolled_back",
                f"{first} failed; rollback_on_failure is false: nothing was put back",
            )
        rolled = states.get("rollback_rest") == "success" and all(
            s in ("success", "skipped") for t, s in states.items() if t.startswith("rollback_database")
        )
        if rolled:
            return (
                "failed_rolled_back",
                f"{first} failed; the safety snapshot was put back and services restarted",
            )
        return "failed_rollback_incomplete", f"{first} failed; the rollback did NOT complete: act now"
    if states.get("verify_health") == "success" or (
        states.get("verify_data") == "success" and states.get("verify_health") == "skipped"
    ):
        return "success", "restored and verified"
    return "incomplete", f"unexpected task states: {dict(states)}"


def steps_of(crumbs: Sequence[Mapping[str, Any]], results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each finished task instance of the run: state and duration (Airflow's record), start and end
    (the step's own, for Python steps), and its result; in the order they started."""
    out = []
    for c in crumbs:
        task = c["task_id"]
        result = results.get(task)
        timed = result if isinstance(result, Mapping) else {}
        out.append(
            {
                "step": task if int(c.get("map_index", -1)) < 0 else f"{task}[{c['map_index']}]",
                "state": c.get("state"),
                "operator": c.get("operator"),
                "duration_seconds": round(float(c.get("duration") or 0.0), 3),
                "started_at": timed.get("started_at"),
                "ended_at": timed.get("ended_at"),
                "result": result,
            }
        )
    return sorted(out, key=lambda s: (s["started_at"] is None, s["started_at"] or "", s["step"]))


def pod_results(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON result each toolbox pod of the run left (success or failure), by pod."""
    from dr_automation.restore import backup as b

    bucket, prefix = b.split_url(plan["safety"]["location"].rsplit("safety/", 1)[0] + "results/")
    client = b.s3(estate, plan["safety"]["region"])
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            doc = json.loads(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            out[obj["Key"][len(prefix) :].removesuffix(".json")] = doc
    return out


def build(
    plan: Mapping[str, Any] | None,
    request: Mapping[str, Any],
    states: Mapping[str, str | None],
    steps: list[dict[str, Any]],
    rollback: Mapping[str, Any] | None,
    *,
    run_id: str,
    pods: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    result, detail = outcome(states, plan)
    return {
        "format": "dr-restore-manifest/1",
        "restore_id": (plan or {}).get("restore_id"),
        "run_id": run_id,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "request": dict(request),
        "backup": {
            k: (plan or {}).get(k)
            for k in ("tier", "backup_id", "manifest", "manifest_created_at", "verification")
        },
        "outcome": result,
        "detail": detail,
        "plan": plan,
        "steps": steps,
        "pods": dict(pods or {}),
        "rollback": rollback,
        "task_states": dict(states),
    }


def write(estate: Estate, plan: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    """Beside the backup (the tier's home location, SSE-KMS with that region's key)."""
    from dr_automation.restore import backup as b

    bucket, key = b.split_url(plan["record"])
    region = plan["backup_region"]
    key_alias = next(
        (r.kms_key_alias for r in estate.regions.values() if r.name == region),
        estate.primary_region.kms_key_alias,
    )
    b.s3(estate, region).put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(manifest, indent=2, default=str, sort_keys=True).encode(),
        ContentType="application/json",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=key_alias,
        StorageClass="STANDARD",
        ChecksumAlgorithm="SHA256",
    )
    return plan["record"]


TITLES = {
    "success": "Restore of {backup} completed and verified",
    "failed_rolled_back": "Restore of {backup} FAILED: rolled back to the pre-restore state",
    "failed_not_rolled_back": "Restore of {backup} FAILED: NOT rolled back (services left stopped)",
    "failed_rollback_incomplete": "Restore of {backup} FAILED and its rollback did NOT complete",
    "incomplete": "Restore of {backup} ended in an unexpected state",
}


def notify(estate: Estate, context: Mapping[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any] | None:
    """Stakeholders of the DAG's failure level hear of a real restore's end (not of a dry run or a
    refusal: on-call is paged for those by the failed task)."""
    from dr_automation.incidents import failure_level
    from dr_automation.notifications import notify_incident

    title = TITLES.get(recorded["outcome"])
    if title is None:
        return None
    backup = f"{recorded['backup']['tier']}/{recorded['backup']['backup_id']}"
    override = (recorded["backup"].get("verification") or {}).get("override")
    summary = f"{recorded['detail']}. Restore manifest: {recorded['location']}"
    if override:
        summary += f" The backup was not verified; override given: {override}"
    return notify_incident(
        failure_level(estate, context["dag"].dag_id),
        title.format(backup=backup),
        summary,
        incident_id=recorded["restore_id"][:64],
        estate=estate,
        audiences={"internal"},
        context=context,
        actor="restore_from_backup",
    )["counts"]
