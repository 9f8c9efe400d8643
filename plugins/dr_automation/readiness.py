"""Readiness checks: can the DR programme's dependencies be trusted right now?"""

from __future__ import annotations

from typing import Any

from dr_automation.estate import Estate


class ReadinessError(RuntimeError):
    """A dependency the DR programme needs is missing or misconfigured."""


def check_backup_buckets(estate: Estate) -> dict[str, Any]:
    """Every region's backup bucket must exist, be versioned and encrypt by default.

    Versioning keeps an overwritten or deleted backup recoverable; default encryption guarantees no
    object lands in plain text even if a writer forgets to ask for it.
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.exceptions import ClientError

    results: dict[str, Any] = {}
    problems: list[str] = []
    for region in estate.regions.values():
        hook = S3Hook(aws_conn_id=estate.connections["aws"], region_name=region.name)
        client = hook.get_conn()
        bucket = region.backup_bucket
        entry: dict[str, Any] = {"bucket": bucket, "region": region.name}
        if not hook.check_for_bucket(bucket):
            problems.append(f"{region.name}: bucket {bucket} does not exist")
            entry["exists"] = False
            results[region.name] = entry
            continue
        entry["exists"] = True
        entry["versioning"] = client.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")
        if entry["versioning"] != "Enabled":
            problems.append(
                f"{region.name}: bucket {bucket} versioning is {entry['versioning']}, not Enabled"
            )
        try:
            rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            entry["encryption"] = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        except ClientError as exc:
            entry["encryption"] = None
            problems.append(f"{region.name}: bucket {bucket} has no default encryption ({exc})")
        results[region.name] = entry
    if problems:
        raise ReadinessError("backup buckets not ready: " + "; ".join(problems))
    return results
