"""In-process moto with the estate's backup buckets, keys and secrets, for the backup unit tests.

The bundle's code reaches AWS through the estate's AWS connection id; here that connection has no
endpoint, so every boto3 call lands in moto's in-process mock (module-scoped: set up once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from dr_automation.backup.components import forget_clients
from dr_automation.estate import Estate

SOURCE_OBJECTS = {"tenants/t1/avatar.png": b"\x89PNG fake", "tenants/t2/report.pdf": b"%PDF fake"}


def client(service: str, region: str = "us-east-1") -> Any:
    return boto3.client(service, region_name=region)


@contextmanager
def mocked_estate_aws(estate: Estate) -> Iterator[dict[str, Any]]:
    """mock_aws with KMS keys (aliases), versioned SSE-KMS backup buckets, the Object Lock archive
    buckets, the user-files bucket and the tier-1 secrets; yields the key ARNs per region."""
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            f"AIRFLOW_CONN_{estate.connections['aws'].upper()}": json.dumps({"conn_type": "aws"}),
        }.items():
            mp.setenv(name, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        forget_clients()
        with mock_aws():
            arns = {}
            for name, region in estate.regions.items():
                kms = client("kms", name)
                key = kms.create_key()["KeyMetadata"]
                kms.create_alias(AliasName=region.kms_key_alias, TargetKeyId=key["KeyId"])
                arns[name] = key["Arn"]
                make_bucket(region.backup_bucket, name, arns[name])
            for name, bucket in estate.raw["archive"]["buckets"].items():
                make_bucket(bucket, name, arns[name], locked=True)
            make_bucket("leanvibe-user-files-prod", "us-east-1", arns["us-east-1"])
            for key, body in SOURCE_OBJECTS.items():
                client("s3").put_object(Bucket="leanvibe-user-files-prod", Key=key, Body=body)
            sm = client("secretsmanager")
            for secret_id in ("leanvibe/prod/api", "leanvibe/prod/database"):
                sm.create_secret(Name=secret_id, SecretString=json.dumps({"token": f"value-of-{secret_id}"}))
            yield {"key_arns": arns}
        forget_clients()


def make_bucket(bucket: str, region: str, key_arn: str, *, locked: bool = False) -> None:
    s3 = client("s3", region)
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    if locked:
        kwargs["ObjectLockEnabledForBucket"] = True
    s3.create_bucket(**kwargs)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}}
            ]
        },
    )
    if locked:
        s3.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 7}},
            },
        )
