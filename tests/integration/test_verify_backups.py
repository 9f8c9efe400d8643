"""verify_backups, really run (``dag.test()``) against the backup rig: real tier backups (real
pg_dump of a real PostgreSQL database, the AWS emulator, the Kubernetes stand-in running toolbox
pods), then verification of them, clean and with injected corruptions.

Proves: a clean backup of every tier passes (dumps restored by a toolbox pod into a scratch
database on the real server, the RDS snapshot and its DR copy restored to scratch instances in the
emulator); each corruption (flipped byte, truncated dump, missing object, wrong checksum in the
manifest, object not SSE-KMS, dump whose rows differ from the recorded counts) is caught with its
exact reason, recorded beside the manifest and alerted; verified RPO falls behind and alerts when
verification keeps failing for longer than the RPO; no scratch database, instance or object is left
after any run, passed or failed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest

from dr_automation.backup.plan import backup_id, tier_plan
from dr_sandbox import database
from dr_sandbox.aws_emulator import clear_faults
from dr_sandbox.backup_rig import BackupRig
from dr_sandbox.layout import REPO_ROOT
from tests.backup_verify import TIER_DAGS, read_object, split
from tests.iam_check import assert_calls_within_policies

pytestmark = pytest.mark.integration

SCRATCH_CONN = "dr_verify_scratch"


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, airflow_env: dict[str, str], airflow_db: str
) -> Iterator[BackupRig]:
    with BackupRig(tmp_path_factory.mktemp("verify-rig"), airflow_env=airflow_env) as handle:
        shutil.copy(REPO_ROOT / "dags" / "verify_backups.py", handle.dags_folder / "verify_backups.py")
        handle.use_scratch_server()  # dumps are restored into the machine's server
        clear_faults(handle.emulator.endpoint_url)
        yield handle
        assert_calls_within_policies(handle.emulator.endpoint_url, handle.estate_file)


def verify(rig: BackupRig, conf: dict[str, Any]) -> dict[str, Any]:
    result = rig.run("verify_backups", conf=conf)
    print(
        f"verify {conf}: {result['state']} in {result['wall_seconds']} s; tasks: "
        + ", ".join(
            f"{t['task_id']}[{t['map_index']}] {t['duration'] and round(t['duration'], 2)}"
            for t in result["tis"]
        )
    )
    return result


def states(result: dict[str, Any]) -> dict[str, str]:
    return {f"{t['task_id']}[{t['map_index']}]": t["state"] for t in result["tis"]}


def explain(result: dict[str, Any]) -> str:
    """Task states and the log's error lines (what a failing assertion shows)."""
    errors = [
        line[:600]
        for line in result["log"].splitlines()
        if any(w in line for w in ("error", "Error", "Traceback", "failed:", "FAILED"))
    ]
    return json.dumps(states(result), indent=1) + "\n" + "\n".join(errors[-40:])


def backup(rig: BackupRig, tier: str) -> tuple[str, dict[str, Any]]:
    """One real backup run of `tier`; its id and home manifest."""
    result = rig.run(TIER_DAGS[tier])
    assert result["state"] == "success", result["log"][-3000:]
    backup = backup_id(result["run_id"])
    return backup, manifest_of(rig, tier, backup)


def manifest_of(rig: BackupRig, tier: str, backup: str) -> dict[str, Any]:
    location, key = tier_plan(rig.estate, tier).manifest_keys(backup)[0]
    return json.loads(read_object(rig.aws("s3", location.region), location.bucket, key))


def record_of(rig: BackupRig, tier: str, backup: str) -> list[dict[str, Any]]:
    """The verification record from every location (they must be the same document)."""
    out = []
    for location, key in tier_plan(rig.estate, tier).manifest_keys(backup):
        body = (
            rig.aws("s3", location.region)
            .get_object(Bucket=location.bucket, Key=key.replace("manifest.json", "verification.json"))["Body"]
            .read()
        )
        out.append(json.loads(body))
    assert all(r == out[0] for r in out)
    return out


def state_of(rig: BackupRig) -> dict[str, Any]:
    bucket = rig.estate.primary_region.backup_bucket
    return json.loads(rig.aws("s3").get_object(Bucket=bucket, Key="verification/state.json")["Body"].read())


