"""Backup verification's checks, each against moto in-process: what S3 holds (exists, encrypted,
size, checksum recomputed, the manifest itself), the content validators, which backups a run picks,
verified RPO arithmetic, the RDS snapshot restore (scratch instance always deleted), scratch names,
and the estate's verification settings refusing bad values."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dr_automation.backup.components import seal
from dr_automation.backup.manifest import MANIFEST_FORMAT, listing_sha256
from dr_automation.estate import Estate, EstateConfigError
from dr_automation.verification import content, objects, record, restores, settings, targets
from tests.unit.backup_moto import client, mocked_estate_aws
from tests.unit.conftest import Doc, load_doc

BUCKET = "leanvibe-backups-prod"


@pytest.fixture
def aws(estate: Estate) -> Iterator[dict[str, Any]]:
    with mocked_estate_aws(estate) as handles:
        yield handles


def put(key: str, body: bytes, *, sse: str = "aws:kms", written: str | None = None) -> dict[str, Any]:
    """An artifact as the backup writes it (SHA-256 in metadata and as S3's checksum); its manifest line."""
    sha = hashlib.sha256(body).hexdigest()
    encryption = {"ServerSideEncryption": sse} | (
        {"SSEKMSKeyId": "alias/leanvibe-dr-us-east-1"} if sse == "aws:kms" else {}
    )
    client("s3").put_object(
        Bucket=BUCKET,
        Key=key,
        Body=body,
        ChecksumAlgorithm="SHA256",
        Metadata={"sha256": written or sha},
        **encryption,
    )
    return {"name": key.rsplit("/", 1)[-1], "size_bytes": len(body), "sha256": sha}


def by_check(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["check"]: c for c in checks}


# -- objects ---------------------------------------------------------------------------------------


def test_a_whole_encrypted_object_passes_every_check(aws: dict[str, Any]) -> None:
    artifact = put("b/x/data.json", b'{"a": 1}')
    checks = objects.check_artifact(client("s3"), BUCKET, "b/x/data.json", artifact, kms_key_id=None)
    assert [c["check"] for c in checks] == ["exists", "available", "encrypted", "size", "checksum"]
    assert all(c["ok"] for c in checks), checks
    assert by_check(checks)["checksum"]["verified_by"] == "recomputed"


def test_a_changed_object_and_a_wrong_manifest_checksum_are_told_apart(aws: dict[str, Any]) -> None:
    artifact = put("b/x/data.json", b"original bytes")
    put("b/x/data.json", b"originaL bytes", written=artifact["sha256"])  # corrupted at rest, metadata kept
    changed = by_check(
        objects.check_artifact(client("s3"), BUCKET, "b/x/data.json", artifact, kms_key_id=None)
    )
    actual = hashlib.sha256(b"originaL bytes").hexdigest()
    assert changed["checksum"]["reason"] == (
        f"s3://{BUCKET}/b/x/data.json: SHA-256 {actual} recomputed, the manifest records {artifact['sha256']} "
        f"(its writer recorded {artifact['sha256']}): the object changed after it was written"
    )
    assert changed["size"]["ok"]  # same length: only the checksum can tell

    good = put("b/y/data.json", b"fine")
    wrong = {**good, "sha256": "f" * 64}
    manifest_wrong = by_check(
        objects.check_artifact(client("s3"), BUCKET, "b/y/data.json", wrong, kms_key_id=None)
    )
    assert manifest_wrong["checksum"]["reason"].endswith(
        f"the manifest records SHA-256 {'f' * 64} but the object hashes to {good['sha256']}, as its writer "
        "recorded: the manifest's checksum is wrong"
    )


def test_missing_truncated_and_unencrypted_objects_are_named(aws: dict[str, Any]) -> None:
    missing = objects.check_artifact(
        client("s3"), BUCKET, "b/none", {"size_bytes": 1, "sha256": "0" * 64}, kms_key_id=None
    )
    assert missing == [
        objects.check("exists", f"s3://{BUCKET}/b/none", False, f"s3://{BUCKET}/b/none is missing (404)")
    ]

    artifact = put("b/dump", b"x" * 100)
    put("b/dump", b"x" * 40, written=artifact["sha256"])
    truncated = by_check(objects.check_artifact(client("s3"), BUCKET, "b/dump", artifact, kms_key_id=None))
    assert truncated["size"]["reason"] == f"s3://{BUCKET}/b/dump is 40 bytes, the manifest records 100"
    assert not truncated["checksum"]["ok"]

    plain = put("b/plain", b"secret-ish", sse="AES256")
    unencrypted = by_check(objects.check_artifact(client("s3"), BUCKET, "b/plain", plain, kms_key_id=None))
    assert unencrypted["encrypted"]["reason"] == (
        f"s3://{BUCKET}/b/plain is not encrypted with SSE-KMS (ServerSideEncryption=AES256)"
    )
    assert unencrypted["checksum"]["ok"]  # intact bytes, wrong protection


def test_an_object_under_another_kms_key_than_recorded_fails(aws: dict[str, Any]) -> None:
    artifact = put("b/k", b"data")
    checks = by_check(
        objects.check_artifact(client("s3"), BUCKET, "b/k", artifact, kms_key_id="arn:aws:kms:other")
    )
    assert "the manifest records arn:aws:kms:other" in checks["encrypted"]["reason"]


def test_an_archived_object_is_restored_before_it_is_read(aws: dict[str, Any]) -> None:
    body = b"archived"
    client("s3").put_object(
        Bucket=BUCKET,
        Key="b/glacier",
        Body=body,
        StorageClass="GLACIER",
        ChecksumAlgorithm="SHA256",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId="alias/leanvibe-dr-us-east-1",
    )
    artifact = {"size_bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    checks = by_check(objects.check_artifact(client("s3"), BUCKET, "b/glacier", artifact, kms_key_id=None))
    assert checks["available"]["ok"] and checks["available"]["storage_class"] == "GLACIER"
    assert checks["checksum"]["ok"] and checks["checksum"]["verified_by"] == "recomputed"


def test_the_manifest_must_hash_to_what_the_backup_run_and_the_asset_event_recorded(
    aws: dict[str, Any],
) -> None:
    body = json.dumps({"format": MANIFEST_FORMAT, "backup_id": "b1"}).encode()
    sha = hashlib.sha256(body).hexdigest()
    client("s3").put_object(Bucket=BUCKET, Key="m.json", Body=body, Metadata={"sha256": sha})
    manifest, ok = objects.read_manifest(client("s3"), BUCKET, "m.json", expected_sha256=sha)
    assert manifest["backup_id"] == "b1" and ok["ok"]
    _, event_differs = objects.read_manifest(client("s3"), BUCKET, "m.json", expected_sha256="a" * 64)
    assert (
        event_differs["reason"]
        == f"manifest s3://{BUCKET}/m.json hashes to {sha}, the asset event carries {'a' * 64}"
    )
    client("s3").put_object(Bucket=BUCKET, Key="m.json", Body=body + b" ", Metadata={"sha256": sha})
    _, edited = objects.read_manifest(client("s3"), BUCKET, "m.json")
    assert f"the backup run recorded {sha}" in edited["reason"]


def test_an_entry_whose_summary_disagrees_with_its_artifacts_fails() -> None:
    artifacts = [
        {"name": "a", "size_bytes": 1, "sha256": "1" * 64},
        {"name": "b", "size_bytes": 2, "sha256": "2" * 64},
    ]
    entry = {"name": "s", "artifacts": artifacts, "sha256": listing_sha256(artifacts), "size_bytes": 3}
    assert objects.check_entry_summary(entry)["ok"]
    assert "entry size 4" in objects.check_entry_summary({**entry, "size_bytes": 4})["reason"]
    assert "lists no artifact" in objects.check_entry_summary({**entry, "artifacts": []})["reason"]


# -- content ---------------------------------------------------------------------------------------


def k8s_export(estate: Estate, **item: Any) -> bytes:
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "app", "namespace": estate.kubernetes["namespaces"][0]},
    } | item
    doc = {"format": content.K8S_FORMAT, "counts": {obj["kind"]: 1}, "items": [obj]}
    return gzip.compress(json.dumps(doc).encode())


