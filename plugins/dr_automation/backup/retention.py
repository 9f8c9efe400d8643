"""Retention: the lifecycle rules that expire a tier's backups, and the bucket settings backups rely on.

Each tier owns one rule per bucket it writes to (``dr-backup-<tier>`` on ``backups/<tier>/``, expiring
after ``retention_days``; ``dr-staging-<tier>`` on ``staging/<tier>/`` after one day). Every run makes
sure its own rules are there (adding a missing one, never touching rules it does not own) and reads
them back, then checks what the backups' safety depends on: versioning on, default SSE-KMS, and for
the archive, Object Lock in the configured mode for at least the configured years. A rule lost to a
concurrent writer (another tier updating the same bucket) is put back on the re-read.

Manual RDS snapshots have no lifecycle rule: the tier lists the ones it created (tag ``dr-tier``) that
are older than the retention and deletes them with the provider's RdsDeleteDbSnapshotOperator.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dr_automation.backup.components import aws_client, error_code
from dr_automation.backup.plan import TierPlan

if TYPE_CHECKING:
    from dr_automation.estate import Estate

STAGING_DAYS = 1
ATTEMPTS = 3
TIER_TAG = "dr-tier"
SYSTEM_TAG = "dr-system"
BACKUP_TAG = "dr-backup-id"


class RetentionError(RuntimeError):
    """A bucket cannot keep the tier's backups as configured; the message lists every problem."""


def _rule(rule_id: str, prefix: str, days: int) -> dict[str, Any]:
    return {
        "ID": rule_id,
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Expiration": {"Days": days},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def tier_rules(plan: TierPlan) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(region, bucket) -> the rules this tier needs there."""
    rules: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for location in plan.locations:
        rules.setdefault((location.region, location.bucket), []).append(
            _rule(f"dr-backup-{plan.key}", f"backups/{plan.key}/", plan.retention_days)
        )
    if plan.staged:
        rules.setdefault((plan.work.region, plan.work.bucket), []).append(
            _rule(f"dr-staging-{plan.key}", f"staging/{plan.key}/", STAGING_DAYS)
        )
    return rules


def _comparable(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix"))
    return (
        rule.get("ID"),
        rule.get("Status"),
        prefix,
        (rule.get("Expiration") or {}).get("Days"),
        (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays"),
        (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation"),
    )


def _current_rules(s3: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    except Exception as exc:
        if error_code(exc) == "NoSuchLifecycleConfiguration":
            return []
        raise


def ensure_rules(s3: Any, bucket: str, wanted: list[dict[str, Any]]) -> str:
    """Make `wanted` present in the bucket's lifecycle configuration; 'present' or 'written'.

    Read-modify-write, so rules owned by others survive; re-read until ours are all there.
    """
    action = "present"
    for _ in range(ATTEMPTS):
        current = _current_rules(s3, bucket)
        have = {r.get("ID"): _comparable(r) for r in current}
        if all(have.get(w["ID"]) == _comparable(w) for w in wanted):
            return action
        ours = {w["ID"] for w in wanted}
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket,
            LifecycleConfiguration={"Rules": [r for r in current if r.get("ID") not in ours] + wanted},
        )
        action = "written"
    raise RetentionError(f"{bucket}: lifecycle rules {sorted(w['ID'] for w in wanted)} did not persist")


def _bucket_problems(s3: Any, bucket: str, plan: TierPlan, locked: bool) -> list[str]:
    problems = []
    if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
        problems.append(f"{bucket}: versioning is not enabled (an overwritten backup could not be recovered)")
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        algorithm = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
    except Exception as exc:
        algorithm = f"none ({error_code(exc) or type(exc).__name__})"
    if algorithm != "aws:kms":
        problems.append(f"{bucket}: default encryption is {algorithm}, not aws:kms")
    if locked:
        config = s3.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration", {})
        retention = (config.get("Rule") or {}).get("DefaultRetention") or {}
        years = retention.get("Years") or (retention.get("Days", 0) / 365)
        if config.get("ObjectLockEnabled") != "Enabled":
            problems.append(f"{bucket}: Object Lock is not enabled")
        elif retention.get("Mode") != plan.lock_mode or years < (plan.lock_years or 0):
            problems.append(
                f"{bucket}: default Object Lock retention is {retention.get('Mode')} for {years} years, "
                f"expected {plan.lock_mode} for at least {plan.lock_years}"
            )
    return problems


def check_retention(estate: Estate, plan: TierPlan) -> dict[str, Any]:
    """Ensure the tier's lifecycle rules and check its buckets; raises RetentionError listing problems."""
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    locked = {(loc.region, loc.bucket) for loc in plan.locations if loc.object_lock}
    for (region, bucket), wanted in tier_rules(plan).items():
        s3 = aws_client(estate, "s3", region)
        try:
            action = ensure_rules(s3, bucket, wanted)
        except Exception as exc:
            problems.append(f"{bucket}: lifecycle rules could not be ensured ({error_code(exc) or exc})")
            action = "failed"
        bucket_problems = _bucket_problems(s3, bucket, plan, (region, bucket) in locked)
        problems += bucket_problems
        results.append(
            {
                "bucket": bucket,
                "region": region,
                "rules": {
                    w["ID"]: {"prefix": w["Filter"]["Prefix"], "days": w["Expiration"]["Days"]}
                    for w in wanted
                },
                "rules_action": action,
                "ok": action != "failed" and not bucket_problems,
            }
        )
    if problems:
        raise RetentionError(f"{plan.dag_id}: retention not enforceable: " + "; ".join(problems))
    return {"tier": plan.key, "buckets": results}


def expired_snapshots(estate: Estate, plan: TierPlan, now: datetime | None = None) -> list[dict[str, Any]]:
    """RdsDeleteDbSnapshotOperator kwargs for this tier's manual snapshots older than the retention."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=plan.retention_days)
    regions = set()
    for system in plan.systems_of("rds_snapshot"):
        regions.add(estate.databases[system["database"]]["region"])
        if system.get("copy_to_region"):
            regions.add(system["copy_to_region"])
    out = []
    for region in sorted(regions):
        rds = aws_client(estate, "rds", region)
        pages = rds.get_paginator("describe_db_snapshots").paginate(SnapshotType="manual")
        for snapshot in (s for page in pages for s in page["DBSnapshots"]):
            tags = snapshot.get("TagList")
            if tags is None:
                tags = rds.list_tags_for_resource(ResourceName=snapshot["DBSnapshotArn"]).get("TagList", [])
            if {"Key": TIER_TAG, "Value": plan.key} not in tags:
                continue
            created = snapshot.get("SnapshotCreateTime")
            if created is not None and created < cutoff:
                out.append(
                    {"db_snapshot_identifier": snapshot["DBSnapshotIdentifier"], "region_name": region}
                )
    return out
