"""Build one tier's backup DAG from the estate: every system is a mapped task instance.

Per system type, one task is mapped over the tier's systems of that type (a toolbox pod, a Python
task, the provider's S3 copy or RDS snapshot operators), so a bigger estate means more mapped task
instances and no new code. Pod- and Python-run types map over batches of up to ``BATCH_SIZE``
systems, each instance backing its systems up side by side: an instance (and a pod) costs seconds
of scheduling, one system's backup a fraction of that. Then, whatever happened to the systems (trigger rule ALL_DONE):

    plan_placement -> place_copies     (tiers with copies: DR region, archival class, Object Lock)
    write_manifest                     (every system: status, reason, location, size, SHA-256, ...)
    publish                            (fails the run naming every failed system; else the asset event)

beside ``check_retention`` (lifecycle rules and bucket settings) and, for RDS snapshots, the expiry of
the tier's old snapshots. One run at a time; a DeadlineAlert pages when a run is not done within the
tier's RPO; every task retries with exponential backoff (AWS throttling is also retried inside boto3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dr_automation.backup import plan as p
from dr_automation.backup.assets import tier_asset

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from dr_automation.estate import Estate

POOL = "dr_backup"
START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


class BackupIncomplete(RuntimeError):
    """A run's backup is not whole: names every failed system (and retention problem) with its reason."""


def plain(value: Any) -> Any:
    """The estate's read-only mappings as plain JSON values (mapped task arguments are serialized)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def doc_md(plan: p.TierPlan) -> str:
    systems = "\n".join(f"- `{s['name']}` ({s['type']})" for s in plan.systems)
    locations = "\n".join(
        f"- {loc.region}: `s3://{loc.bucket}/backups/{plan.key}/<backup id>/` ({loc.storage_class}"
        + (f", Object Lock {plan.lock_mode} {plan.lock_years} years" if loc.object_lock else "")
        + ")"
        for loc in plan.locations
    )
    staging = (
        f"Systems are first written (STANDARD) under `s3://{plan.work.bucket}/staging/{plan.key}/`, which "
        "expires after a day, then copied to the locations above.\n\n"
        if plan.staged
        else ""
    )
    return f"""
### Backup {plan.key} (`{plan.dag_id}`)

**Schedule** `{plan.schedule}` · **RPO** {plan.rpo_minutes} min (a run not done by then pages on-call) ·
**Retention** {plan.retention_days} days (lifecycle rules, checked every run) · one run at a time.

**Systems** (mapped task instances of up to {p.BATCH_SIZE} systems of a type each, labelled by
their first system; the systems of an instance are backed up side by side):
{systems}

