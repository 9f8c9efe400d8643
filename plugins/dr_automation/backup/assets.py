"""The asset each tier updates when a backup run is complete (verification schedules on it).

The event's extra carries the backup id, the tier, the manifest locations and the manifest's SHA-256:
a consumer reads the manifest, never a listing of the bucket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dr_automation.backup.plan import tier_plan

if TYPE_CHECKING:
    from dr_automation.estate import Estate

ASSET_GROUP = "dr-backups"


def asset_name(tier_key: str) -> str:
    return f"dr_backup_{tier_key}"


def tier_asset(estate: Estate, tier_key: str) -> Any:
    """Asset(name=dr_backup_<tier>, uri=s3://<home bucket>/backups/<tier>/): what `schedule=[...]` uses."""
    from airflow.sdk import Asset

    plan = tier_plan(estate, tier_key)
    return Asset(
        name=asset_name(tier_key),
        uri=plan.home.url(f"backups/{tier_key}/"),
        group=ASSET_GROUP,
        extra={"tier": tier_key, "dag_id": plan.dag_id, "rpo_minutes": plan.rpo_minutes},
    )


def event_extra(tier_key: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The asset event's extra, from write_manifest's summary."""
    return {
        "tier": tier_key,
        "backup_id": summary["backup_id"],
        "manifests": summary["manifests"],
        "manifest_sha256": summary["sha256"],
        "components": summary["components"],
        "size_bytes": summary["size_bytes"],
    }