def test_kubernetes_objects_must_be_reappliable(estate: Estate) -> None:
    entry = {"name": "application-config", "type": "kubernetes_objects"}
    assert content.check_content(estate, entry, {"objects.json.gz": k8s_export(estate)})["ok"]
    wrong_group = content.check_content(
        estate, entry, {"objects.json.gz": k8s_export(estate, kind="Deployment")}
    )
    assert wrong_group["reason"].endswith("apiVersion 'v1', expected 'apps/v1'")
    runtime = k8s_export(
        estate, metadata={"name": "a", "namespace": estate.kubernetes["namespaces"][0], "uid": "x"}
    )
    assert "metadata.uid kept" in content.check_content(estate, entry, {"objects.json.gz": runtime})["reason"]
    assert (
        "does not parse"
        in content.check_content(estate, entry, {"objects.json.gz": b"\x1f\x8bnot gzip"})["reason"]
    )


def test_a_neo4j_export_must_be_consistent_with_itself_and_the_backup_record(estate: Estate) -> None:
    from dr_toolbox.neo4j import export_lines

    nodes = [["n1", ["A"], {}], ["n2", ["B"], {}]]
    good = export_lines("neo4j", nodes, [["r1", "KNOWS", "n1", "n2", {}]])
    entry = {"name": "graph", "type": "neo4j", "details": {"nodes": 2, "relationships": 1}}
    assert content.check_content(estate, entry, {"graph.jsonl.gz": good})["summary"].startswith(
        "2 nodes, 1 relationships"
    )
    dangling = export_lines("neo4j", nodes, [["r1", "KNOWS", "n1", "n9", {}]])
    assert (
        "join nodes that are not in the export"
        in content.check_content(estate, entry, {"graph.jsonl.gz": dangling})["reason"]
    )
    fewer = export_lines("neo4j", nodes[:1], [])
    assert (
        "1 nodes, the backup recorded 2"
        in content.check_content(estate, entry, {"graph.jsonl.gz": fewer})["reason"]
    )


