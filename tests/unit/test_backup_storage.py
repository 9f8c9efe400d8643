"""Backup steps against in-process moto: sealed secrets, metrics, machine images, the S3 copies
(storage class, Object Lock, failures recorded by system), lifecycle rules and bucket checks, RDS
snapshot plans and expiry, and the manifest's integrity checks of what S3 holds."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dr_automation.backup import plan as p
from dr_automation.backup.components import (
    BackupError,
    BatchIncomplete,
    backup_cloudwatch_metrics,
    backup_machine_images,
    backup_secrets,
    put_artifact,
    run_batch,
    run_component,
    unseal,
)
from dr_automation.backup.copies import placement_copies, retain_until, source_copies
from dr_automation.backup.manifest import build_entry, check_copy, checksum_hex, describe_object
from dr_automation.backup.retention import check_retention, ensure_rules, expired_snapshots, tier_rules
from dr_automation.backup.snapshots import copied_systems, copy_kwargs, snapshot_id
from dr_automation.estate import Estate
from tests.unit.backup_moto import client, mocked_estate_aws

BACKUP = "scheduled__2026-11-04T10-05-00-00-00"


@pytest.fixture(scope="module")
def aws(estate: Estate) -> Iterator[dict[str, Any]]:
    with mocked_estate_aws(estate) as handles:
        yield handles


def plan_of(estate: Estate, key: str) -> p.TierPlan:
    return p.tier_plan(estate, key)


class FakeTI:
    """What the components use of a task instance: XCom push, try number."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, Any]] = []
        self.try_number = 1

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))


# -- components ------------------------------------------------------------------------------------


