"""S3 copies of a tier: each S3 system's source bucket/prefix into the work location, then each
succeeded system's artifacts into the tier's final locations (other region, archival class, lock).

Both are the Amazon provider's ``S3CopyPrefixOperator`` (through ``operators.BackupCopyPrefixOperator``,
which adds the storage class, Object Lock retention and a SHA-256 checksum to every copy): one mapped
instance per system, and per system and location, whatever the number of objects. This module only
plans; it imports no provider.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from dr_automation.backup.plan import BACKUP_ID_TEMPLATE, Location, TierPlan

OBJECTS_DIR = "objects/"


def retain_until(years: int, now: datetime | None = None) -> str:
    """`years` calendar years from now (29 February becomes 28 February), ISO-8601 UTC."""
    now = now or datetime.now(UTC)
    try:
        until = now.replace(year=now.year + years)
    except ValueError:
        until = now.replace(year=now.year + years, day=28)
    return until.isoformat(timespec="seconds")


def copy_kwargs(
    system: str,
    source_bucket: str,
    source_prefix: str,
    target: Location,
    dest_prefix: str,
    *,
    lock: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One BackupCopyPrefixOperator instance (an expand_kwargs entry)."""
    kwargs: dict[str, Any] = {
        "component": system,
        "source_bucket_name": source_bucket,
        "source_bucket_prefix": source_prefix,
        "dest_bucket_name": target.bucket,
        "dest_bucket_prefix": dest_prefix,
        "region_name": target.region,
        "kms_key_id": target.kms_key_alias,
        "kms_encryption_type": "aws:kms",
        "storage_class": target.storage_class,
    }
    if lock:
        kwargs["object_lock_mode"], kwargs["object_lock_retain_until"] = lock
    return kwargs


def source_copies(plan: TierPlan, systems: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each S3 system's source copied under its component prefix (objects/<key below the prefix>);
    templated, the backup id is rendered per run."""
    return [
        copy_kwargs(
            s["name"],
            s["bucket"],
            s.get("prefix", ""),
            plan.work,
            plan.component_prefix(BACKUP_ID_TEMPLATE, s["name"]) + OBJECTS_DIR,
        )
        for s in systems
    ]


def placement_copies(
    plan: TierPlan, backup: str, systems: Iterable[str], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Each (succeeded) system's component prefix copied to each of the tier's copy locations."""
    lock = (
        (plan.lock_mode, retain_until(plan.lock_years, now)) if plan.lock_mode and plan.lock_years else None
    )
    return [
        copy_kwargs(
            system,
            plan.work.bucket,
            plan.component_prefix(backup, system),
            target,
            f"{plan.final_prefix(backup)}{system}/",
            lock=lock if target.object_lock else None,
        )
        for system in sorted(systems)
        for target in plan.copies
    ]