def scratch_databases() -> set[str]:
    with psycopg2.connect(database.ADMIN_DSN) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dr\\_verify\\_%'")
        return {row[0] for row in cur.fetchall()}


def assert_no_scratch_left(rig: BackupRig, before: set[str]) -> None:
    assert scratch_databases() - before == set(), "a scratch database was left"
    for region in rig.estate.regions:
        instances = rig.aws("rds", region).describe_db_instances()["DBInstances"]
        left = [
            i["DBInstanceIdentifier"] for i in instances if i["DBInstanceIdentifier"].startswith("dr-verify-")
        ]
        assert left == [], f"scratch instances left in {region}: {left}"
    listing = rig.aws("s3").list_object_versions(
        Bucket=rig.estate.primary_region.backup_bucket, Prefix="verification/_scratch/"
    )
    assert not listing.get("Versions") and not listing.get("DeleteMarkers"), "scratch objects left"


def alerts(rig: BackupRig, needle: str) -> list[str]:
    """Chat messages (the incident route's webhook) whose text contains `needle`."""
    texts = [json.dumps(m["body"]) for m in rig.sink.messages()]
    return [t for t in texts if needle in t]


def test_a_clean_backup_of_every_tier_passes_with_restore_tests_and_leaves_no_scratch(rig: BackupRig) -> None:
    before = scratch_databases()
    for tier in TIER_DAGS:
        backup_id_, manifest = backup(rig, tier)
        rig.sink.clear()
        result = verify(rig, {"tier": tier, "backup_id": backup_id_})
        assert result["state"] == "success", explain(result)
        record = record_of(rig, tier, backup_id_)[0]
        assert record["result"] == "passed" and record["reason"] is None, record
        assert [e["name"] for e in record["entries"]] == [c["name"] for c in manifest["components"]]
        checks = {(e["name"], c["check"]) for e in record["entries"] for c in e["checks"]}
        for entry in manifest["components"]:
            assert (entry["name"], "checksum") in checks and (entry["name"], "encrypted") in checks
            if entry["type"] == "postgres_database":
                tables = [
                    c
                    for e in record["entries"]
                    if e["name"] == entry["name"]
                    for c in e["checks"]
                    if c["check"] == "table"
                ]
                assert {c["target"].split(": ")[1] for c in tables} >= {"tenants", "users", "invoices"}
                assert all(c["ok"] and c["actual"]["rows"] == c["expected"]["rows"] for c in tables)
            if entry["type"] == "rds_snapshot":
                restores = [
                    c
                    for e in record["entries"]
                    if e["name"] == entry["name"]
                    for c in e["checks"]
                    if c["check"] == "restore"
                ]
                assert len(restores) == 2 and all(c["ok"] for c in restores)  # the snapshot and its DR copy
        assert not alerts(rig, "verification failed"), "a clean backup raised an alert"
        assert_no_scratch_left(rig, before)
    state = state_of(rig)
    for tier in TIER_DAGS:
        assert state["tiers"][tier]["last_verified"]["result"] == "passed"
        assert 0 <= state["tiers"][tier]["verified_rpo_minutes"] < state["tiers"][tier]["rpo_minutes"] + 15
    assert state["tiers"]["tier4_archival"]["breached"] is False
    metrics = rig.aws("cloudwatch").list_metrics(
        Namespace=rig.estate.raw["verification"]["metrics_namespace"]
    )
    names = {(m["MetricName"], m["Dimensions"][0]["Value"]) for m in metrics["Metrics"]}
    assert {("VerifiedRPOMinutes", t) for t in TIER_DAGS} <= names


# -- injected corruptions ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_tier1(rig: BackupRig) -> str:
    """One real tier-1 backup (the real database dump among it) that each corruption starts from."""
    return backup(rig, "tier1_realtime")[0]


