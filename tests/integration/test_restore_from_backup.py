"""restore_from_backup, really run (``dag.test()``) against the backup rig: the AWS emulator, the
Kubernetes stand-in running toolbox pods (real pg_dump / pg_restore), a real PostgreSQL database, and
a regional app whose /health queries that database.

The rig's tier 1 is given the estate's Kubernetes objects and user files too, so one backup holds a
database, files and configuration. A real tier-1 run makes the backup; its verification record is
written with verify_backups' own writer (the record that DAG leaves when a backup passes).

Proves: rows deleted after the backup come back exactly (per-table counts and checksums equal the
backup's recorded figures), with the files and Kubernetes objects, the services restarted and the app
healthy; an unknown or unverified backup is refused before anything is stopped (replicas untouched);
a fault injected after the database was restored rolls everything back (rows as before the restore,
replicas back, app healthy) and fails the run; a dry run stops nothing and reports the plan.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg2
import pytest

from dr_automation.backup.plan import backup_id
from dr_sandbox.aws_emulator import clear_faults, inject_fault
from dr_sandbox.backup_rig import BackupRig
from dr_sandbox.layout import REPO_ROOT
from dr_toolbox.dbops import live_stats
from dr_toolbox.pg import resolve_target
from tests.iam_check import assert_calls_within_policies

pytestmark = pytest.mark.integration

NAMESPACE = "leanvibe-production"
FILES_BUCKET = "leanvibe-user-files-prod"


class Holder:
    rig: BackupRig
    app: Any = None


def add_config_and_files(holder: Holder):
    """Tier 1 also backs up the Kubernetes objects and user files; the primary region's API is a real
    regional app on loopback whose /health queries the rig's database."""

    def edit(doc: dict[str, Any]) -> None:
        from dr_sandbox.regional_app import start_regional_app

        holder.app = start_regional_app(
            "us-east-1", "127.0.0.1", 0, dsn=holder.rig.database.dsn, publish_interval=3600
        )
        port = int(holder.app.url.rsplit(":", 1)[1])
        region = doc["regions"]["us-east-1"]
        region["endpoint"] = {**region["endpoint"], "address": "127.0.0.1", "port": port, "protocol": "HTTP"}
        doc["tiers"]["tier1_realtime"]["systems"] += [
            {"name": "app-config", "type": "kubernetes_objects", "kinds": ["ConfigMap", "Deployment"]},
            {"name": "user-files", "type": "s3_bucket", "bucket": FILES_BUCKET},
        ]

    return edit


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, airflow_env: dict[str, str], airflow_db: str
) -> Iterator[BackupRig]:
    holder = Holder()
    handle = BackupRig(
        tmp_path_factory.mktemp("restore-rig"), airflow_env=airflow_env, edit=add_config_and_files(holder)
    )
    holder.rig = handle
    try:
        with handle:
            shutil.copy(
                REPO_ROOT / "dags" / "restore_from_backup.py", handle.dags_folder / "restore_from_backup.py"
            )
            handle.app = holder.app
            yield handle
            assert_calls_within_policies(handle.emulator.endpoint_url, handle.estate_file)
    finally:
        if holder.app is not None:
            holder.app.stop()


def run_restore(rig: BackupRig, **conf: Any) -> dict[str, Any]:
    result = rig.run("restore_from_backup", conf=conf, timeout=600)
    result["tis"] = {t["task_id"]: t["state"] for t in result["tis"]}  # no mapped tasks
    return result