def test_sealed_secrets_must_open(estate: Estate, aws: dict[str, Any]) -> None:
    payload = json.dumps({"leanvibe/prod/api": {"secret_string": "s3cr3t"}}).encode()
    envelope = seal(estate, "us-east-1", "alias/leanvibe-dr-us-east-1", payload, "critical-config")
    envelope["secret_ids"] = ["leanvibe/prod/api"]
    entry = {"name": "critical-config", "type": "secrets"}
    opened = content.check_content(estate, entry, {"secrets.json": json.dumps(envelope).encode()})
    assert opened["ok"] and "s3cr3t" not in json.dumps(opened)
    tampered = {**envelope, "ciphertext": envelope["ciphertext"][:-8] + "AAAAAAA="}
    failed = content.check_content(estate, entry, {"secrets.json": json.dumps(tampered).encode()})
    assert failed["reason"] == "critical-config: secrets.json: the sealed envelope does not open (InvalidTag)"


def test_a_dump_must_be_a_pg_dump_archive_whose_sidecar_matches_the_manifest(estate: Estate) -> None:
    dump = b"PGDMP" + b"\x00" * 20
    sha = hashlib.sha256(dump).hexdigest()
    tables = {"public.t": {"rows": 3, "checksum": "c"}}
    sidecar = json.dumps({"format": content.STATS_FORMAT, "sha256": sha, "tables": tables}).encode()
    entry = {
        "name": "db",
        "type": "postgres_database",
        "artifacts": [{"name": "db.pgdump", "sha256": sha}],
        "details": {"tables": tables},
    }
    blobs = {"db.pgdump": dump, "db.pgdump.stats.json": sidecar}
    assert content.check_content(estate, entry, blobs)["ok"]
    assert (
        "no PGDMP header" in content.check_content(estate, entry, {**blobs, "db.pgdump": b"junk"})["reason"]
    )
    other = {**entry, "details": {"tables": {"public.t": {"rows": 4, "checksum": "c"}}}}
    assert (
        "different figures for tables ['public.t']" in content.check_content(estate, other, blobs)["reason"]
    )


