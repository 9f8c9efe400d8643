"""What the run-wide steps of a tier DAG do at run time: gather the run's record (task states,
XComs, toolbox results), decide placements, write the manifest, publish or fail naming systems."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dr_automation.backup import plan as p
from dr_automation.backup.components import OUTCOME_KEY, aws_client, error_code
from dr_automation.backup.manifest import SUCCEEDED, build_manifest, evaluate, write_manifest
from dr_automation.backup.snapshots import copied_systems

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 300


def pulled(ti: Any, task_id: str, key: str = "return_value") -> list[Any]:
    """Every value a mapped task pushed under `key` (instances that pushed nothing are absent)."""
    value = ti.xcom_pull(task_ids=task_id, key=key)
    if value is None:
        return []
    if isinstance(value, Mapping) or isinstance(value, str):
        return [value]
    return [v for v in value if v is not None]


def per_system(values: Sequence[Any]) -> list[Any]:
    """Mapped instances' values, a batch's (``{"batch", "systems"}``) opened into its systems' own."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, Mapping) and "batch" in value and "systems" in value:
            out.extend(value["systems"])
        else:
            out.append(value)
    return out


def pulled_value(ti: Any, task_id: str, key: str = "return_value") -> Any:
    """The value a non-mapped task pushed (None if it pushed nothing)."""
    return ti.xcom_pull(task_ids=task_id, key=key)


def _results(estate: Estate, plan: p.TierPlan, backup: str) -> dict[str, Any]:
    """The JSON result each toolbox pod left next to the backup (None when the pod never got to write it)."""
    from concurrent.futures import ThreadPoolExecutor

    s3 = aws_client(estate, "s3", plan.work.region)

    def read(name: str) -> Any:
        try:
            body = s3.get_object(Bucket=plan.work.bucket, Key=plan.result_key(backup, name))["Body"].read()
            return json.loads(body)
        except Exception as exc:
            if error_code(exc) not in ("NoSuchKey", "404"):
                log.warning("result of %s unreadable: %s", name, error_code(exc) or exc)
            return None

    names = [s["name"] for s in plan.systems_of(*p.POD_TYPES)]
    with ThreadPoolExecutor(max_workers=p.BATCH_WORKERS) as pool:
        return dict(zip(names, pool.map(read, names), strict=True))


def gather(estate: Estate, plan: p.TierPlan, context: Mapping[str, Any]) -> dict[str, Any]:
    """The run's own record of each system: task instance states and durations, recorded failures,
    toolbox results, copy plans and the details each step returned."""
    ti = context["ti"]
    backup = p.backup_id(context["run_id"])
    crumbs = [dict(c) for c in ti.get_task_breadcrumbs(ti.dag_id, ti.run_id)]
    finished = {c["task_id"] for c in crumbs}
    steps = [p.component_task_id(t) for t in plan.types if t in p.POD_TYPES + p.PYTHON_TYPES]
    steps += [p.COPY_S3, p.RECORD_SNAPSHOT, p.PLACE]
    present = [task_id for task_id in steps if task_id in finished]
    outcomes = [o for task_id in present for o in pulled(ti, task_id, OUTCOME_KEY)]
    failures = [f for o in outcomes for f in (o.get("failures", []) if "batch" in o else [o])]
    done = [name for o in outcomes if "batch" in o for name in o.get("done", [])]
    details: dict[str, Any] = {}
    for task_id in present:
        if task_id in (p.COPY_S3, p.PLACE):
            continue
        for value in per_system(pulled(ti, task_id)):
            if isinstance(value, Mapping) and "system" in value:
                extra = {
                    k: v for k, v in value.items() if k not in ("artifacts", "objects", "system", "type")
                }
                details.setdefault(value["system"], {}).update(extra)

    def planned(task_id: str) -> list[Any]:
        return (pulled_value(ti, task_id) if task_id in finished else None) or []

    copy_plans: dict[str, Sequence[Any]] = {
        p.COPY_SNAPSHOT: copied_systems(plan, backup, planned(p.PLAN_SNAPSHOT_COPIES)),
        p.PLACE: planned(p.PLAN_PLACEMENT),
    }
    results = _results(estate, plan, backup)
    for name, result in results.items():
        if result:
            details.setdefault(name, {}).update(
                {
                    k: result[k]
                    for k in (
                        "tables",
                        "counts",
                        "objects",
                        "nodes",
                        "relationships",
                        "wal_lsn",
                        "snapshot_time",
                    )
                    if k in result
                }
            )
    return {
        "backup": backup,
        "crumbs": crumbs,
        "failures": failures,
        "done": done,
        "results": results,
        "copy_plans": copy_plans,
        "details": details,
    }


