"""Which backups a verify_backups run checks.

- a requested backup (params ``tier`` + ``backup_id``): it must exist, else the run fails naming the
  field, before anything is touched;
- the tiers' asset events that triggered the run (each event's extra names the backup, its manifests
  and the manifest's SHA-256, which the manifest must still hash to);
- otherwise (the daily sweep, or params ``tier`` alone) the newest backups of each tier that have a
  manifest but no verification record yet, at most ``sweep_max_backups_per_tier`` per tier.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dr_automation.backup.plan import MANIFEST_NAME, tier_plan
from dr_automation.verification.settings import RECORD_NAME, settings

if TYPE_CHECKING:
    from dr_automation.estate import Estate

BACKUP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
_BACKUP_ID = re.compile(BACKUP_ID_PATTERN)


class VerificationInputError(ValueError):
    """A bad run parameter: names the field and the reason; nothing was verified or changed."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"{field}: {reason}")


def target(tier: str, backup: str, source: str, manifest_sha256: str | None = None) -> dict[str, Any]:
    return {"tier": tier, "backup_id": backup, "source": source, "manifest_sha256": manifest_sha256}


def check_params(estate: Estate, params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(tier, backup_id) from the run's params, validated beyond the JSON schema."""
    tier, backup = params.get("tier"), params.get("backup_id")
    unknown = sorted(set(params) - {"tier", "backup_id"})
    if unknown:
        raise VerificationInputError(unknown[0], "is not a parameter of verify_backups (tier, backup_id)")
    if tier is not None and tier not in estate.tiers:
        raise VerificationInputError(
            "tier", f"{tier!r} is not a tier of the estate ({', '.join(estate.tiers)})"
        )
    if backup is not None:
        if not isinstance(backup, str) or not _BACKUP_ID.match(backup):
            raise VerificationInputError(
                "backup_id", f"{backup!r} is not a backup id (letters, digits, '.', '_', '-'; at most 200)"
            )
        if tier is None:
            raise VerificationInputError("backup_id", "needs tier (backup ids are per tier)")
    return tier, backup


def manifest_exists(estate: Estate, tier: str, backup: str) -> bool:
    from dr_automation.backup.components import aws_client, error_code

    plan = tier_plan(estate, tier)
    location, key = plan.manifest_keys(backup)[0]
    try:
        aws_client(estate, "s3", location.region).head_object(Bucket=location.bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def requested(estate: Estate, tier: str, backup: str) -> dict[str, Any]:
    if not manifest_exists(estate, tier, backup):
        plan = tier_plan(estate, tier)
        location, key = plan.manifest_keys(backup)[0]
        raise VerificationInputError(
            "backup_id", f"no backup {backup!r} of {tier}: {location.url(key)} does not exist"
        )
    return target(tier, backup, "requested")


def from_events(estate: Estate, events: Mapping[Any, Iterable[Any]] | None) -> list[dict[str, Any]]:
    """One target per backup named by a tier's asset event (events of other assets are ignored)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for asset_events in (events or {}).values():
        for event in asset_events:
            extra = getattr(event, "extra", None) or {}
            tier, backup = extra.get("tier"), extra.get("backup_id")
            if tier in estate.tiers and isinstance(backup, str) and _BACKUP_ID.match(backup):
                out[(tier, backup)] = target(tier, backup, "asset_event", extra.get("manifest_sha256"))
    return list(out.values())


def unverified(estate: Estate, tier: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    """The newest `limit` backups of `tier` with a manifest and no verification record, and how many
    more unverified ones there are (left for the next sweep)."""
    from dr_automation.backup.components import aws_client

    plan = tier_plan(estate, tier)
    home = plan.home
    prefix = f"backups/{tier}/"
    manifests: dict[str, Any] = {}
    recorded: set[str] = set()
    s3 = aws_client(estate, "s3", home.region)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=home.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(prefix) :].split("/")
            if len(parts) != 2:
                continue
            if parts[1] == MANIFEST_NAME:
                manifests[parts[0]] = obj["LastModified"]
            elif parts[1] == RECORD_NAME:
                recorded.add(parts[0])
    pending = sorted(
        (b for b in manifests if b not in recorded), key=lambda b: (manifests[b], b), reverse=True
    )
    return [target(tier, b, "sweep") for b in pending[:limit]], max(0, len(pending) - limit)


def select(
    estate: Estate, params: Mapping[str, Any], events: Mapping[Any, Iterable[Any]] | None
) -> dict[str, Any]:
    """The run's targets (and, for a sweep, what was left for the next one)."""
    tier, backup = check_params(estate, params)
    if backup is not None and tier is not None:
        return {"mode": "requested", "targets": [requested(estate, tier, backup)], "left": {}}
    if tier is None:
        found = from_events(estate, events)
        if found:
            return {"mode": "asset_events", "targets": found, "left": {}}
    limit = settings(estate).sweep_max_backups_per_tier
    targets: list[dict[str, Any]] = []
    left: dict[str, int] = {}
    for key in [tier] if tier else list(estate.tiers):
        found, more = unverified(estate, key, limit)
        targets += found
        left[key] = more
    return {"mode": "sweep", "targets": targets, "left": left}
