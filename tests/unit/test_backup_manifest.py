"""How the manifest decides each system's status, reason and duration from the run's own record
(task instance states, recorded failures, toolbox results); and the toolbox pieces backups add:
the Neo4j export and the result file a pod leaves for the manifest."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dr_automation.backup import plan as p
from dr_automation.backup.manifest import attribution, evaluate, listing_sha256
from dr_automation.backup.runtime import problems_of_run
from dr_automation.estate import Estate
from dr_sandbox.neo4j_api import start_neo4j_api
from dr_toolbox.neo4j import export_lines


def crumb(task_id: str, map_index: int = -1, state: str = "success", duration: float = 1.0) -> dict[str, Any]:
    return {"task_id": task_id, "map_index": map_index, "state": state, "duration": duration}


def tier2_crumbs(**states: str) -> list[dict[str, Any]]:
    """A tier-2 run: two k8s exports, metrics, user-files copied, 4 placements (one per system)."""
    out = [
        crumb("backup_kubernetes_objects", 0),
        crumb("backup_kubernetes_objects", 1),
        crumb("backup_cloudwatch_metrics", 0),
        crumb(p.COPY_S3, 0, duration=1.5),
        crumb(p.PLAN_PLACEMENT),
        *[crumb(p.PLACE, i, duration=0.25) for i in range(4)],
    ]
    for c in out:
        c["state"] = states.get(f"{c['task_id']}[{c['map_index']}]", c["state"])
    return out


COPY_PLANS = {
    p.PLACE: [
        {"component": "application-config"},
        {"component": "kubernetes-objects"},
        {"component": "monitoring-data"},
        {"component": "user-files"},
    ],
}


def test_a_failed_batch_fails_only_its_systems_without_proof_of_their_own_success(estate: Estate) -> None:
    plan = p.tier_plan(estate, "tier1_realtime")
    systems = [{**plan.systems[3], "name": f"config-{i}"} for i in range(9)]  # secrets: 4 batches
    plan = p.TierPlan(**{**plan.__dict__, "systems": tuple(systems)})
    who = attribution(plan, {})
    assert who.batches[("backup_secrets", 0)] == ["config-0", "config-1"]
    assert sorted(who.expected) == [("backup_secrets", i) for i in range(4)]
    crumbs = [crumb("backup_secrets", i, "failed" if i == 0 else "success") for i in range(4)]
    failures = [{"system": "config-1", "reason": "ThrottlingException", "try_number": 3}]
    outcomes = evaluate(plan, crumbs, {}, failures, done=["config-0"])
    assert outcomes["config-0"]["status"] == "succeeded"  # its batch failed, it did not
    assert outcomes["config-1"]["status"] == "failed"
    assert outcomes["config-1"]["reason"] == "ThrottlingException (backup_secrets[0] ended failed)"
    assert all(outcomes[f"config-{i}"]["status"] == "succeeded" for i in range(2, 9))
    # a batch instance that never finished fails all of its systems
    outcomes = evaluate(plan, crumbs[1:], {}, [], done=["config-0"])
    assert outcomes["config-0"]["reason"] == "backup_secrets[0] did not finish"


def test_every_task_instance_is_attributed_to_its_system(estate: Estate) -> None:
    who = attribution(p.tier_plan(estate, "tier2_frequent"), COPY_PLANS)
    assert who.by_task[("backup_kubernetes_objects", 1)] == "kubernetes-objects"
    assert who.by_task[(p.COPY_S3, 0)] == "user-files" and who.by_task[(p.PLACE, 2)] == "monitoring-data"
    assert who.shared == {
        p.PLAN_PLACEMENT: ["application-config", "kubernetes-objects", "monitoring-data", "user-files"],
    }
    assert (p.COPY_S3, 0) in who.expected  # literal: one per S3 system, promised by the config
    assert (p.PLACE, 0) not in who.expected  # run-time mapped: known from the plan, not promised


def test_a_clean_run_succeeds_every_system_with_its_summed_duration(estate: Estate) -> None:
    outcomes = evaluate(p.tier_plan(estate, "tier2_frequent"), tier2_crumbs(), COPY_PLANS)
    assert {n: o["status"] for n, o in outcomes.items()} == dict.fromkeys(
        ("application-config", "kubernetes-objects", "monitoring-data", "user-files"), "succeeded"
    )
    # user-files: its copy 1.5 + its placement 0.25 (the shared planning step is not counted)
    assert outcomes["user-files"]["duration_seconds"] == 1.75
    assert outcomes["application-config"]["duration_seconds"] == 1.25


def test_a_failed_system_gets_its_recorded_reason_and_its_siblings_are_unaffected(estate: Estate) -> None:
    crumbs = tier2_crumbs(**{f"{p.COPY_S3}[0]": "failed"})
    failures = [
        {
            "system": "user-files",
            "reason": "ClientError: InternalError (CopyObject) [old try]",
            "try_number": 1,
        },
        {"system": "user-files", "reason": "ClientError: InternalError (CopyObject)", "try_number": 3},
    ]
    outcomes = evaluate(p.tier_plan(estate, "tier2_frequent"), crumbs, COPY_PLANS, failures)
    assert outcomes["user-files"]["status"] == "failed"
    assert (
        outcomes["user-files"]["reason"]
        == "ClientError: InternalError (CopyObject) (copy_s3_objects[0] ended failed)"
    )
    assert all(
        outcomes[n]["status"] == "succeeded"
        for n in ("application-config", "kubernetes-objects", "monitoring-data")
    )


def test_a_pod_failure_is_explained_by_the_toolbox_result(estate: Estate) -> None:
    crumbs = tier2_crumbs(**{"backup_kubernetes_objects[1]": "failed"})
    results = {"kubernetes-objects": {"ok": False, "error": "GET /apis/apps/v1/...: HTTP 403 forbidden"}}
    outcomes = evaluate(p.tier_plan(estate, "tier2_frequent"), crumbs, COPY_PLANS, results=results)
    assert outcomes["kubernetes-objects"]["reason"].startswith("GET /apis/apps/v1/...: HTTP 403 forbidden")


def test_missing_and_shared_task_failures_fail_the_systems_that_depend_on_them(estate: Estate) -> None:
    crumbs = tier2_crumbs(**{f"{p.PLAN_PLACEMENT}[-1]": "failed"})
    crumbs = [c for c in crumbs if c["task_id"] != "backup_cloudwatch_metrics"]
    outcomes = evaluate(p.tier_plan(estate, "tier2_frequent"), crumbs, COPY_PLANS)
    assert outcomes["user-files"]["reason"] == "plan_placement ended failed"
    assert outcomes["monitoring-data"]["reason"] == (
        "backup_cloudwatch_metrics[0] did not finish; plan_placement ended failed"
    )


def test_the_run_fails_naming_every_failed_system_and_retention_problems(estate: Estate) -> None:
    plan = p.tier_plan(estate, "tier1_realtime")
    summary = {
        "failed": {"critical-config": "GetSecretValue throttled", "user-sessions": "Redis down"},
        "components": 4,
    }
    crumbs = [crumb(p.CHECK_RETENTION, state="failed"), crumb(p.WRITE_MANIFEST)]
    problems = problems_of_run(plan, summary, crumbs, "leanvibe-backups-prod: versioning is not enabled")
    assert problems == [
        "2 of 4 systems failed: critical-config (GetSecretValue throttled); user-sessions (Redis down)",
        "retention: leanvibe-backups-prod: versioning is not enabled",
    ]
    assert problems_of_run(plan, None, [crumb(p.WRITE_MANIFEST, state="failed")], None) == [
        "the manifest was not written (write_manifest ended failed)"
    ]


def test_listing_sha256_is_over_sorted_name_lines() -> None:
    artifacts = [
        {"name": "b", "size_bytes": 2, "sha256": "22"},
        {"name": "a", "size_bytes": 1, "sha256": "11"},
    ]
    assert listing_sha256(artifacts) == hashlib.sha256(b"11  1  a\n22  2  b\n").hexdigest()


# -- the toolbox pieces ----------------------------------------------------------------------------

TOOLBOX = [sys.executable, "-m", "dr_toolbox"]


def toolbox(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    out = subprocess.run([*TOOLBOX, *args], env=env, capture_output=True, text=True, timeout=60)
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def neo4j() -> Any:
    handle = start_neo4j_api("graph-secret-1")
    yield handle
    handle.stop()


def test_neo4j_export_is_the_whole_graph_reproducibly(neo4j: Any, tmp_path: Path) -> None:
    env = {**os.environ, "NEO_PW": "graph-secret-1"}
    code, first = toolbox(
        env, "neo4j-backup", "--uri", neo4j.url, "--password-env", "NEO_PW", "--out", str(tmp_path / "a.gz")
    )
    assert code == 0, first
    _, second = toolbox(
        env, "neo4j-backup", "--uri", neo4j.url, "--password-env", "NEO_PW", "--out", str(tmp_path / "b.gz")
    )
    data = (tmp_path / "a.gz").read_bytes()
    assert first["sha256"] == second["sha256"] == hashlib.sha256(data).hexdigest()
    lines = [json.loads(x) for x in gzip.decompress(data).decode().splitlines()]
    assert lines[0]["nodes"] == len(neo4j.graph.nodes) == first["nodes"]
    assert sum(1 for x in lines[1:] if x["kind"] == "relationship") == len(neo4j.graph.relationships)
    assert data == export_lines(
        "neo4j",
        [[i, lb, pr] for i, lb, pr in sorted(neo4j.graph.nodes)],
        [list(r) for r in sorted(neo4j.graph.relationships)],
    )


def test_a_failing_pod_leaves_its_redacted_result_for_the_manifest(neo4j: Any, tmp_path: Path) -> None:
    env = {**os.environ, "NEO_PW": "wrong-password-xyz"}
    result_file = tmp_path / "result.json"
    code, line = toolbox(
        env,
        "--result-out",
        str(result_file),
        "neo4j-backup",
        "--uri",
        neo4j.url,
        "--password-env",
        "NEO_PW",
        "--out",
        str(tmp_path / "c.gz"),
    )
    assert code == 1 and "HTTP 401 authentication failed" in line["error"]
    stored = json.loads(result_file.read_text())
    assert stored["ok"] is False and stored["error"] == line["error"]
    assert "wrong-password-xyz" not in result_file.read_text()
    code, usage = toolbox(
        env, "neo4j-backup", "--uri", "bolt://x:7687", "--password-env", "NEO_PW", "--out", "/tmp/x"
    )
    assert code == 2 and "argument --uri" in usage["error"]


def test_a_toolbox_batch_runs_every_job_and_names_the_one_that_failed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "plugins")}
    data = tmp_path / "data.bin"
    data.write_bytes(b"backup bytes")
    jobs = [
        ["--result-out", str(tmp_path / "ok.json"), "checksum", str(data)],
        ["--result-out", str(tmp_path / "gone.json"), "checksum", str(tmp_path / "missing")],
        ["--result-out", str(tmp_path / "ok2.json"), "checksum", str(data)],
    ]
    args = [a for job in jobs for a in ("--job", json.dumps(job))]
    code, result = toolbox(env, "batch", "--parallel", "2", *args)
    assert code == 1 and result["failed"] == ["gone"]
    assert [j["job"] for j in result["jobs"]] == ["ok", "gone", "ok2"]
    ok = json.loads((tmp_path / "ok2.json").read_text())  # each job left its own result
    assert ok["ok"] and ok["sha256"] == hashlib.sha256(b"backup bytes").hexdigest()
    assert json.loads((tmp_path / "gone.json").read_text())["ok"] is False
    code, result = toolbox(env, "batch", "--job", json.dumps(["batch", "--job", "[]"]))
    assert code == 2 and "--job" in result["error"]  # a batch never nests
