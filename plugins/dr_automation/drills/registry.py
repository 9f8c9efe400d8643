"""Which drills are under way: one at a time, and nothing left behind by a drill that was killed.

Drills share the drill stack, the scratch database server and the drill DNS domain, and a region
drill's cleanup puts the whole stack back to healthy: two drills at once would break each other. A
drill that an operator stopped (run marked failed in the UI) or that lost its worker never runs its
cleanup task, and its Route 53 records, databases, IAM user or load process would stay.

So every drill registers itself (``drills/active/<drill id>.json`` in the primary backup bucket)
before it makes anything, and removes the entry only once its cleanup left nothing. At setup, a
drill looks at the entries of others: one whose run is still queued or running means this drill
refuses to start (it has made nothing, so its own cleanup has nothing to do); one whose run is over
is an orphan, and its scenario's cleanup (which finds everything from the drill id alone) removes
what it left, audited, before this drill starts. Two drills registering at the same moment both see
each other and both refuse: safe, whatever the workers' clocks say.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dr_automation.drills.scenario import DrillContext, DrillError

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

ACTIVE_PREFIX = "drills/active/"
# Dag run states in which a drill can no longer make or change anything; any other state (queued,
# running, one a later Airflow adds) counts as live, so a drill is never swept while it may run.
OVER_STATES = frozenset({"success", "failed"})

RunState = Callable[[str, str], "str | None"]


def _s3(estate: Estate) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(
        aws_conn_id=estate.connections["aws"], client_type="s3", region_name=estate.primary_region.name
    ).conn


def entry_key(drill: str) -> str:
    return f"{ACTIVE_PREFIX}{drill}.json"


def register(ctx: DrillContext) -> dict[str, Any]:
    """Record that this drill is under way (idempotent: a retried setup keeps its first time)."""
    existing = entry(ctx.estate, ctx.drill_id)
    if existing is not None:
        return existing
    primary = ctx.estate.primary_region
    record = {
        "drill_id": ctx.drill_id,
        "scenario": ctx.scenario,
        "dag_id": ctx.dag_id,
        "run_id": ctx.run_id,
        "registered_at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }
    _s3(ctx.estate).put_object(
        Bucket=primary.backup_bucket,
        Key=entry_key(ctx.drill_id),
        Body=json.dumps(record).encode(),
        ContentType="application/json",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=primary.kms_key_alias,
    )
    return record


def entry(estate: Estate, drill: str) -> dict[str, Any] | None:
    client = _s3(estate)
    try:
        body = client.get_object(Bucket=estate.primary_region.backup_bucket, Key=entry_key(drill))["Body"]
    except client.exceptions.NoSuchKey:
        return None
    return json.loads(body.read())


def entries(estate: Estate, client: Any = None) -> list[dict[str, Any]]:
    """Every registered drill, oldest registration first (``client``: an S3 client of the primary
    region, for callers that have their own)."""
    client = client or _s3(estate)
    bucket = estate.primary_region.backup_bucket
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=ACTIVE_PREFIX):
        for obj in page.get("Contents", []):
            try:
                found.append(json.loads(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
            except client.exceptions.NoSuchKey:  # removed since the listing: that drill is done
                continue
    return sorted(found, key=lambda e: (e["registered_at"], e["drill_id"]))


def unregister(estate: Estate, drill: str) -> None:
    """Remove the entry, every version of it (the bucket is versioned)."""
    from dr_automation.backup.components import delete_versions

    delete_versions(_s3(estate), estate.primary_region.backup_bucket, entry_key(drill))


def run_state_of(ti: Any) -> RunState:
    """The state of a Dag run as the scheduler sees it, asked through the task's execution API;
    None for a run that no longer exists."""

    def state(dag_id: str, run_id: str) -> str | None:
        try:
            found = ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
            return str(getattr(found, "value", found))  # DagRunState.RUNNING -> "running"
        except Exception as exc:  # a deleted run cannot be making anything any more
            if _not_found(exc):
                return None
            raise

    return state


def is_live(state: str | None) -> bool:
    """None is a run that no longer exists."""
    return state is not None and state not in OVER_STATES


def _not_found(exc: BaseException) -> bool:
    """The execution API's 404 for a run, as the Task SDK hands it on (AirflowRuntimeError whose
    error detail carries the API server's status code)."""
    detail = getattr(getattr(exc, "error", None), "detail", None)
    if isinstance(detail, Mapping):
        return detail.get("status_code") == 404
    return "was not found" in str(exc)