def write_verification(rig: BackupRig, backup: str, result: str, *, tier: str = "tier1_realtime") -> None:
    """The record verify_backups writes beside the manifest, through its own writer."""
    from dr_automation.backup.components import forget_clients
    from dr_automation.verification.record import write_record
    from dr_automation.verification.settings import RECORD_FORMAT

    record = {
        "format": RECORD_FORMAT,
        "tier": tier,
        "backup_id": backup,
        "result": result,
        "reason": None,
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in rig.env.items():
            if name.startswith(("AIRFLOW_CONN_", "AWS_")) or name == "DR_ESTATE_CONFIG":
                mp.setenv(name, value)
        forget_clients()
        write_record(rig.estate, record)
        forget_clients()


@pytest.fixture(scope="module")
def backup(rig: BackupRig) -> dict[str, Any]:
    """A verified tier-1 backup of the database, the Kubernetes objects and the user files."""
    clear_faults(rig.emulator.endpoint_url)
    result = rig.run("backup_tier1_realtime")
    assert result["state"] == "success", result["log"][-4000:]
    backup = backup_id(result["run_id"])
    write_verification(rig, backup, "passed")
    key = f"backups/tier1_realtime/{backup}/primary-database/primary-database.pgdump.stats.json"
    stats = json.loads(
        rig.aws("s3").get_object(Bucket=rig.estate.primary_region.backup_bucket, Key=key)["Body"].read()
    )
    return {"id": backup, "stats": stats["tables"]}


def db_stats(rig: BackupRig) -> dict[str, Any]:
    """Per-table rows and checksum, computed by the toolbox's own code on the live database."""
    import os

    os.environ["RESTORE_TEST_DSN"] = rig.database.dsn
    try:
        return live_stats(resolve_target("RESTORE_TEST_DSN"))["tables"]
    finally:
        del os.environ["RESTORE_TEST_DSN"]


def change_data(rig: BackupRig) -> None:
    with psycopg2.connect(rig.database.dsn) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM invoices WHERE id % 3 = 0")
        cur.execute("DELETE FROM users WHERE id % 2 = 0")
        cur.execute("UPDATE tenants SET name = name || ' (edited)' WHERE id % 5 = 0")


def replicas(rig: BackupRig) -> dict[str, int]:
    body = httpx.get(f"{rig.k8s.url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments", timeout=5).json()
    return {d["metadata"]["name"]: d["spec"]["replicas"] for d in body["items"]}


def restore_manifest(rig: BackupRig, backup: str, run_id: str) -> dict[str, Any]:
    from dr_automation.restore.plan import restore_id

    key = f"backups/tier1_realtime/{backup}/restores/{restore_id(run_id)}.json"
    return json.loads(
        rig.aws("s3").get_object(Bucket=rig.estate.primary_region.backup_bucket, Key=key)["Body"].read()
    )


def audit_events(rig: BackupRig, run_id: str) -> list[tuple[str, str]]:
    with psycopg2.connect(rig.audit_database.dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT event_type, status FROM dr_audit_events WHERE run_id = %s ORDER BY id", (run_id,))
        return cur.fetchall()


def health(rig: BackupRig) -> int:
    return httpx.get(f"{rig.app.url}/health", timeout=5).status_code


def test_dry_run_stops_nothing_and_reports_the_plan(rig: BackupRig, backup: dict[str, Any]) -> None:
    before, rows = replicas(rig), db_stats(rig)
    result = run_restore(
        rig, backup_id=backup["id"], components=["database", "files", "configuration"], dry_run=True
    )
    assert result["state"] == "success", result["log"][-4000:]
    assert (
        result["tis"]["stop_services"] == "skipped" and result["tis"]["restore_database_primary"] == "skipped"
    )
    assert replicas(rig) == before and db_stats(rig) == rows
    manifest = restore_manifest(rig, backup["id"], result["run_id"])
    assert manifest["outcome"] == "dry_run"
    actions = {a["system"]: a["action"] for a in manifest["plan"]["actions"]}
    assert actions == {
        "primary-database": "pg_restore_in_place",
        "app-config": "k8s_apply",
        "critical-config": "secrets_put_back",
        "user-files": "s3_objects_back",
    }
    assert manifest["plan"]["stop"]["namespaces"] == list(rig.estate.kubernetes["namespaces"])
    assert "restore tier1_realtime/" in result["log"]  # the plan, in words, in validate's log


def test_an_unknown_backup_is_refused_before_anything_is_stopped(
    rig: BackupRig, backup: dict[str, Any]
) -> None:
    """(Every other refusal is the same path: tests/unit/test_restore_plan.py covers each reason.)"""
    before, rows = replicas(rig), db_stats(rig)
    result = run_restore(
        rig, backup_id="scheduled__1999-01-01T00-00-00-00-00", components=["database", "files"]
    )
    assert result["state"] == "failed"
    assert result["tis"]["validate"] == "failed" and result["tis"]["stop_services"] == "upstream_failed"
    assert "backup_id: no backup 'scheduled__1999-01-01T00-00-00-00-00'" in result["log"]
    assert replicas(rig) == before and db_stats(rig) == rows
    assert not [e for e in audit_events(rig, result["run_id"]) if e[0] == "restore.stop_services"]


def test_an_unverified_backup_is_refused_unless_overridden_with_a_reason(
    rig: BackupRig, backup: dict[str, Any]
) -> None:
    write_verification(rig, backup["id"], "failed")
    try:
        before = replicas(rig)
        result = run_restore(rig, backup_id=backup["id"])
        assert result["state"] == "failed" and result["tis"]["validate"] == "failed"
        assert "has not passed verification" in result["log"]
        assert replicas(rig) == before
        dry = run_restore(
            rig,
            backup_id=backup["id"],
            dry_run=True,
            override_unverified_reason="INC-42: only backup before the corruption",
        )
        assert dry["state"] == "success", dry["log"][-3000:]
        plan = restore_manifest(rig, backup["id"], dry["run_id"])["plan"]
        assert plan["verification"]["passed"] is False and plan["verification"]["override"].startswith(
            "INC-42"
        )
    finally:
        write_verification(rig, backup["id"], "passed")


def test_restore_brings_back_exactly_the_backups_rows_files_and_configuration(
    rig: BackupRig, backup: dict[str, Any]
) -> None:
    s3 = rig.aws("s3")
    change_data(rig)
    assert db_stats(rig) != backup["stats"]
    victim = s3.list_objects_v2(Bucket=FILES_BUCKET)["Contents"][0]["Key"]
    original = s3.get_object(Bucket=FILES_BUCKET, Key=victim)["Body"].read()
    s3.put_object(Bucket=FILES_BUCKET, Key=victim, Body=b"overwritten after the backup")
    httpx.patch(
        f"{rig.k8s.url}/api/v1/namespaces/{NAMESPACE}/configmaps/api-config",
        json={"data": {"LOG_LEVEL": "debug"}},
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=5,
    ).raise_for_status()
    before = replicas(rig)

    result = run_restore(rig, backup_id=backup["id"], components=["database", "files", "configuration"])
    assert result["state"] == "success", (result["tis"], result["log"][-6000:])

    assert db_stats(rig) == backup["stats"]  # every table: the backup's row count and content checksum
    assert s3.get_object(Bucket=FILES_BUCKET, Key=victim)["Body"].read() == original
    config = httpx.get(f"{rig.k8s.url}/api/v1/namespaces/{NAMESPACE}/configmaps/api-config", timeout=5).json()
    assert config["data"]["LOG_LEVEL"] == "info"
    assert replicas(rig) == before and all(n > 0 for n in before.values())
    assert health(rig) == 200
    count = httpx.get(f"{rig.app.url}/api/tenants/count", timeout=5).json()["count"]
    assert count == backup["stats"]["tenants"]["rows"]
    manifest = restore_manifest(rig, backup["id"], result["run_id"])
    assert manifest["outcome"] == "success"
    steps = {s["step"]: s for s in manifest["steps"]}
    assert (
        steps["restore_database_primary"]["state"] == "success"
        and steps["safety_dump_primary"]["state"] == "success"
    )
    assert steps["verify_data"]["result"]["primary-database"]["mismatches"] == []
    assert steps["verify_data"]["result"]["user-files"]["differ"] == []  # SHA-256 of every object put back
    assert steps["stop_services"]["result"]["stopped"]["leanvibe-production/api"] == before["api"]
    assert steps["stop_services"]["started_at"] < steps["restart_services"]["started_at"]
    restored = manifest["pods"][
        "restore_database-primary"
    ]  # the pod's own result: SHA-256 checked, rows after
    assert restored["ok"] and restored["sha256_verified_against"] and restored["tables"] == backup["stats"]
    assert manifest["pods"]["safety_dump-primary"]["ok"]
    events = audit_events(rig, result["run_id"])
    assert ("restore.stop_services", "succeeded") in events and (
        "restore.restart_services",
        "succeeded",
    ) in events


def test_a_fault_mid_restore_leaves_the_service_on_its_pre_restore_data(
    rig: BackupRig, backup: dict[str, Any]
) -> None:
    change_data(rig)
    pre_restore, before = db_stats(rig), replicas(rig)
    assert pre_restore != backup["stats"]
    url = rig.emulator.endpoint_url
    # the files restore (server-side copies) fails after the database was already restored
    inject_fault(url, service="s3", action="CopyObject", mode="error", status=500, count=1000)
    try:
        result = run_restore(rig, backup_id=backup["id"], components=["database", "files"])
    finally:
        clear_faults(url)
    assert result["state"] == "failed"
    tis = result["tis"]
    assert tis["restore_database_primary"] == "success" and tis["restore_files"] == "failed"
    assert tis["rollback_database_primary"] == "success" and tis["rollback_rest"] == "success"
    assert tis["watcher"] == "failed"
    assert db_stats(rig) == pre_restore  # the rows as they were before the restore, not the backup's
    assert replicas(rig) == before and health(rig) == 200
    manifest = restore_manifest(rig, backup["id"], result["run_id"])
    assert manifest["outcome"] == "failed_rolled_back", manifest["detail"]
    assert manifest["rollback"]["databases"] == ["rollback_database_primary"]
    assert manifest["pods"]["rollback_database-primary"]["tables"] == pre_restore
    events = audit_events(rig, result["run_id"])
    assert ("restore.restore_files", "failed") in events and ("restore.rollback", "succeeded") in events
    assert datetime.fromisoformat(manifest["recorded_at"]) <= datetime.now(UTC)


def test_new_instance_restores_an_archived_dump_and_an_rds_snapshot_beside_the_live_database(
    rig: BackupRig,
) -> None:
    """Tier 3 (GLACIER): artifacts thawed first; the dump into a new database on the same server (the
    live one untouched), the RDS snapshot to a new instance in the emulator; nothing is stopped."""
    from dr_automation.restore.plan import new_database_name, restore_id

    made = rig.run("backup_tier3_daily")
    assert made["state"] == "success", made["log"][-4000:]
    tier3 = backup_id(made["run_id"])
    write_verification(rig, tier3, "passed", tier="tier3_daily")
    before, live = replicas(rig), db_stats(rig)
    admin(f'ALTER ROLE "{rig.database.role}" CREATEDB')  # new_instance: the DSN's role creates the database
    try:
        result = run_restore(rig, backup_id=tier3, target="new_instance")
    finally:
        admin(f'ALTER ROLE "{rig.database.role}" NOCREATEDB')
    failed = {t: s for t, s in result["tis"].items() if s not in ("success", "skipped")}
    assert result["state"] == "success", (failed, result["log"][-5000:])
    into = new_database_name("leanvibe", restore_id(result["run_id"]))
    try:
        assert result["tis"]["stop_services"] == "success" and result["tis"]["verify_health"] == "skipped"
        assert replicas(rig) == before and db_stats(rig) == live
        key = f"backups/tier3_daily/{tier3}/restores/{restore_id(result['run_id'])}.json"
        manifest = json.loads(
            rig.aws("s3").get_object(Bucket=rig.estate.primary_region.backup_bucket, Key=key)["Body"].read()
        )
        assert manifest["outcome"] == "success"
        steps = {s["step"]: s["result"] for s in manifest["steps"]}
        assert steps["prepare"]["thawed"] > 0  # archived artifacts were restored before anything else
        restored = manifest["pods"]["restore_new_database-primary"]
        assert restored["ok"] and restored["created_database"] and restored["database"] == into
        assert steps["verify_data"]["business-data"]["mismatches"] == []
        instance = steps["restore_rds"]["full-snapshot"]["instance"]
        found = rig.aws("rds").describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
        assert found["DBInstanceStatus"] == "available"
    finally:  # the restored database is the operator's to keep; the test drops it
        admin(f'DROP DATABASE IF EXISTS "{into}" WITH (FORCE)')


def admin(statement: str) -> None:
    from dr_sandbox.database import ADMIN_DSN

    conn = psycopg2.connect(ADMIN_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()