def clone(rig: BackupRig, source: str, name: str, *, created_at: datetime | None = None) -> str:
    """A copy of tier-1 backup `source` under a new id: every object (SSE-KMS, metadata kept) and a
    manifest naming the new id, written the way the backup run writes it."""
    location, _ = tier_plan(rig.estate, "tier1_realtime").manifest_keys(source)[0]
    s3 = rig.aws("s3", location.region)
    target = f"{source}-{name}"
    old, new = f"backups/tier1_realtime/{source}/", f"backups/tier1_realtime/{target}/"
    for obj in s3.list_objects_v2(Bucket=location.bucket, Prefix=old)["Contents"]:
        if obj["Key"].endswith(("manifest.json", "verification.json")):
            continue
        s3.copy_object(
            Bucket=location.bucket,
            Key=new + obj["Key"][len(old) :],
            CopySource={"Bucket": location.bucket, "Key": obj["Key"]},
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=location.kms_key_alias,
            ChecksumAlgorithm="SHA256",
        )
    manifest = json.loads(json.dumps(manifest_of(rig, "tier1_realtime", source)).replace(source, target))
    if created_at:
        manifest["created_at"] = created_at.isoformat(timespec="seconds")
    write_manifest(rig, target, manifest)
    return target


def write_manifest(rig: BackupRig, backup_id_: str, manifest: dict[str, Any]) -> None:
    location, key = tier_plan(rig.estate, "tier1_realtime").manifest_keys(backup_id_)[0]
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    rig.aws("s3", location.region).put_object(
        Bucket=location.bucket,
        Key=key,
        Body=body,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=location.kms_key_alias,
        ChecksumAlgorithm="SHA256",
        Metadata={
            "sha256": hashlib.sha256(body).hexdigest(),
            "backup-id": backup_id_,
            "status": manifest["status"],
        },
    )


def artifact_key(
    rig: BackupRig, backup_id_: str, system: str, suffix: str
) -> tuple[Any, str, str, dict[str, Any]]:
    manifest = manifest_of(rig, "tier1_realtime", backup_id_)
    entry = next(c for c in manifest["components"] if c["name"] == system)
    artifact = next(a for a in entry["artifacts"] if a["name"].endswith(suffix))
    bucket, prefix = split(entry["locations"][0])
    return rig.aws("s3"), bucket, prefix + artifact["name"], artifact


def replace_object(s3: Any, bucket: str, key: str, body: bytes, **extra: Any) -> None:
    """Overwrite the object's bytes, keeping its metadata (the writer's SHA-256): corruption at rest."""
    head = s3.head_object(Bucket=bucket, Key=key)
    encryption = extra.pop(
        "encryption", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": head.get("SSEKMSKeyId")}
    )
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        Metadata=head.get("Metadata") or {},
        ChecksumAlgorithm="SHA256",
        **encryption,
        **extra,
    )