# -- targets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tier": "tier9"}, "tier: 'tier9' is not a tier of the estate"),
        ({"tier": "tier1_realtime", "backup_id": "../etc"}, "backup_id: '../etc' is not a backup id"),
        ({"backup_id": "b1"}, "backup_id: needs tier"),
        ({"tier": None, "backup_id": None, "extra": 1}, "extra: is not a parameter of verify_backups"),
    ],
)
def test_bad_params_name_the_field(estate: Estate, params: dict[str, Any], message: str) -> None:
    with pytest.raises(
        targets.VerificationInputError, match="^" + message.replace("(", r"\(").replace(".", r"\.")
    ):
        targets.check_params(estate, params)


def test_an_unknown_backup_is_refused_naming_backup_id(estate: Estate, aws: dict[str, Any]) -> None:
    with pytest.raises(targets.VerificationInputError) as caught:
        targets.select(estate, {"tier": "tier1_realtime", "backup_id": "nope"}, None)
    assert caught.value.field == "backup_id"
    assert str(caught.value) == (
        f"backup_id: no backup 'nope' of tier1_realtime: s3://{BUCKET}/backups/tier1_realtime/nope/manifest.json does not exist"
    )


def test_asset_events_name_the_backups_and_the_sweep_finds_the_unverified(
    estate: Estate, aws: dict[str, Any]
) -> None:
    events = {
        "asset": [
            SimpleNamespace(extra={"tier": "tier1_realtime", "backup_id": "b1", "manifest_sha256": "a" * 64})
        ]
    }
    assert targets.select(estate, {}, events)["targets"] == [
        {"tier": "tier1_realtime", "backup_id": "b1", "source": "asset_event", "manifest_sha256": "a" * 64}
    ]
    for name in ("b1-old", "b2-verified", "b3-new", "b4-newest"):  # (ids of one second sort by name)
        client("s3").put_object(Bucket=BUCKET, Key=f"backups/tier1_realtime/{name}/manifest.json", Body=b"{}")
    client("s3").put_object(
        Bucket=BUCKET, Key="backups/tier1_realtime/b2-verified/verification.json", Body=b"{}"
    )
    found, left = targets.unverified(estate, "tier1_realtime", 2)
    assert [t["backup_id"] for t in found] == ["b4-newest", "b3-new"] and left == 1
    sweep = targets.select(estate, {"tier": "tier1_realtime"}, events)
    assert sweep["mode"] == "sweep" and len(sweep["targets"]) == 3  # the estate's limit


# -- verified RPO ----------------------------------------------------------------------------------


def rec(tier: str, backup: str, result: str, minutes_ago: float, now: datetime) -> dict[str, Any]:
    return {
        "tier": tier,
        "backup_id": backup,
        "backup_time": (now - timedelta(minutes=minutes_ago)).isoformat(),
        "manifest": {"status": "complete"},
        "verified_at": now.isoformat(),
        "result": result,
        "reason": None if result == "passed" else "boom",
    }


