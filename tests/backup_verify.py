"""What the backup tests check in every manifest, independently of the code that wrote it: each
location's manifest is the same document, and every artifact of every succeeded system exists in
every location with the recorded size and SHA-256, recomputed here from the bytes (archived objects
are restored first, as a restore would)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

ARCHIVED = ("GLACIER", "DEEP_ARCHIVE")
# tier key -> DAG id: a contract (verification, runbooks and alerts name these DAGs)
TIER_DAGS = {
    "tier1_realtime": "backup_tier1_realtime",
    "tier2_frequent": "backup_tier2_frequent",
    "tier3_daily": "backup_tier3_daily",
    "tier4_archival": "backup_tier4_archival",
}


def split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.netloc, parts.path.lstrip("/")


def read_object(s3: Any, bucket: str, key: str) -> bytes:
    """The object's bytes; an archived object is restored first (the emulator restores at once)."""
    head = s3.head_object(Bucket=bucket, Key=key)
    if head.get("StorageClass") in ARCHIVED and 'ongoing-request="false"' not in head.get("Restore", ""):
        s3.restore_object(Bucket=bucket, Key=key, RestoreRequest={"Days": 1})
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def read_manifests(s3_for: Callable[[str], Any], plan: Any, backup: str) -> list[dict[str, Any]]:
    """The manifest from every location of the tier (all must exist)."""
    return [
        json.loads(read_object(s3_for(location.region), location.bucket, key))
        for location, key in plan.manifest_keys(backup)
    ]


def verify_manifest(s3_for: Callable[[str], Any], manifest: dict[str, Any]) -> int:
    """Recompute every artifact's SHA-256 in every location; returns how many objects were checked."""
    regions = {loc["bucket"]: loc["region"] for loc in manifest["locations"]}
    checked = 0
    for component in manifest["components"]:
        if component["status"] != "succeeded":
            continue
        assert component["artifacts"], f"{component['name']}: a succeeded system with no artifact"
        for prefix_url in component["locations"]:
            bucket, prefix = split(prefix_url)
            s3 = s3_for(regions[bucket])
            for artifact in component["artifacts"]:
                data = read_object(s3, bucket, prefix + artifact["name"])
                where = f"{component['name']}: s3://{bucket}/{prefix}{artifact['name']}"
                assert len(data) == artifact["size_bytes"], where
                assert hashlib.sha256(data).hexdigest() == artifact["sha256"], where
                checked += 1
        if len(component["artifacts"]) == 1:
            assert component["sha256"] == component["artifacts"][0]["sha256"]
            assert component["location"] == component["locations"][0] + component["artifacts"][0]["name"]
        assert component["size_bytes"] == sum(a["size_bytes"] for a in component["artifacts"])
    return checked


def assert_archive_delete_refused(s3: Any, bucket: str, key: str) -> None:
    """The archived object is DEEP_ARCHIVE under COMPLIANCE lock, and deleting its version is refused,
    even with the governance bypass; the version is still there afterwards."""
    from botocore.exceptions import ClientError

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["StorageClass"] == "DEEP_ARCHIVE"
    for bypass in ({}, {"BypassGovernanceRetention": True}):
        try:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"], **bypass)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessDenied", exc.response["Error"]
        else:
            raise AssertionError(f"s3://{bucket}/{key}: deleting a locked archive was accepted ({bypass})")
    assert (
        s3.head_object(Bucket=bucket, Key=key, VersionId=head["VersionId"])["VersionId"] == head["VersionId"]
    )
