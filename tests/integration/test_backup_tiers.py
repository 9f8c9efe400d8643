"""The four backup tier DAGs, really run (``dag.test()``) against the backup rig: the AWS emulator,
the Kubernetes stand-in running toolbox pods, a real PostgreSQL database, the machine's Redis, the
Neo4j stand-in (dr_sandbox.backup_rig).

Proves, per tier: the run succeeds, every location holds the same manifest, every artifact of every
system is there with the recorded SHA-256 (recomputed here from the bytes, archived copies restored
first), including the real database dump; what each system's backup contains (sessions, sealed
secrets, Kubernetes kinds with their API groups, the graph); the asset event; Object Lock refusing to
delete a tier-4 archive; throttling injected on every AWS action each tier makes being survived; a
failing system reported by name while its siblings complete and are manifested.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest

from dr_automation.backup.components import unseal
from dr_automation.backup.plan import aws_actions, backup_id, tier_plan
from dr_sandbox.aws_emulator import clear_faults, inject_fault, list_faults
from dr_sandbox.backup_rig import BackupRig
from tests.backup_verify import (
    TIER_DAGS,
    assert_archive_delete_refused,
    read_manifests,
    read_object,
    split,
    verify_manifest,
)
from tests.iam_check import assert_calls_within_policies

pytestmark = pytest.mark.integration

TIERS = TIER_DAGS


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, airflow_env: dict[str, str], airflow_db: str
) -> Iterator[BackupRig]:
    with BackupRig(tmp_path_factory.mktemp("backup-rig"), airflow_env=airflow_env) as handle:
        yield handle
        assert_calls_within_policies(handle.emulator.endpoint_url, handle.estate_file)


@pytest.fixture(scope="module")
def runs(rig: BackupRig) -> dict[str, dict[str, Any]]:
    """One clean run of each tier (shared by the tests that read what it left)."""
    clear_faults(rig.emulator.endpoint_url)
    return {key: rig.run(dag_id) for key, dag_id in TIERS.items()}


def states(result: dict[str, Any]) -> dict[str, str]:
    return {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in result["tis"]}


def manifests(rig: BackupRig, key: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    plan = tier_plan(rig.estate, key)
    return read_manifests(lambda region: rig.aws("s3", region), plan, backup_id(result["run_id"]))


def artifact(rig: BackupRig, manifest: dict[str, Any], name: str, index: int = 0) -> bytes:
    entry = next(c for c in manifest["components"] if c["name"] == name)
    bucket, prefix = split(entry["locations"][0])
    region = next(loc["region"] for loc in manifest["locations"] if loc["bucket"] == bucket)
    return read_object(rig.aws("s3", region), bucket, prefix + entry["artifacts"][index]["name"])


@pytest.mark.parametrize("key", list(TIERS))
def test_each_tier_run_writes_a_manifest_whose_every_entry_exists_with_its_checksum(
    rig: BackupRig, runs: dict[str, dict[str, Any]], key: str
) -> None:
    result = runs[key]
    assert result["state"] == "success", (states(result), result["log"][-4000:])
    found = manifests(rig, key, result)
    plan = tier_plan(rig.estate, key)
    assert len(found) == len(plan.locations) >= 1
    assert all(m == found[0] for m in found), "the locations hold different manifests"
    manifest = found[0]
    assert manifest["status"] == "complete" and manifest["summary"]["failed"] == {}
    assert [c["name"] for c in manifest["components"]] == [s["name"] for s in plan.systems]
    for component in manifest["components"]:
        assert component["status"] == "succeeded" and component["reason"] is None
        assert component["encryption"]["type"] == "aws:kms"
        assert set(component["encryption"]["kms_key_ids"]) == {loc.bucket for loc in plan.locations}
        assert component["duration_seconds"] > 0 and component["size_bytes"] > 0
        assert len(component["sha256"]) == 64
    checked = verify_manifest(lambda region: rig.aws("s3", region), manifest)
    assert checked == sum(len(c["artifacts"]) for c in manifest["components"]) * len(plan.locations)
    # the asset event verification consumes: one per run, pointing at the manifests
    events = result["asset_events"]
    assert [e["asset"] for e in events] == [f"dr_backup_{key}"]
    assert events[0]["extra"]["backup_id"] == manifest["backup_id"]
    assert sorted(events[0]["extra"]["manifests"]) == sorted(
        loc.url(k) for loc, k in plan.manifest_keys(manifest["backup_id"])
    )
    # every system was a mapped task instance, labelled by the system's name in the run
    mapped = [t for t in result["tis"] if t["map_index"] >= 0]
    assert len(mapped) >= len(plan.systems)


def use_rig_connections(rig: BackupRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process reaches the rig's AWS (and the rest) through the same connections as the DAGs."""
    for name, value in rig.env.items():
        if name.startswith(("AIRFLOW_CONN_", "AWS_")) or name == "DR_ESTATE_CONFIG":
            monkeypatch.setenv(name, value)