def test_verified_rpo_is_the_age_of_the_newest_passed_backup(estate: Estate) -> None:
    now = datetime(2026, 11, 4, 10, 0, tzinfo=UTC)
    state = record.update_state(
        estate, {}, [rec("tier1_realtime", "a", "passed", 3, now)], run_id="r1", now=now
    )
    tier = state["tiers"]["tier1_realtime"]
    assert tier["verified_rpo_minutes"] == 3.0 and tier["breached"] is False and tier["rpo_minutes"] == 5
    later = now + timedelta(minutes=4)
    state = record.update_state(
        estate, state, [rec("tier1_realtime", "b", "failed", 1, later)], run_id="r2", now=later
    )
    tier = state["tiers"]["tier1_realtime"]
    assert tier["last_verified"]["backup_id"] == "a" and tier["newest_backup"]["backup_id"] == "b"
    assert tier["verified_rpo_minutes"] == 7.0 and tier["breached"] is True
    older = record.update_state(
        estate, state, [rec("tier1_realtime", "z", "passed", 30, later)], run_id="r3", now=later
    )
    assert (
        older["tiers"]["tier1_realtime"]["last_verified"]["backup_id"] == "a"
    )  # an older pass changes nothing


def test_a_tier_with_backups_but_none_verified_is_breached(estate: Estate) -> None:
    now = datetime.now(UTC)
    state = record.update_state(
        estate, {}, [rec("tier2_frequent", "a", "failed", 1, now)], run_id="r", now=now
    )
    assert state["tiers"]["tier2_frequent"]["verified_rpo_minutes"] is None
    assert state["tiers"]["tier2_frequent"]["breached"] is True


def test_a_record_names_each_failed_entry_and_the_missing_checks() -> None:
    now = datetime.now(UTC)
    checked = {
        "tier": "tier1_realtime",
        "backup_id": "b",
        "manifest_checks": [objects.check("manifest", "m", True)],
        "entries": {
            "db": {"type": "postgres_database", "checks": [objects.check("checksum", "x", True)]},
            "cfg": {
                "type": "secrets",
                "checks": [objects.check("encrypted", "y", False, "y is not SSE-KMS")],
            },
        },
    }
    restore = {
        "db": [
            objects.check("table", "db: t", False, "db: table t: row count differs: recorded 3, restored 2")
        ]
    }
    out = record.build_record(checked, restore, run_id="r", now=now)
    assert out["result"] == "failed" and out["summary"]["failed"] == ["db", "cfg"]
    assert out["reason"] == "db: table t: row count differs: recorded 3, restored 2; y is not SSE-KMS"
    gone = record.build_record(
        {"tier": "t", "backup_id": "b"}, {}, run_id="r", now=now, missing="the checks did not complete"
    )
    assert gone["result"] == "failed" and gone["reason"] == "the checks did not complete"


# -- restores and scratch --------------------------------------------------------------------------


def test_a_snapshot_is_restored_to_a_scratch_instance_that_is_always_deleted(
    estate: Estate, aws: dict[str, Any]
) -> None:
    rds = client("rds")
    rds.create_db_instance(
        DBInstanceIdentifier="src",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="u",
        MasterUserPassword="password123",
        StorageEncrypted=True,
        KmsKeyId=aws["key_arns"]["us-east-1"],
    )
    rds.create_db_snapshot(DBInstanceIdentifier="src", DBSnapshotIdentifier="snap-1")
    job = {
        "tier": "tier3_daily",
        "backup_id": "b",
        "system": "full-snapshot",
        "region": "us-east-1",
        "snapshot": "snap-1",
        "kms_key_id": None,
        "instance": settings.scratch_instance("r", "tier3_daily", "b", "full-snapshot", "us-east-1"),
        "instance_class": "db.t3.micro",
        "tag_prefix": "leanvibe",
        "run_id": "r",
    }
    result = restores.restore_snapshot(estate, job)
    assert [(c["check"], c["ok"]) for c in result["checks"]] == [
        ("exists", True),
        ("encrypted", True),
        ("restore", True),
        ("cleanup", True),
    ]
    assert [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]] == ["src"]
    missing = restores.restore_snapshot(estate, {**job, "snapshot": "snap-none"})
    assert missing["checks"][0]["reason"] == "snapshot snap-none in us-east-1 does not exist"
    assert missing["checks"][-1] == objects.check("cleanup", job["instance"], True, deleted=False)


