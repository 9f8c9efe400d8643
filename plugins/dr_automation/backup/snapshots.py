"""RDS snapshots of a tier (type ``rds_snapshot``): what the provider's operators are mapped over, and
the evidence the manifest keeps of each snapshot and its cross-region copy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dr_automation.backup.components import BackupError, aws_client, put_artifact
from dr_automation.backup.plan import BACKUP_ID_FILTER, BACKUP_ID_TEMPLATE, TierPlan, rds_identifier
from dr_automation.backup.retention import BACKUP_TAG, SYSTEM_TAG, TIER_TAG

if TYPE_CHECKING:
    from dr_automation.estate import Estate


def snapshot_id(plan: TierPlan, system: str, backup: str) -> str:
    return rds_identifier(f"dr-{plan.key}-{system}-{backup}")


def snapshot_id_template(plan: TierPlan, system: str) -> str:
    """snapshot_id() as a Jinja template, rendered per run in the operator's templated field."""
    return "{{ ('dr-" + f"{plan.key}-{system}-' ~ (run_id | {BACKUP_ID_FILTER})) | dr_rds_id" + " }}"


def _tags(plan: TierPlan, system: str, backup: str) -> list[dict[str, str]]:
    return [
        {"Key": TIER_TAG, "Value": plan.key},
        {"Key": SYSTEM_TAG, "Value": system},
        {"Key": BACKUP_TAG, "Value": backup},
    ]


def create_kwargs(estate: Estate, plan: TierPlan) -> list[dict[str, Any]]:
    """RdsCreateDbSnapshotOperator per rds_snapshot system (templated: ids carry the run's backup id)."""
    out = []
    for system in plan.systems_of("rds_snapshot"):
        database = estate.databases[system["database"]]
        backup = BACKUP_ID_TEMPLATE
        out.append(
            {
                "db_identifier": database["rds_instance_id"],
                "db_snapshot_identifier": snapshot_id_template(plan, system["name"]),
                "region_name": database["region"],
                "tags": _tags(plan, system["name"], backup),
            }
        )
    return out


def copy_kwargs(estate: Estate, plan: TierPlan, backup: str, created: Sequence[Any]) -> list[dict[str, Any]]:
    """RdsCopyDbSnapshotOperator per created snapshot whose system has copy_to_region: the source ARN
    (a cross-region copy needs it) and the target region's KMS key; the copy keeps the snapshot's id."""
    by_id = {}
    for answer in created:
        snapshot = (json.loads(answer) if isinstance(answer, str) else answer)["DBSnapshot"]
        by_id[snapshot["DBSnapshotIdentifier"]] = snapshot
    copies = []
    for system in plan.systems_of("rds_snapshot"):
        target = system.get("copy_to_region")
        source = by_id.get(snapshot_id(plan, system["name"], backup))
        if not target or source is None:
            continue  # no copy wanted, or the snapshot failed (the manifest reports that)
        key = aws_client(estate, "kms", target).describe_key(KeyId=estate.regions[target].kms_key_alias)
        copies.append(
            {
                "source_db_snapshot_identifier": source["DBSnapshotArn"],
                "target_db_snapshot_identifier": source["DBSnapshotIdentifier"],
                "source_region": estate.databases[system["database"]]["region"],
                "region_name": target,
                "kms_key_id": key["KeyMetadata"]["Arn"],
                "tags": _tags(plan, system["name"], backup),
            }
        )
    return copies


def copied_systems(plan: TierPlan, backup: str, copies: Sequence[Mapping[str, Any]]) -> list[str]:
    """The system of each planned copy, in plan order (the copy's map index -> system)."""
    by_id = {snapshot_id(plan, s["name"], backup): s["name"] for s in plan.systems_of("rds_snapshot")}
    return [by_id[c["target_db_snapshot_identifier"]] for c in copies]


def _describe(estate: Estate, region: str, identifier: str) -> dict[str, Any] | None:
    rds = aws_client(estate, "rds", region)
    try:
        found = rds.describe_db_snapshots(DBSnapshotIdentifier=identifier)["DBSnapshots"]
    except Exception as exc:
        if "NotFound" in (getattr(exc, "response", {}) or {}).get("Error", {}).get("Code", ""):
            return None
        raise
    if not found:
        return None
    s = found[0]
    return {
        "region": region,
        "identifier": s["DBSnapshotIdentifier"],
        "arn": s["DBSnapshotArn"],
        "status": s.get("Status"),
        "encrypted": s.get("Encrypted"),
        "kms_key_id": s.get("KmsKeyId"),
        "created_at": str(s.get("SnapshotCreateTime")),
        "allocated_storage_gib": s.get("AllocatedStorage"),
        "engine": s.get("Engine"),
    }


def record_snapshot(estate: Estate, plan: TierPlan, system: Mapping[str, Any], backup: str) -> dict[str, Any]:
    """Describe the snapshot (and its copy) as RDS holds them; fail the system if either is missing,
    not available or not encrypted. The description is the system's artifact."""
    database = estate.databases[system["database"]]
    identifier = snapshot_id(plan, system["name"], backup)
    snapshots = [_describe(estate, database["region"], identifier)]
    if system.get("copy_to_region"):
        snapshots.append(_describe(estate, system["copy_to_region"], identifier))
    where = [database["region"], *([system["copy_to_region"]] if system.get("copy_to_region") else [])]
    problems = []
    for region, snap in zip(where, snapshots, strict=True):
        if snap is None:
            problems.append(f"snapshot {identifier} not found in {region}")
        elif snap["status"] != "available" or not snap["encrypted"]:
            problems.append(
                f"snapshot {identifier} in {region} is {snap['status']}, encrypted={snap['encrypted']}"
            )
    present = [s for s in snapshots if s is not None]
    artifact = put_artifact(
        estate,
        plan.work,
        plan.component_prefix(backup, system["name"]) + "snapshots.json",
        json.dumps({"rds_instance_id": database["rds_instance_id"], "snapshots": present}, indent=2).encode(),
    )
    if problems:
        raise BackupError(f"{system['name']}: " + "; ".join(problems))
    return {"system": system["name"], "artifacts": [artifact], "snapshots": present}