def flip_byte(rig: BackupRig, b: str) -> str:
    s3, bucket, key, artifact = artifact_key(rig, b, "primary-database", ".pgdump")
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    replace_object(s3, bucket, key, bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    return (
        f"SHA-256 {actual} recomputed, the manifest records {artifact['sha256']} (its writer recorded "
        f"{artifact['sha256']}): the object changed after it was written"
    )


def truncate_dump(rig: BackupRig, b: str) -> str:
    s3, bucket, key, artifact = artifact_key(rig, b, "primary-database", ".pgdump")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    replace_object(s3, bucket, key, data[: len(data) // 2])
    return f"s3://{bucket}/{key} is {len(data) // 2} bytes, the manifest records {artifact['size_bytes']}"


def delete_object(rig: BackupRig, b: str) -> str:
    s3, bucket, key, _ = artifact_key(rig, b, "user-sessions", "sessions.jsonl")
    s3.delete_object(Bucket=bucket, Key=key)
    return f"s3://{bucket}/{key} is missing (404)"


def wrong_manifest_checksum(rig: BackupRig, b: str) -> str:
    manifest = manifest_of(rig, "tier1_realtime", b)
    entry = next(c for c in manifest["components"] if c["name"] == "transaction-logs")
    actual, wrong = entry["artifacts"][0]["sha256"], "0" * 64
    entry["artifacts"][0]["sha256"] = entry["sha256"] = wrong
    write_manifest(rig, b, manifest)
    bucket, prefix = split(entry["locations"][0])
    return (
        f"s3://{bucket}/{prefix}{entry['artifacts'][0]['name']}: the manifest records SHA-256 {wrong} but the "
        f"object hashes to {actual}, as its writer recorded: the manifest's checksum is wrong"
    )


def unencrypted_object(rig: BackupRig, b: str) -> str:
    s3, bucket, key, _ = artifact_key(rig, b, "critical-config", "")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    replace_object(s3, bucket, key, data, encryption={"ServerSideEncryption": "AES256"})
    return f"s3://{bucket}/{key} is not encrypted with SSE-KMS (ServerSideEncryption=AES256)"


def rows_differ(rig: BackupRig, b: str) -> str:
    """A real, consistent dump of the database with one invoice fewer, recorded as the backup (object,
    writer's SHA-256, stats sidecar's SHA-256 and the manifest all agree): only a restore catches it."""
    from dr_automation.backup.manifest import listing_sha256

    forged = f"{rig.database.name}_forged"
    database.drop(forged)
    admin = psycopg2.connect(database.ADMIN_DSN)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{forged}" TEMPLATE "{rig.database.name}"')
        with (
            psycopg2.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={forged}") as conn,
            conn.cursor() as cur,
        ):
            cur.execute("DELETE FROM invoices WHERE id = (SELECT min(id) FROM invoices)")
            cur.execute("SELECT count(*) FROM invoices")
            restored_rows = cur.fetchone()[0]
        dump_path = rig.workdir / "forged.pgdump"
        from dr_toolbox.pg import pg_binary

        subprocess.run(
            [
                pg_binary("pg_dump"),
                "--format=custom",
                f"--file={dump_path}",
                f"--dbname=host=127.0.0.1 port=5432 user=postgres dbname={forged}",
            ],
            check=True,
            capture_output=True,
        )
    finally:
        admin.close()
        database.drop(forged)
    data = dump_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    s3, bucket, key, _ = artifact_key(rig, b, "primary-database", ".pgdump")
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        Metadata={**s3.head_object(Bucket=bucket, Key=key)["Metadata"], "sha256": sha},
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=s3.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"],
        ChecksumAlgorithm="SHA256",
    )
    _, _, stats_key, _ = artifact_key(rig, b, "primary-database", ".stats.json")
    stats = json.loads(s3.get_object(Bucket=bucket, Key=stats_key)["Body"].read())
    recorded_rows = stats["tables"]["invoices"]["rows"]
    stats["sha256"], stats["size_bytes"] = sha, len(data)
    stats_body = json.dumps(stats).encode()
    replace_object(s3, bucket, stats_key, stats_body)
    manifest = manifest_of(rig, "tier1_realtime", b)
    entry = next(c for c in manifest["components"] if c["name"] == "primary-database")
    for artifact in entry["artifacts"]:
        body = data if artifact["name"].endswith(".pgdump") else stats_body
        artifact["sha256"], artifact["size_bytes"] = hashlib.sha256(body).hexdigest(), len(body)
    entry["sha256"], entry["size_bytes"] = listing_sha256(entry["artifacts"]), len(data) + len(stats_body)
    write_manifest(rig, b, manifest)
    return f"table invoices: row count differs: recorded {recorded_rows}, restored {restored_rows}"


CORRUPTIONS: dict[str, tuple[Callable[[BackupRig, str], str], str]] = {
    "flipped-byte": (flip_byte, "primary-database"),
    "truncated-dump": (truncate_dump, "primary-database"),
    "missing-object": (delete_object, "user-sessions"),
    "wrong-manifest-checksum": (wrong_manifest_checksum, "transaction-logs"),
    "unencrypted-object": (unencrypted_object, "critical-config"),
    "rows-differ": (rows_differ, "primary-database"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_each_injected_corruption_is_caught_with_its_exact_reason_and_alerted(
    rig: BackupRig, clean_tier1: str, corruption: str
) -> None:
    before = scratch_databases()
    corrupt, system = CORRUPTIONS[corruption]
    target = clone(rig, clean_tier1, corruption)
    reason = corrupt(rig, target)
    rig.sink.clear()
    result = verify(rig, {"tier": "tier1_realtime", "backup_id": target})
    assert result["state"] == "failed", explain(result)
    assert states(result)["conclude[-1]"] == "failed" and states(result)["cleanup_scratch[-1]"] == "success"
    record = record_of(rig, "tier1_realtime", target)[0]
    assert record["result"] == "failed"
    entries = {e["name"]: e for e in record["entries"]}
    assert entries[system]["result"] == "failed"
    assert reason in entries[system]["reason"], (reason, entries[system]["reason"])
    assert reason in record["reason"]
    others = [n for n, e in entries.items() if n != system and e["result"] != "passed"]
    assert others == [], f"other entries failed too: {[(n, entries[n]['reason']) for n in others]}"
    pages = alerts(rig, target)
    assert pages and any(reason.replace('"', '\\"') in p or reason in p for p in pages), (reason, pages)
    assert state_of(rig)["tiers"]["tier1_realtime"]["last_failure"]["backup_id"] == target
    assert_no_scratch_left(rig, before)


def test_an_unknown_backup_id_fails_naming_the_field_and_touches_nothing(rig: BackupRig) -> None:
    before = scratch_databases()
    result = verify(rig, {"tier": "tier1_realtime", "backup_id": "no-such-backup"})
    assert result["state"] == "failed"
    assert states(result)["select_backups[-1]"] == "failed"
    assert "Invalid input for param backup_id: no backup 'no-such-backup' of tier1_realtime" in result["log"]
    assert_no_scratch_left(rig, before)


def test_verified_rpo_falls_behind_and_alerts_when_verification_fails_for_longer_than_the_rpo(
    rig: BackupRig, clean_tier1: str
) -> None:
    """Tier 1 (RPO 5 min): a backup from 90 seconds ago passes; newer backups fail verification
    (their backup runs reported success); once the passed one is older than the RPO, the next
    failing run reports the verified RPO above the RPO and alerts."""
    bucket = rig.estate.primary_region.backup_bucket
    rig.aws("s3").delete_object(Bucket=bucket, Key="verification/state.json")  # a fresh estate
    passed_at = datetime.now(UTC) - timedelta(minutes=1.5)
    good = clone(rig, clean_tier1, "rpo-good", created_at=passed_at)
    rig.sink.clear()
    assert verify(rig, {"tier": "tier1_realtime", "backup_id": good})["state"] == "success"
    tier = state_of(rig)["tiers"]["tier1_realtime"]
    assert tier["last_verified"]["backup_id"] == good and 1.5 <= tier["verified_rpo_minutes"] < 5
    assert tier["breached"] is False and not alerts(rig, "Verified RPO")

    bad = clone(rig, clean_tier1, "rpo-bad-1", created_at=datetime.now(UTC))
    flip_byte(rig, bad)
    assert verify(rig, {"tier": "tier1_realtime", "backup_id": bad})["state"] == "failed"
    tier = state_of(rig)["tiers"]["tier1_realtime"]
    assert tier["last_verified"]["backup_id"] == good and tier["newest_backup"]["backup_id"] == bad
    assert tier["verified_rpo_minutes"] < 5 and tier["breached"] is False
    assert alerts(rig, bad) and not alerts(rig, "Verified RPO")  # the failed check alerts, the RPO not yet

    wait = (passed_at + timedelta(minutes=5, seconds=5) - datetime.now(UTC)).total_seconds()
    time.sleep(max(0.0, wait))
    worse = clone(rig, clean_tier1, "rpo-bad-2", created_at=datetime.now(UTC))
    flip_byte(rig, worse)
    rig.sink.clear()
    assert verify(rig, {"tier": "tier1_realtime", "backup_id": worse})["state"] == "failed"
    tier = state_of(rig)["tiers"]["tier1_realtime"]
    assert tier["last_verified"]["backup_id"] == good
    assert tier["verified_rpo_minutes"] > 5 and tier["breached"] is True
    pages = alerts(rig, "Verified RPO of tier1_realtime")
    assert pages, [m["body"] for m in rig.sink.messages()]
    assert good in pages[0] and worse in pages[0] and "reports complete" in pages[0]
    assert "the backup DAG reports success, but it has not passed verification" in pages[0]
    cloudwatch = rig.aws("cloudwatch")
    now = datetime.now(UTC)
    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "breached",
                "MetricStat": {
                    "Metric": {
                        "Namespace": rig.estate.raw["verification"]["metrics_namespace"],
                        "MetricName": "VerifiedRPOBreached",
                        "Dimensions": [{"Name": "Tier", "Value": "tier1_realtime"}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }
        ],
        StartTime=now - timedelta(minutes=2),
        EndTime=now + timedelta(minutes=1),
    )
    assert 1.0 in data["MetricDataResults"][0]["Values"]