**Where the backups go** (SSE-KMS with each region's key):
{locations}

{staging}**Each run** writes `manifest.json` beside the backups in every location: per system its status
(and the reason when it failed), location, size, SHA-256 (checked against what S3 holds), encryption
and duration; a failed system does not stop the others. The run then fails, naming every failed
system, or emits the asset `dr_backup_{plan.key}` that verification consumes.

**If it fails**: `publish`'s error names the systems and why; the mapped task instance of the
system's batch (labelled `<first system>+<more>`, or the system's name alone) has the full log. `check_retention` failing means a bucket lost its
lifecycle rule, versioning, default encryption or Object Lock: fix the bucket, then clear the task.
"""


def build_tier_dag(estate: Estate, key: str) -> DAG:
    """The DAG of tier `key`, from the estate config."""
    from airflow.providers.amazon.aws.hooks.s3 import NO_ACL
    from airflow.providers.amazon.aws.operators.rds import (
        RdsCopyDbSnapshotOperator,
        RdsCreateDbSnapshotOperator,
        RdsDeleteDbSnapshotOperator,
    )
    from airflow.sdk import DAG, task
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
    from airflow.task.trigger_rule import TriggerRule

    from dr_automation.backup.deadline import backup_deadline_missed
    from dr_automation.backup.operators import BackupCopyPrefixOperator
    from dr_automation.backup.pods import pod_task
    from dr_automation.dag_defaults import DAG_TAG_VOCABULARY, dag_tags, default_args

    plan = p.tier_plan(estate, key)
    aws_conn_id = estate.connections["aws"]
    asset = tier_asset(estate, key)
    level = re.match(r"(tier\d+)", key)
    tags = dag_tags("backup", *([level.group(1)] if level and level.group(1) in DAG_TAG_VOCABULARY else []))
    # Systems report their failures once per run, through publish (naming each): no page per instance.
    component = {"pool": POOL, "on_failure_callback": None}
    all_done = TriggerRule.ALL_DONE

    with DAG(
        dag_id=plan.dag_id,
        schedule=plan.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(estate, retries=plan.retries, retry_delay_seconds=plan.retry_delay_seconds),
        dagrun_timeout=timedelta(minutes=2 * plan.rpo_minutes + 30),
        deadline=DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(minutes=plan.rpo_minutes),
            callback=AsyncCallback(
                backup_deadline_missed,
                kwargs={"tier": key, "dag_id": plan.dag_id, "rpo_minutes": plan.rpo_minutes},
            ),
        ),
        user_defined_filters={p.BACKUP_ID_FILTER: p.backup_id, "dr_rds_id": p.rds_identifier},
        tags=tags,
        doc_md=doc_md(plan),
    ) as dag:

        @task(task_id=p.CHECK_RETENTION)
        def check_retention(**context: Any) -> dict[str, Any]:
            """Lifecycle rules present (added when missing), versioning, default SSE-KMS, Object Lock."""
            from dr_automation.backup.components import raise_for, record_failure
            from dr_automation.backup.retention import check_retention as check

            try:
                return check(estate, plan)
            except Exception as exc:
                raise_for(exc, record_failure(context, "retention", exc))
                raise

        @task(map_index_template="{{ dr_system }}", **component)
        def backup_systems(systems: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
            """One batch of the type's systems, side by side; failures named, siblings complete."""
            from dr_automation.backup.components import run_batch

            return run_batch(estate, plan, systems, context)

        ends: list[Any] = []
        for system_type in plan.types:
            if system_type in p.PYTHON_TYPES:
                batches = [plain(b) for b in plan.batches_of(system_type)]
                ends.append(
                    backup_systems.override(task_id=p.component_task_id(system_type)).expand(systems=batches)
                )
            elif system_type in p.POD_TYPES:
                ends.append(pod_task(estate, plan, system_type, **component))

        s3_systems = plan.systems_of(*p.S3_TYPES)
        if s3_systems:
            from dr_automation.backup.copies import source_copies

            ends.append(
                BackupCopyPrefixOperator.partial(
                    task_id=p.COPY_S3,
                    aws_conn_id=aws_conn_id,
                    acl_policy=NO_ACL,
                    map_index_template="{{ dr_system }}",
                    **component,
                ).expand_kwargs(source_copies(plan, s3_systems))
            )

        rds_systems = [plain(s) for s in plan.systems_of("rds_snapshot")]
        if rds_systems:
            from dr_automation.backup.snapshots import create_kwargs

            create = RdsCreateDbSnapshotOperator.partial(
                task_id=p.CREATE_SNAPSHOT, db_type="instance", aws_conn_id=aws_conn_id, **component
            ).expand_kwargs(create_kwargs(estate, plan))

            @task(task_id=p.PLAN_SNAPSHOT_COPIES, trigger_rule=all_done)
            def plan_rds_snapshot_copies(**context: Any) -> list[dict[str, Any]]:
                """Cross-region copies of the snapshots just created (source ARN, target region's key)."""
                from dr_automation.backup.runtime import pulled
                from dr_automation.backup.snapshots import copy_kwargs

                created = pulled(context["ti"], p.CREATE_SNAPSHOT)
                return copy_kwargs(estate, plan, p.backup_id(context["run_id"]), created)

            copies_plan = plan_rds_snapshot_copies()
            copy = RdsCopyDbSnapshotOperator.partial(
                task_id=p.COPY_SNAPSHOT, db_type="instance", aws_conn_id=aws_conn_id, **component
            ).expand_kwargs(copies_plan)

            @task(
                task_id=p.RECORD_SNAPSHOT,
                trigger_rule=all_done,
                map_index_template="{{ dr_system }}",
                **component,
            )
            def record_rds_snapshot(system: dict[str, Any], **context: Any) -> dict[str, Any]:
                from dr_automation.backup.components import run_component
                from dr_automation.backup.snapshots import record_snapshot

                return run_component(estate, plan, system, context, record_snapshot)

            recorded = record_rds_snapshot.expand(system=rds_systems)
            create >> copies_plan
            copy >> recorded
            ends.append(recorded)

            @task(task_id=p.FIND_EXPIRED_SNAPSHOTS)
            def find_expired_snapshots() -> list[dict[str, Any]]:
                """This tier's snapshots older than its retention (manual snapshots have no lifecycle)."""
                from dr_automation.backup.retention import expired_snapshots

                return expired_snapshots(estate, plan)

            expired = RdsDeleteDbSnapshotOperator.partial(
                task_id=p.DELETE_EXPIRED_SNAPSHOTS,
                db_type="instance",
                aws_conn_id=aws_conn_id,
                wait_for_completion=False,
            ).expand_kwargs(find_expired_snapshots())
            recorded >> expired  # expire old snapshots only once this run's are recorded

        retention = check_retention()

        @task(task_id=p.WRITE_MANIFEST, trigger_rule=all_done)
        def write_manifest(**context: Any) -> dict[str, Any]:
            """The run's manifest in every location, whatever happened to the systems."""
            from dr_automation.backup.runtime import manifest_step

            return manifest_step(estate, plan, context)

        manifest = write_manifest()
        if plan.copies:

            @task(task_id=p.PLAN_PLACEMENT, trigger_rule=all_done)
            def plan_placement(**context: Any) -> list[dict[str, Any]]:
                """Copies of every artifact of the systems that succeeded, to each final location."""
                from dr_automation.backup.runtime import placement_step

                return placement_step(estate, plan, context)

            placement = plan_placement()
            ends >> placement
            place = BackupCopyPrefixOperator.partial(
                task_id=p.PLACE,
                aws_conn_id=aws_conn_id,
                acl_policy=NO_ACL,
                map_index_template="{{ dr_system }}",
                **component,
            ).expand_kwargs(placement)
            place >> manifest
        else:
            ends >> manifest
        retention >> manifest
        if rds_systems:
            expired >> manifest

        @task(task_id=p.PUBLISH, trigger_rule=all_done, outlets=[asset], retries=0)
        def publish(**context: Any) -> dict[str, Any]:
            """Fail the run naming every failed system; else emit the tier's asset event."""
            from dr_automation.backup.runtime import publish_step

            return publish_step(estate, plan, asset, context)

        manifest >> publish()
    return dag