def start(
    ctx: DrillContext,
    run_state: RunState,
    *,
    cleanup: Callable[[DrillContext], list[str]] | None = None,
) -> dict[str, Any]:
    """Register this drill, refuse if another is live, and clean up after any that was killed.

    ``cleanup(ctx)`` is the orphan's scenario cleanup (default: its scenario's). Returns the drills
    swept. Raises DrillError (after removing this drill's own entry) when another drill is live."""
    mine = register(ctx)
    others = [e for e in entries(ctx.estate) if e["drill_id"] != ctx.drill_id]
    states = {e["drill_id"]: run_state(e["dag_id"], e["run_id"]) for e in others}
    live = [e for e in others if is_live(states[e["drill_id"]])]
    # Any other live drill, whenever it registered: this one gives way. Two drills starting at the
    # same moment both give way (neither has made anything), which is safe whatever the clocks say.
    if live:
        unregister(ctx.estate, ctx.drill_id)
        other = live[0]
        raise DrillError(
            f"drill {other['drill_id']} ({other['dag_id']} run {other['run_id']}) is "
            f"{states[other['drill_id']]}; drills share the drill stack, so one runs at a time: "
            "trigger this one again when it has finished"
        )
    swept = [sweep(ctx.estate, orphan, states[orphan["drill_id"]], cleanup=cleanup) for orphan in others]
    return {"registered": mine, "swept": swept}


def sweep(
    estate: Estate,
    orphan: Mapping[str, Any],
    run_state: str | None,
    *,
    cleanup: Callable[[DrillContext], list[str]] | None = None,
) -> dict[str, Any]:
    """Remove what a drill whose run is over left behind (its cleanup never ran or did not finish)."""
    from dr_automation.audit import audit_step, current_context

    ctx = DrillContext(
        estate=estate, scenario=orphan["scenario"], run_id=orphan["run_id"], dag_id=orphan["dag_id"]
    )
    if ctx.drill_id != orphan["drill_id"]:  # an entry must name what its own run would make
        raise DrillError(
            f"registry entry {orphan['drill_id']} does not match its run {orphan['run_id']}: remove "
            f"s3://{estate.primary_region.backup_bucket}/{entry_key(orphan['drill_id'])} once its drill "
            "resources are checked by hand"
        )
    if cleanup is None:
        from dr_automation.drills.dag import load_scenario

        cleanup = load_scenario(ctx.scenario).cleanup
    log.warning(
        "drill %s (%s run %s, now %s) never finished its cleanup: removing what it left",
        ctx.drill_id,
        ctx.dag_id,
        ctx.run_id,
        run_state,
    )
    remaining = cleanup(ctx)
    detail = {"drill_id": ctx.drill_id, "dag_id": ctx.dag_id, "run_id": ctx.run_id, "run_state": run_state}
    if remaining:
        audit_step(
            estate,
            "drill.sweep",
            "failed",
            current_context(),
            log=log,
            target=ctx.drill_id,
            detail={**detail, "remaining": remaining},
        )
        raise DrillError(
            f"drill {ctx.drill_id} ({ctx.dag_id} run {ctx.run_id}) left resources that could not "
            f"be removed: {', '.join(remaining)}"
        )
    unregister(estate, ctx.drill_id)
    audit_step(
        estate, "drill.sweep", "succeeded", current_context(), log=log, target=ctx.drill_id, detail=detail
    )
    return detail


def finish(ctx: DrillContext) -> None:
    """This drill's cleanup left nothing: it is no longer under way."""
    unregister(ctx.estate, ctx.drill_id)
