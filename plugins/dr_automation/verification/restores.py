"""Restore tests and their scratch resources.

A database dump is restored by a toolbox pod (``dr-toolbox db-verify``) into a scratch database on
the scratch PostgreSQL server, whose per-table row counts and content checksums are compared with
the figures recorded at backup time (the stats sidecar, whose SHA-256 the manifest holds); the pod
drops it. An RDS snapshot (and its cross-region copy) is restored to a scratch instance, checked,
then deleted. Every scratch name is derived from the run (``settings``), so ``cleanup`` removes
exactly what this run may have left, whatever stopped it, and says what it could not remove.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dr_automation.backup.plan import tier_plan
from dr_automation.verification.objects import check, split_url
from dr_automation.verification.settings import (
    SCRATCH_DSN_ENV,
    scratch_database,
    scratch_instance,
    scratch_prefix,
    settings,
)

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

RESULT_SEPARATOR = "--"
NOT_FOUND = ("DBInstanceNotFound", "DBInstanceNotFoundFault", "404", "NoSuchKey")


class ScratchLeft(RuntimeError):
    """Scratch resources this run created could not be removed: names each one."""


def result_url(estate: Estate, run_id: str, system: str, database: str) -> str:
    """`<scratch prefix><system>--<scratch database>.json` (the pod's UI label is the system)."""
    primary = estate.primary_region
    return f"s3://{primary.backup_bucket}/{scratch_prefix(run_id)}{system}{RESULT_SEPARATOR}{database}.json"


def database_job(
    estate: Estate, run_id: str, tier: str, backup: str, entry: Mapping[str, Any]
) -> dict[str, Any]:
    """The restore test of one dump: the toolbox arguments and where its result will be."""
    database = scratch_database(run_id, tier, backup, entry["name"])
    dump = next(a["name"] for a in entry["artifacts"] if a["name"].endswith(".pgdump"))
    result = result_url(estate, run_id, entry["name"], database)
    return {
        "tier": tier,
        "backup_id": backup,
        "system": entry["name"],
        "database": database,
        "result": result,
        "arguments": [
            "--result-out",
            result,
            "--result-kms-key-id",
            estate.primary_region.kms_key_alias,
            "db-verify",
            "--from",
            entry["locations"][0] + dump,
            "--dsn-env",
            SCRATCH_DSN_ENV,
            "--scratch-database",
            database,
        ],
    }


def snapshot_jobs(
    estate: Estate,
    run_id: str,
    tier: str,
    backup: str,
    entry: Mapping[str, Any],
    described: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """One restore per described snapshot (the original and its cross-region copy)."""
    return [
        {
            "tier": tier,
            "backup_id": backup,
            "system": entry["name"],
            "region": snap["region"],
            "snapshot": snap["identifier"],
            "kms_key_id": snap.get("kms_key_id"),
            "instance": scratch_instance(run_id, tier, backup, entry["name"], snap["region"]),
            "instance_class": settings(estate).scratch_instance_class,
            "tag_prefix": estate.raw["organization"]["tag_prefix"],
            "run_id": run_id,
        }
        for snap in described.get("snapshots") or []
    ]


# -- RDS snapshot restore -------------------------------------------------------------------------


def _code(exc: BaseException) -> str:
    from dr_automation.backup.components import error_code

    return error_code(exc)


def delete_instance(rds: Any, identifier: str, *, wait: bool = True) -> bool:
    """Delete a scratch instance (no final snapshot); True if it existed. Idempotent."""
    try:
        rds.delete_db_instance(
            DBInstanceIdentifier=identifier, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
        )
    except Exception as exc:
        if _code(exc) in NOT_FOUND:
            return False
        raise
    if wait:
        rds.get_waiter("db_instance_deleted").wait(
            DBInstanceIdentifier=identifier, WaiterConfig={"Delay": 5, "MaxAttempts": 360}
        )
    return True


def instance_exists(rds: Any, identifier: str) -> bool:
    try:
        return bool(rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"])
    except Exception as exc:
        if _code(exc) in NOT_FOUND:
            return False
        raise


def restore_snapshot(estate: Estate, job: Mapping[str, Any]) -> dict[str, Any]:
    """Restore the snapshot to a scratch instance, check it, delete it (always); the checks say why."""
    from dr_automation.backup.components import aws_client

    rds = aws_client(estate, "rds", job["region"])
    target = f"{job['snapshot']} in {job['region']}"
    checks: list[dict[str, Any]] = []
    try:
        try:
            snap = rds.describe_db_snapshots(DBSnapshotIdentifier=job["snapshot"])["DBSnapshots"][0]
        except Exception as exc:
            if "NotFound" in _code(exc):
                checks.append(check("exists", target, False, f"snapshot {target} does not exist"))
                return {**job, "checks": checks}
            raise
        checks.append(check("exists", target, True))
        problems = []
        if snap.get("Status") != "available":
            problems.append(f"snapshot {target} is {snap.get('Status')}, not available")
        if not snap.get("Encrypted"):
            problems.append(f"snapshot {target} is not encrypted")
        elif job.get("kms_key_id") and snap.get("KmsKeyId") != job["kms_key_id"]:
            problems.append(
                f"snapshot {target} is encrypted with {snap.get('KmsKeyId')}, recorded {job['kms_key_id']}"
            )
        checks.append(check("encrypted", target, not problems, "; ".join(problems)))
        if problems:
            return {**job, "checks": checks}
        prefix = job["tag_prefix"]
        rds.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier=job["instance"],
            DBSnapshotIdentifier=job["snapshot"],
            DBInstanceClass=job["instance_class"],
            PubliclyAccessible=False,
            MultiAZ=False,
            Tags=[
                {"Key": f"{prefix}:managed-by", "Value": "dr"},
                {"Key": f"{prefix}:dr-role", "Value": "verify-scratch"},
            ],
        )
        rds.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=job["instance"], WaiterConfig={"Delay": 5, "MaxAttempts": 360}
        )
        restored = rds.describe_db_instances(DBInstanceIdentifier=job["instance"])["DBInstances"][0]
        problems = []
        if restored.get("Engine") != snap.get("Engine"):
            problems.append(f"restored engine {restored.get('Engine')}, snapshot {snap.get('Engine')}")
        if not restored.get("StorageEncrypted"):
            problems.append("the restored instance's storage is not encrypted")
        if int(restored.get("AllocatedStorage") or 0) < int(snap.get("AllocatedStorage") or 0):
            problems.append(
                f"restored {restored.get('AllocatedStorage')} GiB, the snapshot holds {snap.get('AllocatedStorage')} GiB"
            )
        reason = f"restore of {target} to {job['instance']}: " + "; ".join(problems)
        checks.append(
            check(
                "restore",
                target,
                not problems,
                reason,
                instance=job["instance"],
                status=restored.get("DBInstanceStatus"),
                engine=restored.get("Engine"),
            )
        )
    finally:
        deleted = delete_instance(rds, job["instance"])
        gone = not instance_exists(rds, job["instance"])
        checks.append(
            check(
                "cleanup",
                job["instance"],
                gone,
                f"scratch instance {job['instance']} was not deleted",
                deleted=deleted,
            )
        )
    return {**job, "checks": checks}


# -- cleanup --------------------------------------------------------------------------------------


def candidates(estate: Estate, run_id: str, targets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Every scratch name this run may have used, recomputed from its targets (not from what the
    checks returned: a run stopped half-way still gets everything removed)."""
    databases, instances = [], []
    for t in targets:
        plan = tier_plan(estate, t["tier"])
        for system in plan.systems_of("postgres_database"):
            databases.append(scratch_database(run_id, t["tier"], t["backup_id"], system["name"]))
        for system in plan.systems_of("rds_snapshot"):
            spec = estate.databases[system["database"]]
            for region in [
                spec["region"],
                *([system["copy_to_region"]] if system.get("copy_to_region") else []),
            ]:
                instances.append(
                    (region, scratch_instance(run_id, t["tier"], t["backup_id"], system["name"], region))
                )
    return {"databases": databases, "instances": instances, "prefix": scratch_prefix(run_id)}


def drop_scratch_databases(estate: Estate, names: list[str]) -> dict[str, list[str]]:
    """DROP DATABASE IF EXISTS ... WITH (FORCE) through the scratch connection; (dropped, left)."""
    if not names:
        return {"dropped": [], "left": []}
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from dr_toolbox.pg import quote_ident

    # (plain SQL with a quoted identifier: the hook may hand out psycopg 2 or psycopg 3 connections)
    hook = PostgresHook(postgres_conn_id=settings(estate).scratch_connection)
    conn = hook.get_conn()
    conn.autocommit = True
    dropped, left = [], []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (list(names),))
            present = [row[0] for row in cur.fetchall()]
            for name in present:
                cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
                dropped.append(name)
            cur.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (list(names),))
            left = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    return {"dropped": dropped, "left": left}


def delete_scratch_objects(estate: Estate, prefix: str) -> dict[str, Any]:
    """Delete every version of the run's scratch objects (pod results)."""
    from dr_automation.backup.components import aws_client, delete_versions

    primary = estate.primary_region
    s3 = aws_client(estate, "s3", primary.name)
    deleted = delete_versions(s3, primary.backup_bucket, prefix)
    left = s3.list_objects_v2(Bucket=primary.backup_bucket, Prefix=prefix).get("KeyCount", 0)
    return {"deleted": deleted, "left": left}


def cleanup(estate: Estate, run_id: str, targets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Remove this run's scratch databases, instances and objects; raise naming whatever is left."""
    from dr_automation.backup.components import aws_client

    names = candidates(estate, run_id, targets)
    databases = drop_scratch_databases(estate, names["databases"])
    instances: dict[str, list[str]] = {"deleted": [], "left": []}
    for region, identifier in names["instances"]:
        rds = aws_client(estate, "rds", region)
        if delete_instance(rds, identifier):
            instances["deleted"].append(identifier)
        if instance_exists(rds, identifier):
            instances["left"].append(identifier)
    objects = delete_scratch_objects(estate, names["prefix"])
    summary = {"databases": databases, "instances": instances, "objects": objects}
    left = [
        *(f"scratch database {n}" for n in databases["left"]),
        *(f"scratch instance {n}" for n in instances["left"]),
        *([f"{objects['left']} scratch objects under {names['prefix']}"] if objects["left"] else []),
    ]
    if left:
        raise ScratchLeft("could not remove: " + ", ".join(left))
    log.info(
        "scratch cleaned: %d databases dropped, %d instances deleted, %d objects deleted",
        len(databases["dropped"]),
        len(instances["deleted"]),
        objects["deleted"],
    )
    return summary


def read_result(estate: Estate, url: str) -> dict[str, Any] | None:
    """A restore pod's JSON result, or None when it never wrote one."""
    import json

    from dr_automation.backup.components import aws_client

    bucket, key = split_url(url)
    try:
        body = (
            aws_client(estate, "s3", estate.primary_region.name)
            .get_object(Bucket=bucket, Key=key)["Body"]
            .read()
        )
    except Exception as exc:
        if _code(exc) in NOT_FOUND:
            return None
        raise
    return json.loads(body)


def database_checks(job: Mapping[str, Any], result: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The restore test's checks, from the pod's result (restore, then one per table)."""
    target = f"{job['system']} -> {job['database']}"
    if result is None:
        return [
            check(
                "restore",
                target,
                False,
                f"{job['system']}: the restore pod left no result (it did not finish)",
            )
        ]
    out = []
    for item in result.get("checks") or []:
        name = item.get("name", "")
        reason = item.get("reason")
        if name.startswith("table:"):
            out.append(
                check(
                    "table",
                    f"{job['system']}: {name[6:]}",
                    bool(item.get("ok")),
                    f"{job['system']}: table {name[6:]}: {reason}",
                    expected=item.get("expected"),
                    actual=item.get("actual"),
                )
            )
        else:
            out.append(check(f"restore:{name}", target, bool(item.get("ok")), f"{job['system']}: {reason}"))
    if not result.get("dropped", True):
        out.append(
            check("cleanup", job["database"], False, f"scratch database {job['database']} was not dropped")
        )
    passed = result.get("passed", result.get("ok"))
    if not out or (passed is False and all(c["ok"] for c in out)):
        out.append(
            check(
                "restore", target, False, f"{job['system']}: {result.get('error') or 'restore test failed'}"
            )
        )
    return out
