"""One backup's checks that run in the worker, and the restore tests they lead to.

For the backup's manifest (every location: the same document, hashing to what the backup run
recorded) and each entry: the backup run's own status, the objects (``objects``), then the content
(``content``) read from the home location. Entries that pass lead to restore tests: a database dump
to a toolbox pod, RDS snapshots to scratch instances (``restores``). An entry whose objects fail is
not restored: its reason is already exact, and a restore would only repeat it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dr_automation.backup.plan import tier_plan
from dr_automation.verification import content, objects, restores
from dr_automation.verification.objects import check, failed, split_url

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

# Only the head of a dump is read in the worker (the restore pod reads the whole of it).
HEAD_ONLY = (".pgdump",)
HEAD_BYTES = 1024


def s3_clients(estate: Estate) -> Any:
    from dr_automation.backup.components import aws_client

    return lambda region: aws_client(estate, "s3", region)


def read_blobs(s3: Any, entry: Mapping[str, Any]) -> dict[str, bytes]:
    bucket, prefix = split_url(entry["locations"][0])
    out = {}
    for artifact in entry["artifacts"]:
        kwargs = {"Range": f"bytes=0-{HEAD_BYTES - 1}"} if artifact["name"].endswith(HEAD_ONLY) else {}
        out[artifact["name"]] = s3.get_object(Bucket=bucket, Key=prefix + artifact["name"], **kwargs)[
            "Body"
        ].read()
    return out


def read_manifests(
    estate: Estate, target: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The manifest (from the home location) and the checks of every location's copy."""
    plan = tier_plan(estate, target["tier"])
    s3_for = s3_clients(estate)
    checks, found = [], []
    for location, key in plan.manifest_keys(target["backup_id"]):
        manifest, result = objects.read_manifest(
            s3_for(location.region), location.bucket, key, expected_sha256=target.get("manifest_sha256")
        )
        checks.append(result)
        found.append((location, manifest, result.get("sha256")))
    home = found[0][1]
    digests = {sha for _, m, sha in found if m is not None}
    if len(digests) > 1:
        checks.append(
            check(
                "manifest",
                target["backup_id"],
                False,
                "the locations hold different manifests: "
                + ", ".join(f"{loc.url()} {sha}" for loc, _, sha in found),
            )
        )
    if home is not None and (home.get("backup_id"), home.get("tier")) != (
        target["backup_id"],
        target["tier"],
    ):
        checks.append(
            check(
                "manifest",
                target["backup_id"],
                False,
                f"the manifest is of backup {home.get('backup_id')!r} of {home.get('tier')!r}",
            )
        )
    return home, checks


def check_entry(
    estate: Estate, manifest: Mapping[str, Any], entry: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The entry's checks, and its artifacts as read from the home location (for the restore plan)."""
    if entry.get("status") != "succeeded":
        reason = f"{entry['name']}: the backup run reported it failed ({entry.get('reason')})"
        return [check("backup", entry["name"], False, reason)], {}
    s3_for = s3_clients(estate)
    out = objects.check_entry_objects(s3_for, manifest, entry)
    if failed(out):
        return out, {}
    home_bucket = split_url(entry["locations"][0])[0]
    region = next(loc["region"] for loc in manifest["locations"] if loc["bucket"] == home_bucket)
    blobs = read_blobs(s3_for(region), entry)
    result = content.check_content(estate, entry, blobs)
    return out + ([result] if result else []), blobs


def check_backup(estate: Estate, run_id: str, target: Mapping[str, Any]) -> dict[str, Any]:
    """Checks of one backup, and the restore tests its passing entries lead to."""
    manifest, manifest_checks = read_manifests(estate, target)
    result: dict[str, Any] = {
        **target,
        "manifest_checks": manifest_checks,
        "entries": {},
        "database_jobs": [],
        "snapshot_jobs": [],
    }
    if manifest is None or failed(manifest_checks):
        return result
    result["manifest"] = {
        "created_at": manifest.get("created_at"),
        "status": manifest.get("status"),
        "run_id": manifest.get("run_id"),
        "dag_id": manifest.get("dag_id"),
        "rpo_minutes": manifest.get("rpo_minutes"),
        "sha256": manifest_checks[0].get("sha256"),
        "locations": [loc.get("bucket") for loc in manifest.get("locations") or []],
    }
    for entry in manifest.get("components") or []:
        checks, blobs = check_entry(estate, manifest, entry)
        result["entries"][entry["name"]] = {"type": entry["type"], "checks": checks}
        if failed(checks):
            continue
        if entry["type"] == "postgres_database":
            result["database_jobs"].append(
                restores.database_job(estate, run_id, target["tier"], target["backup_id"], entry)
            )
        elif entry["type"] == "rds_snapshot":
            name, data = next(iter(sorted(blobs.items())))
            result["snapshot_jobs"] += restores.snapshot_jobs(
                estate, run_id, target["tier"], target["backup_id"], entry, content.parse_json(data, name)
            )
    log.info(
        "%s %s: %d entries checked, %d failed, %d dumps and %d snapshots to restore",
        target["tier"],
        target["backup_id"],
        len(result["entries"]),
        sum(bool(failed(e["checks"])) for e in result["entries"].values()),
        len(result["database_jobs"]),
        len(result["snapshot_jobs"]),
    )
    return result
