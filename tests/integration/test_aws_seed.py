"""Seeding the AWS emulator from the estate config: everything the DAGs look up exists, exactly once."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from dr_automation.estate import Estate, load_estate
from dr_sandbox.aws_emulator import EmulatorHandle, start_emulator
from dr_sandbox.aws_seed import SeedError, db_credentials_secret_id, incident_topic_names, seed_aws

pytestmark = pytest.mark.integration

REGION_ADDRESSES = {"us-east-1": ("127.0.0.41", 18081), "us-west-2": ("127.0.0.42", 18082)}


@pytest.fixture(scope="module")
def aws_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "sandbox")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield


@pytest.fixture(scope="module")
def emulator(aws_env: None) -> Iterator[EmulatorHandle]:
    handle = start_emulator("127.0.0.1", 0)
    _reset(handle)  # moto's state is process-wide: start from nothing
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def estate() -> Estate:
    return load_estate()


@pytest.fixture(scope="module")
def seeded(emulator: EmulatorHandle, estate: Estate) -> dict[str, Any]:
    return seed_aws(estate, emulator.endpoint_url, region_addresses=REGION_ADDRESSES)


def _reset(emulator: EmulatorHandle) -> None:
    request = urllib.request.Request(f"{emulator.endpoint_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def _client(emulator: EmulatorHandle, service: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, endpoint_url=emulator.endpoint_url, region_name=region)


def _records(emulator: EmulatorHandle, zone_id: str) -> list[dict[str, Any]]:
    r53 = _client(emulator, "route53")
    return r53.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="1000")["ResourceRecordSets"]


def _inventory(emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]) -> dict[str, Any]:
    """Everything a re-seed could duplicate, counted."""
    r53 = _client(emulator, "route53")
    s3 = _client(emulator, "s3")
    sns = _client(emulator, "sns")
    inventory: dict[str, Any] = {
        "records": sorted(
            (r["Name"], r["Type"], r.get("SetIdentifier", ""), json.dumps(r, sort_keys=True))
            for r in _records(emulator, seeded["hosted_zone_id"])
        ),
        "zones": len(r53.list_hosted_zones()["HostedZones"]),
        "health_checks": sorted(hc["Id"] for hc in r53.list_health_checks()["HealthChecks"]),
        "buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
        "subscriptions": len(sns.list_subscriptions()["Subscriptions"]),
        "topics": len(sns.list_topics()["Topics"]),
        "queues": len(_client(emulator, "sqs").list_queues().get("QueueUrls", [])),
        "secrets": sorted(s["ARN"] for s in _client(emulator, "secretsmanager").list_secrets()["SecretList"]),
    }
    for region in estate.regions:
        inventory[f"kms:{region}"] = len(_client(emulator, "kms", region).list_keys()["Keys"])
        inventory[f"rds:{region}"] = len(
            _client(emulator, "rds", region).describe_db_instances()["DBInstances"]
        )
    for bucket in set(seeded["buckets"]["systems"].values()):
        versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
        inventory[f"versions:{bucket}"] = sorted(v["VersionId"] for v in versions)
    return inventory


def test_rds_primary_and_cross_region_replica(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    primary_cfg = estate.databases["primary"]
    primary = _client(emulator, "rds", primary_cfg["region"]).describe_db_instances(
        DBInstanceIdentifier=primary_cfg["rds_instance_id"]
    )["DBInstances"][0]
    replica_cfg = primary_cfg["replica"]
    replica = _client(emulator, "rds", replica_cfg["region"]).describe_db_instances(
        DBInstanceIdentifier=replica_cfg["rds_instance_id"]
    )["DBInstances"][0]

    assert primary["Engine"] == "postgres"
    assert primary["DBName"] == primary_cfg["database"]
    assert primary["DBInstanceArn"].startswith(f"arn:aws:rds:{primary_cfg['region']}:")
    assert {"Key": "leanvibe:managed-by", "Value": "dr"} in primary["TagList"]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] == primary["DBInstanceArn"]
    assert replica["DBInstanceArn"].startswith(f"arn:aws:rds:{replica_cfg['region']}:")
    assert {"Key": "leanvibe:managed-by", "Value": "dr"} in replica["TagList"]
    assert seeded["rds_instance_arns"] == {
        primary_cfg["rds_instance_id"]: primary["DBInstanceArn"],
        replica_cfg["rds_instance_id"]: replica["DBInstanceArn"],
    }


def test_kms_key_per_region_behind_alias(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    assert set(seeded["kms_key_ids"]) == set(estate.regions)
    for name, region in estate.regions.items():
        kms = _client(emulator, "kms", name)
        meta = kms.describe_key(KeyId=region.kms_key_alias)["KeyMetadata"]
        assert meta["KeyId"] == seeded["kms_key_ids"][name]
        assert meta["MultiRegion"] is False
        assert meta["KeySpec"] == "SYMMETRIC_DEFAULT"
        blob = kms.encrypt(KeyId=region.kms_key_alias, Plaintext=b"dr")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"dr"


def test_backup_buckets_versioned_and_kms_encrypted(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    for name, region in estate.regions.items():
        s3 = _client(emulator, "s3", name)
        location = s3.get_bucket_location(Bucket=region.backup_bucket)["LocationConstraint"]
        assert (location or "us-east-1") == name
        assert s3.get_bucket_versioning(Bucket=region.backup_bucket)["Status"] == "Enabled"
        rule = s3.get_bucket_encryption(Bucket=region.backup_bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]
        default = rule["ApplyServerSideEncryptionByDefault"]
        assert default["SSEAlgorithm"] == "aws:kms"
        assert default["KMSMasterKeyID"] == seeded["kms_key_arns"][name]


def test_archive_buckets_have_compliance_object_lock(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    archive = estate.raw["archive"]
    assert seeded["buckets"]["archive"] == dict(archive["buckets"])
    for region, bucket in archive["buckets"].items():
        s3 = _client(emulator, "s3", region)
        lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        assert lock["ObjectLockEnabled"] == "Enabled"
        retention = lock["Rule"]["DefaultRetention"]
        assert (retention["Mode"], retention["Years"]) == ("COMPLIANCE", archive["object_lock_years"])
        assert not retention.get("Days")  # moto reports Days: 0 beside Years
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_archive_object_lock_refuses_deleting_a_locked_version(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    region, bucket = next(iter(estate.raw["archive"]["buckets"].items()))
    s3 = _client(emulator, "s3", region)
    version = s3.put_object(
        Bucket=bucket, Key="archive/2026/ledger.dump", Body=b"ledger", ChecksumAlgorithm="SHA256"
    )["VersionId"]

    assert s3.head_object(Bucket=bucket, Key="archive/2026/ledger.dump")["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError) as excinfo:
        s3.delete_object(Bucket=bucket, Key="archive/2026/ledger.dump", VersionId=version)
    assert excinfo.value.response["Error"]["Code"] == "AccessDenied"
    assert (
        s3.get_object(Bucket=bucket, Key="archive/2026/ledger.dump", VersionId=version)["Body"].read()
        == b"ledger"
    )


def test_system_buckets_have_sample_objects(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    s3 = _client(emulator, "s3")
    systems = {
        s["name"]: s for tier in estate.tiers.values() for s in tier.systems if s["type"].startswith("s3_")
    }
    assert set(seeded["buckets"]["systems"]) == set(systems)
    for name, system in systems.items():
        prefix = system.get("prefix", "")
        keys = [
            o["Key"] for o in s3.list_objects_v2(Bucket=system["bucket"], Prefix=prefix).get("Contents", [])
        ]
        assert len(keys) >= 3, name
        head = s3.head_object(Bucket=system["bucket"], Key=keys[0])
        assert head["ServerSideEncryption"] == "aws:kms"


def test_route53_health_checks_from_config(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    r53 = _client(emulator, "route53")
    cfg = estate.route53["health_check"]
    regions = [fo["region"] for fo in estate.route53["failover_records"]]
    assert sorted(seeded["health_check_ids"]) == sorted(regions)
    for region in regions:
        hc_id = seeded["health_check_ids"][region]
        config = r53.get_health_check(HealthCheckId=hc_id)["HealthCheck"]["HealthCheckConfig"]
        assert config["Type"] == "HTTP"
        assert (config["IPAddress"], config["Port"]) == REGION_ADDRESSES[region]
        assert config["ResourcePath"] == cfg["resource_path"]
        assert config["RequestInterval"] == cfg["request_interval_seconds"]
        assert config["FailureThreshold"] == cfg["failure_threshold"]
        tags = r53.list_tags_for_resource(ResourceType="healthcheck", ResourceId=hc_id)["ResourceTagSet"][
            "Tags"
        ]
        assert {"Key": "Region", "Value": region} in tags
        assert {"Key": "Name", "Value": f"{estate.route53['record_name']}-{region}"} in tags


def test_failover_records_carry_health_check_ids(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    zones = _client(emulator, "route53").list_hosted_zones_by_name(DNSName=estate.route53["hosted_zone"])
    assert zones["HostedZones"][0]["Id"].endswith(seeded["hosted_zone_id"])
    records = _records(emulator, seeded["hosted_zone_id"])
    name = estate.route53["record_name"] + "."
    failover = {r["SetIdentifier"]: r for r in records if r["Name"] == name and "SetIdentifier" in r}
    assert len(failover) == len(estate.route53["failover_records"])
    for fo in estate.route53["failover_records"]:
        record = failover[fo["set_identifier"]]
        assert record["Failover"] == fo["failover"]
        assert record["HealthCheckId"] == seeded["health_check_ids"][fo["region"]]
        assert record["TTL"] == estate.route53["ttl_seconds"]
        assert record["ResourceRecords"] == [{"Value": REGION_ADDRESSES[fo["region"]][0]}]
    for region_name, region in estate.regions.items():
        plain = [r for r in records if r["Name"] == region.hostname + "." and r["Type"] == "A"]
        expected = REGION_ADDRESSES[region_name][0] if region_name in REGION_ADDRESSES else region.address
        assert [r["ResourceRecords"] for r in plain] == [[{"Value": expected}]]


def test_incident_topics_deliver_to_queues(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    assert list(seeded["topic_arns"]) == incident_topic_names(estate)
    assert "dr-incidents-level-4" in seeded["topic_arns"] and "dr-oncall" in seeded["topic_arns"]
    sns = _client(emulator, "sns")
    sqs = _client(emulator, "sqs")
    sns.publish(
        TopicArn=seeded["topic_arns"]["dr-oncall"], Subject="DR test", Message="region us-east-1 down"
    )
    messages = sqs.receive_message(QueueUrl=seeded["queue_urls"]["dr-oncall"], WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(messages[0]["Body"])
    assert envelope["Message"] == "region us-east-1 down"
    assert envelope["Subject"] == "DR test"
    assert "Messages" not in sqs.receive_message(QueueUrl=seeded["queue_urls"]["dr-incidents-level-1"])


def test_ses_sender_is_verified(emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]) -> None:
    sender = f"dr-alerts@{estate.domain}"
    assert seeded["ses_sender"] == sender
    ses = _client(emulator, "ses")
    ses.send_email(
        Source=sender,
        Destination={"ToAddresses": ["oncall@example.com"]},
        Message={"Subject": {"Data": "DR"}, "Body": {"Text": {"Data": "test"}}},
    )
    with pytest.raises(ClientError):  # an unverified sender is refused: verification is what made it work
        ses.send_email(
            Source=f"nobody@{estate.domain}",
            Destination={"ToAddresses": ["oncall@example.com"]},
            Message={"Subject": {"Data": "DR"}, "Body": {"Text": {"Data": "test"}}},
        )


def test_secrets_exist_with_generated_db_password(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    sm = _client(emulator, "secretsmanager")
    listed = [sid for tier in estate.tiers.values() for s in tier.systems for sid in s.get("secret_ids", ())]
    assert set(seeded["secret_arns"]) == {*listed, db_credentials_secret_id(estate)}
    creds = json.loads(sm.get_secret_value(SecretId=seeded["db_credentials_secret_id"])["SecretString"])
    assert creds["dbInstanceIdentifier"] == estate.databases["primary"]["rds_instance_id"]
    assert len(creds["password"]) >= 24
    for sid in listed:
        assert json.loads(sm.get_secret_value(SecretId=sid)["SecretString"])["value"]


def test_second_seed_is_a_no_op(emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]) -> None:
    before = _inventory(emulator, estate, seeded)
    password = _client(emulator, "secretsmanager").get_secret_value(
        SecretId=seeded["db_credentials_secret_id"]
    )["SecretString"]

    again = seed_aws(estate, emulator.endpoint_url, region_addresses=REGION_ADDRESSES)

    assert again == seeded
    assert _inventory(emulator, estate, seeded) == before
    assert (
        _client(emulator, "secretsmanager").get_secret_value(SecretId=seeded["db_credentials_secret_id"])[
            "SecretString"
        ]
        == password
    )


def test_seed_rides_out_throttling(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.retries import standard

    # Keep botocore's retry decision, shrink its jittered backoff (up to 1 s, 2 s, ...) to ms.
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.01)
    fault = emulator.add_fault(service="kms", action="DescribeKey", mode="throttle", count=2)
    try:
        assert seed_aws(estate, emulator.endpoint_url, region_addresses=REGION_ADDRESSES) == seeded
        assert fault.hits == 2
    finally:
        emulator.registry.clear()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"region_addresses": {"us-east-1": ("127.0.0.41", 18081)}}, "region_addresses.us-west-2: missing"),
        ({"region_addresses": {**REGION_ADDRESSES, "mars-1": ("127.0.0.1", 1)}}, "region_addresses.mars-1:"),
        ({"region_addresses": {**REGION_ADDRESSES, "us-west-2": ("api", 80)}}, "is not an IP address"),
        ({"region_addresses": {**REGION_ADDRESSES, "us-west-2": ("127.0.0.1", 0)}}, "is not a TCP port"),
        ({"region_addresses": REGION_ADDRESSES, "health_interval_override": 5}, "health_interval_override:"),
        ({"region_addresses": REGION_ADDRESSES, "endpoint_url": "127.0.0.1:5000"}, "endpoint_url:"),
    ],
)
def test_bad_arguments_name_the_field(estate: Estate, kwargs: dict[str, Any], message: str) -> None:
    endpoint = kwargs.pop("endpoint_url", "http://127.0.0.1:1")  # never contacted: validation comes first
    with pytest.raises(SeedError, match=message.replace(".", r"\.")):
        seed_aws(estate, endpoint, **kwargs)


# The tests below change the seeded state: they run last in this module.


def test_interval_override_replaces_health_checks(
    emulator: EmulatorHandle, estate: Estate, seeded: dict[str, Any]
) -> None:
    r53 = _client(emulator, "route53")
    fast = seed_aws(
        estate, emulator.endpoint_url, region_addresses=REGION_ADDRESSES, health_interval_override=10
    )

    assert set(fast["health_check_ids"].values()).isdisjoint(seeded["health_check_ids"].values())
    remaining = {hc["Id"]: hc for hc in r53.list_health_checks()["HealthChecks"]}
    assert set(remaining) == set(fast["health_check_ids"].values())  # the replaced ones were deleted
    assert {hc["HealthCheckConfig"]["RequestInterval"] for hc in remaining.values()} == {10}
    in_records = {
        r["HealthCheckId"] for r in _records(emulator, fast["hosted_zone_id"]) if "HealthCheckId" in r
    }
    assert in_records == set(fast["health_check_ids"].values())


def test_fresh_estate_gets_a_fresh_db_password(emulator: EmulatorHandle, estate: Estate) -> None:
    sm = _client(emulator, "secretsmanager")
    passwords = []
    for _ in range(2):
        _reset(emulator)
        result = seed_aws(estate, emulator.endpoint_url, region_addresses=REGION_ADDRESSES)
        secret = sm.get_secret_value(SecretId=result["db_credentials_secret_id"])["SecretString"]
        passwords.append(json.loads(secret)["password"])
    assert passwords[0] != passwords[1]