def test_secrets_are_sealed_with_a_kms_data_key_and_never_logged(
    aws: dict[str, Any], estate: Estate, caplog: pytest.LogCaptureFixture
) -> None:
    plan = plan_of(estate, "tier1_realtime")
    system = next(s for s in plan.systems if s["type"] == "secrets")
    caplog.set_level(logging.INFO)  # what a deployment logs (boto3's DEBUG prints every response body)
    result = backup_secrets(estate, plan, system, BACKUP)
    key = result["artifacts"][0]["key"]
    body = client("s3").get_object(Bucket=plan.work.bucket, Key=key)["Body"].read()
    envelope = json.loads(body)
    for secret_id in system["secret_ids"]:
        assert f"value-of-{secret_id}" not in body.decode()
        assert f"value-of-{secret_id}" not in caplog.text
    payload = json.loads(unseal(estate, envelope))
    assert {k: json.loads(v["secret_string"])["token"] for k, v in payload.items()} == {
        s: f"value-of-{s}" for s in system["secret_ids"]
    }
    assert envelope["aad"] == f"tier1_realtime/{BACKUP}/{system['name']}"
    tampered = {**envelope, "aad": "tier1_realtime/other-backup/critical-config"}
    with pytest.raises(Exception):  # noqa: B017 - AES-GCM refuses a sealed payload moved to another backup
        unseal(estate, tampered)
    head = client("s3").head_object(Bucket=plan.work.bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == plan.work.kms_key_alias
    assert (
        head["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest() == checksum_hex(head["ChecksumSHA256"])
    )


def test_metrics_of_every_region_are_archived(aws: dict[str, Any], estate: Estate) -> None:
    plan = plan_of(estate, "tier2_frequent")
    system = next(s for s in plan.systems if s["type"] == "cloudwatch_metrics")
    now = datetime.now(UTC)
    for region in estate.regions:
        client("cloudwatch", region).put_metric_data(
            Namespace=system["namespace"],
            MetricData=[
                {
                    "MetricName": "Latency",
                    "Dimensions": [{"Name": "Region", "Value": region}],
                    "Value": 0.2,
                    "Timestamp": now - timedelta(minutes=2),
                }
            ],
        )
    result = backup_cloudwatch_metrics(estate, plan, system, BACKUP)
    assert result["series"] == len(estate.regions) and result["datapoints"] >= len(estate.regions)
    assert result["artifacts"][0]["key"].endswith("metrics.json.gz")  # tier 2 compresses


def test_machine_images_are_copied_to_the_dr_region_once(aws: dict[str, Any], estate: Estate) -> None:
    plan = plan_of(estate, "tier4_archival")
    system = next(s for s in plan.systems if s["type"] == "machine_images")
    with pytest.raises(BackupError, match="no machine image tagged 'leanvibe:image-role'"):
        backup_machine_images(estate, plan, system, BACKUP)
    ec2 = client("ec2")
    image = ec2.register_image(Name="leanvibe-api-base")["ImageId"]
    ec2.create_tags(Resources=[image], Tags=[{"Key": system["tag"], "Value": "api"}])
    first = backup_machine_images(estate, plan, system, BACKUP)
    again = backup_machine_images(estate, plan, system, BACKUP)
    assert first["images"] == [image] and first["dr_copies"] == again["dr_copies"]
    dr = client("ec2", estate.dr_region.name).describe_images(ImageIds=first["dr_copies"])["Images"]
    assert {"Key": "dr-source-image-id", "Value": image} in dr[0]["Tags"]


def test_a_failing_component_records_why_and_fails_at_once_when_a_retry_cannot_help(
    aws: dict[str, Any], estate: Estate
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    plan = plan_of(estate, "tier1_realtime")
    ti = FakeTI()
    broken = {"name": "critical-config", "type": "secrets", "secret_ids": ["leanvibe/prod/missing"]}
    with pytest.raises(AirflowFailException, match="ResourceNotFoundException"):
        run_component(estate, plan, broken, {"ti": ti, "run_id": "scheduled__x"})
    assert ti.pushed[0][0] == "backup_outcome"
    assert ti.pushed[0][1]["system"] == "critical-config" and "ResourceNotFound" in ti.pushed[0][1]["reason"]


def test_a_batch_backs_up_every_system_side_by_side_and_names_the_one_that_failed(
    aws: dict[str, Any], estate: Estate
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    plan = plan_of(estate, "tier1_realtime")
    good = [{"name": f"config-{i}", "type": "secrets", "secret_ids": ["leanvibe/prod/api"]} for i in range(5)]
    broken = {"name": "config-broken", "type": "secrets", "secret_ids": ["leanvibe/prod/missing"]}
    ti = FakeTI()
    with pytest.raises(AirflowFailException, match="1 of 6 systems failed: config-broken"):
        run_batch(estate, plan, [*good[:2], broken, *good[2:]], {"ti": ti, "run_id": "scheduled__b"})
    ((key, outcome),) = ti.pushed
    assert key == "backup_outcome" and outcome["batch"] == "config-0+5"
    assert outcome["done"] == [s["name"] for s in good]  # the siblings completed
    assert [f["system"] for f in outcome["failures"]] == ["config-broken"]
    s3 = client("s3", plan.work.region)
    for system in good:  # each written under its own prefix
        prefix = plan.component_prefix(p.backup_id("scheduled__b"), system["name"])
        assert s3.list_objects_v2(Bucket=plan.work.bucket, Prefix=prefix)["KeyCount"] == 1
    # a transient failure is left to the tier's retries; a whole batch returns every system's details
    ti = FakeTI()
    done = run_batch(estate, plan, good, {"ti": ti, "run_id": "scheduled__b"}, workers=3)
    assert [d["system"] for d in done["systems"]] == [s["name"] for s in good]
    assert ti.pushed[0][1]["failures"] == []
    assert issubclass(BatchIncomplete, RuntimeError)


# -- copies ----------------------------------------------------------------------------------------


def test_s3_systems_are_copied_under_their_prefix_and_placed_in_every_location(estate: Estate) -> None:
    plan = plan_of(estate, "tier4_archival")
    systems = plan.systems_of(*p.S3_TYPES)
    copies = source_copies(plan, systems)
    assert [(c["component"], c["source_bucket_name"], c["source_bucket_prefix"]) for c in copies] == [
        ("compliance-records", "leanvibe-audit-logs-prod", "compliance/")
    ]
    assert copies[0]["dest_bucket_prefix"] == (
        "staging/tier4_archival/{{ run_id | dr_backup_id }}/compliance-records/objects/"
    )
    assert copies[0]["storage_class"] == "STANDARD" and copies[0]["region_name"] == plan.work.region
    now = datetime(2026, 2, 28, tzinfo=UTC)
    placed = placement_copies(plan, BACKUP, ["historical-data"], now=now)
    assert [(c["dest_bucket_name"], c["region_name"]) for c in placed] == [
        (loc.bucket, loc.region) for loc in plan.locations
    ]
    assert {(c["source_bucket_prefix"], c["dest_bucket_prefix"]) for c in placed} == {
        (
            f"staging/tier4_archival/{BACKUP}/historical-data/",
            f"backups/tier4_archival/{BACKUP}/historical-data/",
        )
    }
    assert {(c["storage_class"], c["object_lock_mode"], c["object_lock_retain_until"]) for c in placed} == {
        ("DEEP_ARCHIVE", "COMPLIANCE", "2033-02-28T00:00:00+00:00")
    }
    assert retain_until(7, datetime(2028, 2, 29, tzinfo=UTC)) == "2035-02-28T00:00:00+00:00"


def test_the_copy_operator_stores_class_lock_and_checksum_and_records_failures(
    aws: dict[str, Any], estate: Estate
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from dr_automation.backup.operators import BackupCopyPrefixOperator

    plan = plan_of(estate, "tier4_archival")
    prefix = plan.component_prefix(BACKUP, "historical-data")
    written = [
        put_artifact(estate, plan.work, prefix + name, body)
        for name, body in (("a.pgdump", b"PGDMP a"), ("b.json", b"{}"))
    ]
    target = plan.locations[1]
    wanted = next(
        k
        for k in placement_copies(plan, BACKUP, ["historical-data"])
        if k["dest_bucket_name"] == target.bucket
    )
    op = BackupCopyPrefixOperator(
        task_id="place", aws_conn_id=estate.connections["aws"], acl_policy="no-acl", **wanted
    )
    op.execute({"ti": FakeTI()})
    s3 = client("s3", target.region)
    for artifact, name in zip(written, ("a.pgdump", "b.json"), strict=True):
        key = wanted["dest_bucket_prefix"] + name
        head = s3.head_object(Bucket=target.bucket, Key=key, ChecksumMode="ENABLED")
        assert head["StorageClass"] == "DEEP_ARCHIVE" and head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == target.kms_key_alias
        assert checksum_hex(head["ChecksumSHA256"]) == artifact["sha256"]
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.delete_object(Bucket=target.bucket, Key=key, VersionId=head["VersionId"])
    ti = FakeTI()
    missing = BackupCopyPrefixOperator(
        task_id="place",
        aws_conn_id=estate.connections["aws"],
        acl_policy="no-acl",
        **{**wanted, "source_bucket_name": "leanvibe-no-such-bucket"},
    )
    with pytest.raises(AirflowFailException, match="NoSuchBucket"):  # a retry would not make it appear
        missing.execute({"ti": ti})
    assert ti.pushed[0][1]["system"] == "historical-data"


# -- retention -------------------------------------------------------------------------------------


def test_lifecycle_rules_are_ensured_without_touching_foreign_rules(
    aws: dict[str, Any], estate: Estate
) -> None:
    plan = plan_of(estate, "tier3_daily")
    rules = tier_rules(plan)
    primary = estate.primary_region
    assert [r["ID"] for r in rules[(primary.name, primary.backup_bucket)]] == [
        "dr-backup-tier3_daily",
        "dr-staging-tier3_daily",
    ]
    assert rules[(primary.name, primary.backup_bucket)][0]["Expiration"] == {"Days": 90}
    s3 = client("s3")
    foreign = {
        "ID": "team-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 3},
    }
    s3.put_bucket_lifecycle_configuration(
        Bucket=primary.backup_bucket, LifecycleConfiguration={"Rules": [foreign]}
    )
    wanted = rules[(primary.name, primary.backup_bucket)]
    assert ensure_rules(s3, primary.backup_bucket, wanted) == "written"
    assert ensure_rules(s3, primary.backup_bucket, wanted) == "present"
    ids = [r["ID"] for r in s3.get_bucket_lifecycle_configuration(Bucket=primary.backup_bucket)["Rules"]]
    assert sorted(ids) == ["dr-backup-tier3_daily", "dr-staging-tier3_daily", "team-logs"]


def test_retention_check_passes_on_sound_buckets_and_names_each_problem(
    aws: dict[str, Any], estate: Estate
) -> None:
    from dr_automation.backup.retention import RetentionError

    for key in estate.tiers:
        result = check_retention(estate, plan_of(estate, key))
        assert all(b["ok"] for b in result["buckets"]), result
    dr = estate.dr_region
    client("s3", dr.name).put_bucket_versioning(
        Bucket=dr.backup_bucket, VersioningConfiguration={"Status": "Suspended"}
    )
    try:
        with pytest.raises(RetentionError, match=f"{dr.backup_bucket}: versioning is not enabled"):
            check_retention(estate, plan_of(estate, "tier2_frequent"))
    finally:
        client("s3", dr.name).put_bucket_versioning(
            Bucket=dr.backup_bucket, VersioningConfiguration={"Status": "Enabled"}
        )


def test_snapshot_copies_carry_the_source_arn_and_the_target_regions_key(
    aws: dict[str, Any], estate: Estate
) -> None:
    plan = plan_of(estate, "tier3_daily")
    system = next(s for s in plan.systems if s["type"] == "rds_snapshot")
    rds = client("rds")
    db = estate.databases[system["database"]]
    rds.create_db_instance(
        DBInstanceIdentifier=db["rds_instance_id"],
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="u",
        MasterUserPassword="password123",
        AllocatedStorage=20,
    )
    created = rds.create_db_snapshot(
        DBInstanceIdentifier=db["rds_instance_id"],
        DBSnapshotIdentifier=snapshot_id(plan, system["name"], BACKUP),
        Tags=[{"Key": "dr-tier", "Value": "tier3_daily"}],
    )
    copies = copy_kwargs(estate, plan, BACKUP, [json.dumps(created, default=str)])
    assert len(copies) == 1
    assert copies[0]["source_db_snapshot_identifier"] == created["DBSnapshot"]["DBSnapshotArn"]
    assert copies[0]["region_name"] == system["copy_to_region"]
    assert copies[0]["kms_key_id"] == aws["key_arns"][system["copy_to_region"]]
    assert copied_systems(plan, BACKUP, copies) == [system["name"]]
    assert expired_snapshots(estate, plan) == []  # just taken
    later = datetime.now(UTC) + timedelta(days=91)
    assert expired_snapshots(estate, plan, now=later) == [
        {"db_snapshot_identifier": snapshot_id(plan, system["name"], BACKUP), "region_name": db["region"]}
    ]


# -- the manifest's checks of what S3 holds -----------------------------------------------------------


def test_describe_object_checks_the_writers_sha256_against_what_s3_holds(
    aws: dict[str, Any], estate: Estate
) -> None:
    bucket = estate.primary_region.backup_bucket
    s3 = client("s3")
    good = put_artifact(estate, plan_of(estate, "tier1_realtime").work, "checks/good.bin", b"abc")
    described = describe_object(s3, bucket, "checks/good.bin")
    assert (described["sha256"], described["verified_by"], described["problems"]) == (
        good["sha256"],
        "s3-checksum",
        [],
    )
    s3.put_object(
        Bucket=bucket,
        Key="checks/lying.bin",
        Body=b"abc",
        ChecksumAlgorithm="SHA256",
        ServerSideEncryption="aws:kms",
        Metadata={"sha256": "0" * 64},
    )
    assert "written but S3 holds" in describe_object(s3, bucket, "checks/lying.bin")["problems"][0]
    s3.put_object(Bucket=bucket, Key="checks/plain.bin", Body=b"xyz", ServerSideEncryption="AES256")
    plain = describe_object(s3, bucket, "checks/plain.bin")
    assert plain["verified_by"] == "read-back" and plain["sha256"] == hashlib.sha256(b"xyz").hexdigest()
    assert "not aws:kms" in plain["problems"][0]
    assert checksum_hex(base64.b64encode(b"\x01" * 32).decode() + "-3") is None  # multipart: composite


def test_a_copy_that_differs_from_its_original_is_caught(aws: dict[str, Any], estate: Estate) -> None:
    plan = plan_of(estate, "tier2_frequent")
    s3 = client("s3")
    original = describe_object(s3, plan.work.bucket, "checks/good.bin")
    dr = plan.copies[0]
    dr_s3 = client("s3", dr.region)
    dr_s3.put_object(
        Bucket=dr.bucket,
        Key="checks/copy.bin",
        Body=b"abd",
        ChecksumAlgorithm="SHA256",
        ServerSideEncryption="aws:kms",
        StorageClass="STANDARD_IA",
    )
    problems, _ = check_copy(dr_s3, dr, "checks/copy.bin", original, None)
    assert any("SHA-256" in pr for pr in problems)
    problems, _ = check_copy(dr_s3, dr, "checks/absent.bin", original, None)
    assert problems == [f"s3://{dr.bucket}/checks/absent.bin missing (404)"]


def test_an_entry_checks_every_copy_and_fails_its_system_when_one_is_missing(
    aws: dict[str, Any], estate: Estate
) -> None:
    plan = plan_of(estate, "tier2_frequent")
    system = {"name": "user-files-x", "type": "s3_bucket", "bucket": "b"}
    body = b"a"
    put_artifact(estate, plan.work, plan.component_prefix(BACKUP, "user-files-x") + "objects/a.txt", body)
    outcome = {"status": "succeeded", "duration_seconds": 1.0, "tasks": []}
    entry = build_entry(estate, plan, BACKUP, system, outcome, clients={})
    dr = plan.copies[0]
    copy_key = f"{plan.final_prefix(BACKUP)}user-files-x/objects/a.txt"
    assert entry["status"] == "failed" and entry["reason"] == f"{dr.url(copy_key)} missing (404)"
    client("s3", dr.region).put_object(
        Bucket=dr.bucket,
        Key=copy_key,
        Body=body,
        ChecksumAlgorithm="SHA256",
        StorageClass="STANDARD_IA",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=dr.kms_key_alias,
    )
    whole = build_entry(estate, plan, BACKUP, system, outcome, clients={})
    assert whole["status"] == "succeeded" and whole["sha256"] == hashlib.sha256(body).hexdigest()
    assert whole["location"].endswith("/user-files-x/objects/a.txt")
    assert whole["encryption"]["kms_key_ids"] == {
        plan.work.bucket: plan.work.kms_key_alias,
        dr.bucket: dr.kms_key_alias,
    }
    empty = build_entry(estate, plan, BACKUP, {**system, "name": "empty-bucket"}, outcome, clients={})
    assert empty["status"] == "succeeded" and empty["artifacts"] == []  # an empty source: a backup of nothing