def placement_step(estate: Estate, plan: p.TierPlan, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    from dr_automation.backup.copies import placement_copies

    record = gather(estate, plan, context)
    outcomes = evaluate(
        plan, record["crumbs"], record["copy_plans"], record["failures"], record["results"], record["done"]
    )
    ok = [name for name, outcome in outcomes.items() if outcome["status"] == SUCCEEDED]
    skipped = sorted(set(outcomes) - set(ok))
    if skipped:
        log.warning("not placing failed systems: %s", ", ".join(skipped))
    return placement_copies(plan, record["backup"], ok)


def manifest_step(estate: Estate, plan: p.TierPlan, context: Mapping[str, Any]) -> dict[str, Any]:
    record = gather(estate, plan, context)
    outcomes = evaluate(
        plan, record["crumbs"], record["copy_plans"], record["failures"], record["results"], record["done"]
    )
    ti = context["ti"]
    retention = pulled_value(ti, p.CHECK_RETENTION)
    if retention is None:
        failure = pulled_value(ti, p.CHECK_RETENTION, OUTCOME_KEY) or {}
        retention = {"ok": False, "reason": failure.get("reason", "check_retention did not succeed")}
    manifest = build_manifest(
        estate,
        plan,
        record["backup"],
        context["run_id"],
        outcomes,
        details=record["details"],
        retention=retention,
    )
    written = write_manifest(estate, plan, record["backup"], manifest)
    return {
        "backup_id": record["backup"],
        "status": manifest["status"],
        "failed": manifest["summary"]["failed"],
        "components": manifest["summary"]["components"],
        "size_bytes": manifest["summary"]["size_bytes"],
        **written,
    }


def _short(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def problems_of_run(
    plan: p.TierPlan,
    summary: Mapping[str, Any] | None,
    crumbs: Sequence[Mapping[str, Any]],
    retention_reason: str | None,
) -> list[str]:
    """Why the run's backup is not whole, failed systems first (by name), then the run-wide steps."""
    states = {}
    for crumb in crumbs:
        states.setdefault(crumb["task_id"], []).append(crumb["state"])
    problems = []
    if summary is None:
        problems.append(
            f"the manifest was not written ({p.WRITE_MANIFEST} ended {states.get(p.WRITE_MANIFEST, ['?'])[0]})"
        )
    elif summary["failed"]:
        failed = summary["failed"]
        listed = "; ".join(f"{name} ({_short(str(reason))})" for name, reason in sorted(failed.items()))
        problems.append(f"{len(failed)} of {summary['components']} systems failed: {listed}")
    if any(s != "success" for s in states.get(p.CHECK_RETENTION, [])):
        problems.append(f"retention: {_short(retention_reason or 'check_retention failed')}")
    for task_id in (p.FIND_EXPIRED_SNAPSHOTS, p.DELETE_EXPIRED_SNAPSHOTS):
        bad = [s for s in states.get(task_id, []) if s not in ("success", "skipped")]
        if bad:
            problems.append(f"snapshot expiry: {task_id} ended {bad[0]}")
    return problems


def publish_step(estate: Estate, plan: p.TierPlan, asset: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    from dr_automation.backup.assets import event_extra
    from dr_automation.backup.dag import BackupIncomplete

    ti = context["ti"]
    summary = pulled_value(ti, p.WRITE_MANIFEST)
    crumbs = list(ti.get_task_breadcrumbs(ti.dag_id, ti.run_id))
    retention = pulled_value(ti, p.CHECK_RETENTION, OUTCOME_KEY) or {}
    problems = problems_of_run(plan, summary, crumbs, retention.get("reason"))
    backup = p.backup_id(context["run_id"])
    if problems:
        raise BackupIncomplete(f"{plan.dag_id} backup {backup} incomplete: " + " | ".join(problems))
    context["outlet_events"][asset].extra = event_extra(plan.key, summary)
    log.info("backup %s complete: %d systems, %d bytes", backup, summary["components"], summary["size_bytes"])
    return summary
