"""dr_test_database_failure and dr_test_data_corruption, really run (``dag.test()``) on the backup
rig: a real tier-1 backup (pg_dump of a real database), then each drill restores it into its own
test database by a toolbox pod (the Kubernetes stand-in), writes real rows, fails or corrupts it,
recovers it and measures.

Proves: each scenario passes with measured figures in its stored result (rows lost equal the rows
the writer committed after the backup, RTO/RPO from the run's own timestamps, integrity 1.0, query
latency and throughput, the corrupted table named by the integrity check); a run forced to fail
(its backup copy removed) reports passed false naming the missing backup while the production
backup stays; no drill database, S3 object under drills/<drill id>/ or drill pod/Secret remains
after any run; every AWS call stays within the IAM policies.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from dr_automation.drills.database import DRILL_LABEL
from dr_automation.drills.scenario import drill_id
from dr_sandbox import database
from dr_sandbox.aws_emulator import clear_faults
from dr_sandbox.backup_rig import BackupRig
from dr_sandbox.layout import REPO_ROOT
from tests.drill_runs import run_drill
from tests.iam_check import assert_calls_within_policies

pytestmark = pytest.mark.integration

SCRATCH_CONN = "dr_verify_scratch"
DAGS = ("dr_test_database_failure", "dr_test_data_corruption")


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, airflow_env: dict[str, str], airflow_db: str
) -> Iterator[BackupRig]:
    with BackupRig(tmp_path_factory.mktemp("drill-db-rig"), airflow_env=airflow_env) as handle:
        for dag in DAGS:
            shutil.copy(REPO_ROOT / "dags" / f"{dag}.py", handle.dags_folder / f"{dag}.py")
        handle.use_scratch_server()  # drills restore into the scratch server
        clear_faults(handle.emulator.endpoint_url)
        result = handle.run("backup_tier1_realtime")
        assert result["state"] == "success", result["log"][-4000:]
        yield handle
        assert_calls_within_policies(handle.emulator.endpoint_url, handle.estate_file)


def drill(
    rig: BackupRig, dag_id: str, conf: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One drill run and its stored result; asserts that nothing of the drill remains."""
    run, result = run_drill(rig, dag_id, conf)
    assert_nothing_left(rig, drill_id(dag_id.removeprefix("dr_test_"), run["run_id"]))
    return run, result


def assert_nothing_left(rig: BackupRig, drill: str) -> None:
    name = drill.replace("-", "_")
    with psycopg2.connect(database.ADMIN_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE left(datname, %s) = %s", (len(name), name))
        assert cur.fetchall() == [], "a drill database was left"
    conn.close()
    for region, spec in rig.estate.regions.items():
        listing = rig.aws("s3", region).list_object_versions(
            Bucket=spec.backup_bucket, Prefix=f"drills/{drill}/"
        )
        assert not listing.get("Versions") and not listing.get("DeleteMarkers"), (
            f"drill objects left in {region}"
        )
    namespace = rig.estate.kubernetes["pod_namespace"]
    for plural in ("pods", "secrets"):
        url = f"{rig.k8s.url}/api/v1/namespaces/{namespace}/{plural}?labelSelector={DRILL_LABEL}%3D{drill}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert json.load(answer)["items"] == [], f"drill {plural} left"


def assert_measured(result: dict[str, Any], objective_minutes: float) -> dict[str, Any]:
    figures = result["figures"]
    assert result["passed"] is True and result["reason"] is None, result["reason"]
    assert result["integrity_score"] == 1.0
    assert figures["tables_matching"] == figures["tables_checked"] == 4
    # the writer ran 4 s at 25 rows/s; every row it committed after the backup is lost by the restore
    assert 20 <= figures["rows_written"] <= 110
    assert figures["rows_lost"] == figures["rows_written"]
    assert 0 < figures["minutes_lost"] < objective_minutes
    assert 0 < result["rpo_seconds"] < 300
    assert figures["minutes_lost"] * 60 < result["rpo_seconds"]  # the writes happened before the failure
    phases = result["phases"]
    assert set(phases) == {"detect", "restore", "verify"} and all(v > 0 for v in phases.values())
    assert result["rto_seconds"] >= phases["restore"] + phases["verify"] > 0
    assert figures["recovery_restore_seconds"] > 0 and figures["test_database_restore_seconds"] > 0
    assert figures["backup"].startswith("tier1_realtime/")
    return figures


def test_database_failure_passes_with_measured_figures_and_leaves_nothing(rig: BackupRig) -> None:
    run, result = drill(rig, "dr_test_database_failure")
    assert run["state"] == "success", run["log"][-4000:]
    figures = assert_measured(result, 5)
    assert "does not exist" in figures["failure_seen_as"] and figures["sessions_terminated"] == 1
    assert 0 < figures["latency_ms_p50"] <= figures["latency_ms_p95"]
    assert figures["queries"] == 60 and figures["throughput_qps"] > 10
    assert result["simulated"] and result["compliance"]["rto_met"] and result["compliance"]["rpo_met"]


def test_data_corruption_is_detected_restored_and_measured(rig: BackupRig) -> None:
    run, result = drill(rig, "dr_test_data_corruption")
    assert run["state"] == "success", run["log"][-4000:]
    figures = assert_measured(result, 60)
    assert figures["rows_corrupted"] == 25
    assert figures["corruption_detected_in"] == ["invoices"]
    assert any("checksum differs" in r for r in figures["detection_reasons"])


@pytest.mark.parametrize("dag_id", DAGS)
def test_a_removed_backup_fails_the_drill_naming_it_and_still_cleans_up(rig: BackupRig, dag_id: str) -> None:
    run, result = drill(rig, dag_id, {"fault": "remove_backup"})
    assert run["state"] == "failed"
    states = {t["task_id"]: t["state"] for t in run["tis"]}
    assert states["recover"] == "failed" and states["measure"] == "failed" and states["watcher"] == "failed"
    assert result["passed"] is False and result["fault"] == "remove_backup"
    assert result["reason"].startswith("recover: the backup to restore from is missing")
    assert f"/drills/{result['drill_id']}/backup/primary-database.pgdump" in result["reason"]
    # only the drill's copy was removed: the production backup is still there
    bucket = rig.estate.primary_region.backup_bucket
    listing = rig.aws("s3").list_objects_v2(Bucket=bucket, Prefix="backups/tier1_realtime/")
    assert any(o["Key"].endswith("primary-database.pgdump") for o in listing.get("Contents", []))