def test_tier1_backs_up_the_real_database_sessions_and_sealed_secrets(
    rig: BackupRig, runs: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = manifests(rig, "tier1_realtime", runs["tier1_realtime"])[0]
    dump = next(c for c in manifest["components"] if c["name"] == "primary-database")
    names = [a["name"] for a in dump["artifacts"]]
    assert names == ["primary-database.pgdump", "primary-database.pgdump.stats.json"]
    assert artifact(rig, manifest, "primary-database").startswith(b"PGDMP")  # a real pg_dump custom archive
    stats = json.loads(artifact(rig, manifest, "primary-database", 1))
    assert set(stats["tables"]) >= {"tenants", "users", "subscriptions", "invoices"}
    assert all(t["rows"] > 0 for t in stats["tables"].values())
    assert dump["details"]["tables"] and dump["details"]["wal_lsn"]

    lines = artifact(rig, manifest, "user-sessions").decode().splitlines()
    assert json.loads(lines[0])["key_prefix"].startswith(rig.name)
    assert len(lines) - 1 == len(rig.sessions)  # every seeded session, as an opaque DUMP payload

    envelope = json.loads(artifact(rig, manifest, "critical-config"))
    sm = rig.aws("secretsmanager")
    for secret_id in envelope["secret_ids"]:
        value = sm.get_secret_value(SecretId=secret_id)["SecretString"]
        assert value not in json.dumps(envelope)  # sealed: no plaintext in the object
        assert value not in runs["tier1_realtime"]["log"]  # and never logged
    use_rig_connections(rig, monkeypatch)
    payload = json.loads(unseal(rig.estate, envelope))
    assert {k: v["secret_string"] for k, v in payload.items()} == {
        s: sm.get_secret_value(SecretId=s)["SecretString"] for s in envelope["secret_ids"]
    }
    evidence = json.loads(artifact(rig, manifest, "transaction-logs"))
    assert evidence["restore_lag_seconds"] < 300 and evidence["wal"]["segment"]


def test_tier2_exports_kubernetes_objects_with_their_api_groups_and_copies_user_files(
    rig: BackupRig, runs: dict[str, dict[str, Any]]
) -> None:
    manifest = manifests(rig, "tier2_frequent", runs["tier2_frequent"])[0]
    export = json.loads(gzip.decompress(artifact(rig, manifest, "kubernetes-objects")))
    versions = {item["kind"]: item["apiVersion"] for item in export["items"]}
    wanted = {k["kind"]: k["api_version"] for k in rig.estate.kubernetes["resource_kinds"]}
    assert versions == wanted
    secrets = [i for i in export["items"] if i["kind"] == "Secret"]
    assert secrets and all(i["data"] for i in secrets)  # Secrets exported (the object is SSE-KMS)
    files = next(c for c in manifest["components"] if c["name"] == "user-files")
    source = rig.aws("s3").list_objects_v2(Bucket="leanvibe-user-files-prod")["Contents"]
    assert sorted(a["name"] for a in files["artifacts"]) == sorted(f"objects/{o['Key']}" for o in source)
    assert manifest["locations"][1]["region"] == rig.estate.dr_region.name  # copied cross-region
    metrics = json.loads(gzip.decompress(artifact(rig, manifest, "monitoring-data")))
    assert all(metrics["regions"][r] for r in rig.estate.regions)


def test_tier3_snapshot_is_copied_to_the_dr_region_with_its_key_and_neo4j_is_exported(
    rig: BackupRig, runs: dict[str, dict[str, Any]]
) -> None:
    manifest = manifests(rig, "tier3_daily", runs["tier3_daily"])[0]
    snapshots = json.loads(artifact(rig, manifest, "full-snapshot"))["snapshots"]
    assert [s["region"] for s in snapshots] == ["us-east-1", "eu-west-1"]
    copy = rig.aws("rds", "eu-west-1").describe_db_snapshots(DBSnapshotIdentifier=snapshots[1]["identifier"])
    assert copy["DBSnapshots"][0]["KmsKeyId"] == rig.seeded["kms_key_arns"]["eu-west-1"]
    graph = gzip.decompress(artifact(rig, manifest, "neo4j-cluster")).decode().splitlines()
    header = json.loads(graph[0])
    assert (
        header["nodes"] == len(rig.neo4j.graph.nodes)
        and len(graph) == 1 + header["nodes"] + header["relationships"]
    )
    assert {loc["storage_class"] for loc in manifest["locations"]} == {"GLACIER"}


def test_tier4_archives_are_locked_in_two_regions_and_deleting_one_is_refused(
    rig: BackupRig, runs: dict[str, dict[str, Any]]
) -> None:
    manifest = manifests(rig, "tier4_archival", runs["tier4_archival"])[0]
    assert sorted(loc["region"] for loc in manifest["locations"]) == ["eu-west-1", "us-east-1"]
    entry = next(c for c in manifest["components"] if c["name"] == "historical-data")
    for url in entry["locations"]:
        bucket, prefix = split(url)
        region = next(loc["region"] for loc in manifest["locations"] if loc["bucket"] == bucket)
        s3 = rig.aws("s3", region)
        assert_archive_delete_refused(s3, bucket, prefix + entry["artifacts"][0]["name"])


# more throttling than boto3's own retries absorb, on one call per tier: the task itself retries
BURSTS = {
    "tier1_realtime": ("secretsmanager", "GetSecretValue", "backup_secrets"),
    "tier2_frequent": ("monitoring", "ListMetrics", "backup_cloudwatch_metrics"),
    "tier3_daily": ("kms", "DescribeKey", "plan_rds_snapshot_copies"),
    "tier4_archival": ("ec2", "DescribeImages", "backup_machine_images"),
}


@pytest.mark.parametrize("key", list(TIERS))
def test_throttling_on_every_aws_action_a_tier_makes_is_survived(
    rig: BackupRig, runs: dict[str, dict[str, Any]], key: str
) -> None:
    url = rig.emulator.endpoint_url
    clear_faults(url)
    plan = tier_plan(rig.estate, key)
    for service, action in aws_actions(plan):
        inject_fault(url, service=service, action=action, mode="throttle", count=2)
    service, action, task_id = BURSTS[key]
    inject_fault(url, service=service, action=action, mode="throttle", count=8)
    try:
        result = rig.run(TIERS[key])
        faults = list_faults(url)
    finally:
        clear_faults(url)
    assert result["state"] == "success", (states(result), result["log"][-4000:])
    unhit = [(f["service"], f["action"]) for f in faults if f["hits"] < f["count"]]
    assert unhit == [], f"declared AWS actions the run never made: {unhit}"
    tries = {t["task_id"]: t["try_number"] for t in result["tis"]}
    assert tries[task_id] >= 2  # retried by Airflow, with exponential backoff
    manifest = manifests(rig, key, result)[0]
    assert manifest["status"] == "complete"
    verify_manifest(lambda region: rig.aws("s3", region), manifest)


def test_a_failing_system_is_named_while_its_siblings_complete_and_are_manifested(
    rig: BackupRig, runs: dict[str, dict[str, Any]]
) -> None:
    url = rig.emulator.endpoint_url
    inject_fault(url, service="secretsmanager", action="GetSecretValue", mode="error", status=500, count=1000)
    rig.sink.clear()
    try:
        result = rig.run("backup_tier1_realtime")
    finally:
        clear_faults(url)
    assert result["state"] == "failed"
    by_task = states(result)
    assert by_task["backup_secrets[0]"] == "failed" and by_task["publish[-1]"] == "failed"
    assert by_task["write_manifest[-1]"] == "success"
    manifest = manifests(rig, "tier1_realtime", result)[0]
    assert manifest["status"] == "partial"
    status = {c["name"]: c["status"] for c in manifest["components"]}
    assert status == {
        "primary-database": "succeeded",
        "transaction-logs": "succeeded",
        "user-sessions": "succeeded",
        "critical-config": "failed",
    }
    failed = next(c for c in manifest["components"] if c["name"] == "critical-config")
    assert "GetSecretValue" in failed["reason"] and "backup_secrets[0] ended failed" in failed["reason"]
    verify_manifest(lambda region: rig.aws("s3", region), manifest)  # the siblings are whole
    assert result["asset_events"] == []  # an incomplete backup is not published
    pages = [m["body"] for m in rig.sink.messages() if "critical-config" in json.dumps(m["body"])]
    assert pages, "no notification named the failed system"
    assert "backup_tier1_realtime" in json.dumps(pages[0])


def test_the_deadline_callback_runs_as_the_triggerer_runs_it_and_pages(
    rig: BackupRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AsyncCallback through Airflow's CallbackTrigger (the triggerer's path), importing from plugins."""
    import asyncio

    from airflow.triggers.callback import CallbackTrigger

    use_rig_connections(rig, monkeypatch)
    rig.sink.clear()
    trigger = CallbackTrigger(
        "dr_automation.backup.deadline.backup_deadline_missed",
        {
            "tier": "tier1_realtime",
            "dag_id": "backup_tier1_realtime",
            "rpo_minutes": 5,
            "context": {"dag_run": {"run_id": "scheduled__2026-11-04T10:05:00+00:00"}, "deadline": {}},
        },
    )

    async def events() -> list[Any]:
        return [event.payload async for event in trigger.run()]

    payloads = asyncio.run(events())
    assert payloads[-1]["state"] == "success", payloads
    assert payloads[-1]["body"]["counts"]["sent"] > 0
    chat = [m["body"] for m in rig.sink.messages() if "missed its 5 min RPO" in json.dumps(m["body"])]
    assert chat and "scheduled__2026-11-04T10:05:00+00:00" in json.dumps(chat[0])