def test_cleanup_removes_the_runs_scratch_objects_and_instances(
    estate: Estate, aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(restores, "drop_scratch_databases", lambda e, names: {"dropped": names, "left": []})
    prefix = settings.scratch_prefix("manual__2026-11-04T10:00:00+00:00")
    client("s3").put_object(Bucket=BUCKET, Key=prefix + "x.json", Body=b"{}")
    client("s3").put_object(Bucket=BUCKET, Key="verification/_scratch/other-run/y.json", Body=b"{}")
    out = restores.cleanup(
        estate, "manual__2026-11-04T10:00:00+00:00", [{"tier": "tier3_daily", "backup_id": "b"}]
    )
    assert out["objects"] == {"deleted": 1, "left": 0} and len(out["databases"]["dropped"]) == 1
    assert (
        client("s3").list_objects_v2(Bucket=BUCKET, Prefix="verification/_scratch/")["KeyCount"] == 1
    )  # not ours


def test_scratch_names_are_stable_plain_identifiers() -> None:
    name = settings.scratch_database(
        "manual__2026-11-04T10:00:00+00:00", "tier1_realtime", "b" * 200, "primary-database"
    )
    assert name == settings.scratch_database(
        "manual__2026-11-04T10:00:00+00:00", "tier1_realtime", "b" * 200, "primary-database"
    )
    assert len(name) <= 63 and name.startswith("dr_verify_") and name.replace("_", "").isalnum()
    instance = settings.scratch_instance("r", "t", "b", "s", "eu-west-1")
    assert len(instance) <= 63 and instance[0].isalpha() and instance == instance.lower()


def test_a_restore_pod_without_a_result_is_a_failed_restore() -> None:
    job = {"system": "primary-database", "database": "dr_verify_x"}
    assert (
        restores.database_checks(job, None)[0]["reason"]
        == "primary-database: the restore pod left no result (it did not finish)"
    )
    failed = restores.database_checks(job, {"ok": False, "error": "stats unreadable"})
    assert failed[0]["reason"] == "primary-database: stats unreadable"


# -- settings --------------------------------------------------------------------------------------


def test_settings_default_to_the_primary_server_without_a_section(
    estate: Estate, tmp_path: Path, doc: Doc
) -> None:
    assert settings.settings(estate).scratch_secret == ("dr-verify-scratch", "dsn")
    del doc["verification"]
    bare = settings.settings(load_doc(tmp_path, doc))
    assert (
        bare.scratch_secret == ("dr-primary-database", "dsn")
        and bare.scratch_connection == "postgres_primary"
    )
    assert bare.sweep_schedule == "30 4 * * *"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("sweep_schedule", "61 * * * *", "minute"),
        ("sweep_max_backups_per_tier", 0, "at least 1"),
        ("scratch_instance_class", "t3.micro", "(got 't3.micro')"),
        ("surprise", 1, "surprise"),
    ],
)
def test_bad_verification_settings_name_the_field(
    tmp_path: Path, doc: Doc, key: str, value: Any, reason: str
) -> None:
    doc["verification"][key] = value
    with pytest.raises(EstateConfigError) as caught:
        load_doc(tmp_path, doc)
    assert caught.value.field_path.startswith("verification"), str(caught.value)
    assert reason in str(caught.value)


def test_the_toolbox_refuses_a_scratch_database_name_that_is_not_a_plain_identifier() -> None:
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dr_toolbox",
            "db-verify",
            "--from",
            "s3://some-bucket/k.pgdump",
            "--scratch-database",
            "x; DROP",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]},
        timeout=60,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 2 and result["error"].startswith(
        "argument --scratch-database: 'x; DROP' is not a plain database name"
    )
