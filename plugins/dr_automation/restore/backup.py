"""What the restore reads about a backup before deciding anything, and the per-target lock.

- ``find_backup``: the backup's manifest (the tier's home location), its verification record and
  which artifacts are archived (GLACIER / DEEP_ARCHIVE: they must be thawed before anything stops);
- ``read_verification``: the record verify_backups writes beside the manifest
  (``backups/<tier>/<backup id>/verification.json``; ``result`` passed/failed and ``reason``);
- ``read_facts``: what the plan needs beyond the manifest (is a source bucket versioned, which
  snapshots an RDS backup describes, the restorable time a point-in-time backup recorded);
- ``acquire_lock`` / ``release_lock``: one restore per target at a time, across runs and DAGs, with a
  conditional S3 write (``If-None-Match: *``) in the primary region's backup bucket.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dr_automation.restore.plan import ARCHIVED, LOCK_PREFIX, RestoreInputError

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

MISSING = ("NoSuchKey", "404", "NotFound")
# A lock older than this belongs to a run that can no longer be alive (the DAG's run timeout).
LOCK_STALE_AFTER = timedelta(hours=6)


def s3(estate: Estate, region: str) -> Any:
    from dr_automation.backup.components import aws_client

    return aws_client(estate, "s3", region)


def split_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def _code(exc: BaseException) -> str:
    from dr_automation.backup.components import error_code

    return error_code(exc)


def read_json(estate: Estate, region: str, url: str) -> Any | None:
    """The JSON document at `url`, or None when there is no such object."""
    bucket, key = split_url(url)
    try:
        body = s3(estate, region).get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if _code(exc) in MISSING:
            return None
        raise
    return json.loads(body)


def read_verification(estate: Estate, tier: str, backup: str) -> tuple[dict[str, Any] | None, str]:
    """The backup's verification record (None if never verified) and where it is looked for."""
    from dr_automation.backup.plan import tier_plan

    location, manifest_key = tier_plan(estate, tier).manifest_keys(backup)[0]
    from dr_automation.verification.settings import RECORD_NAME  # one home for where records live

    url = location.url(manifest_key.rsplit("/", 1)[0] + "/" + RECORD_NAME)
    return read_json(estate, location.region, url), url


def find_backup(estate: Estate, backup: str, tier: str | None) -> dict[str, Any]:
    """The backup's tier, manifest and verification record; refuses an unknown or ambiguous id."""
    from dr_automation.backup.plan import tier_plan

    tiers = [tier] if tier else list(estate.tiers)
    found: list[dict[str, Any]] = []
    looked: list[str] = []
    for key in tiers:
        location, manifest_key = tier_plan(estate, key).manifest_keys(backup)[0]
        url = location.url(manifest_key)
        looked.append(url)
        manifest = read_json(estate, location.region, url)
        if manifest is not None:
            found.append({"tier": key, "manifest": manifest, "manifest_url": url, "region": location.region})
    if not found:
        raise RestoreInputError("backup_id", f"no backup {backup!r}: none of {', '.join(looked)} exists")
    if len(found) > 1:
        raise RestoreInputError(
            "backup_id", f"{backup!r} exists in tiers {', '.join(f['tier'] for f in found)}: set tier"
        )
    hit = found[0]
    if hit["manifest"].get("backup_id") != backup or hit["manifest"].get("tier") != hit["tier"]:
        raise RestoreInputError("backup_id", f"{hit['manifest_url']} is the manifest of another backup")
    record, record_url = read_verification(estate, hit["tier"], backup)
    hit.update(verification=record, verification_url=record_url, archived=archived_artifacts(hit["manifest"]))
    return hit


def archived_artifacts(manifest: Mapping[str, Any]) -> list[str]:
    """URLs (home location) of every artifact stored in an archive class: thawed before restoring."""
    home = (manifest.get("locations") or [{}])[0]
    if home.get("storage_class") not in ARCHIVED:
        return []
    return [
        entry["locations"][0] + artifact["name"]
        for entry in manifest.get("components") or []
        for artifact in entry.get("artifacts") or []
    ]


def read_facts(estate: Estate, found: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """Versioning of the file systems' buckets; snapshot descriptions and restorable times of RDS entries."""
    from dr_automation.restore.plan import COMPONENT_TYPES, artifact_url

    tier = estate.tiers[found["tier"]]
    systems = {s["name"]: s for s in tier.systems}
    facts: dict[str, Any] = {"versioned": {}, "snapshots": {}, "pitr": {}}
    region = found["region"]
    for entry in found["manifest"].get("components") or []:
        kind, system = entry["type"], systems.get(entry["name"])
        if system is None:
            continue
        if kind in COMPONENT_TYPES["files"] and "files" in request["components"]:
            bucket = system["bucket"]
            status = s3(estate, estate.primary_region.name).get_bucket_versioning(Bucket=bucket).get("Status")
            facts["versioned"][bucket] = status == "Enabled"
        elif kind == "rds_snapshot" and request["target"] == "new_instance":
            url, _ = artifact_url(entry, "snapshots.json")
            facts["snapshots"][entry["name"]] = thawed_json(estate, region, url)
        elif kind == "postgres_wal" and request["target"] == "new_instance":
            url, _ = artifact_url(entry, ".json")
            facts["pitr"][entry["name"]] = thawed_json(estate, region, url)
    return facts


def thawed_json(estate: Estate, region: str, url: str) -> Any:
    thaw(estate, region, [url], wait_seconds=60)
    return read_json(estate, region, url)


def thaw(estate: Estate, region: str, urls: list[str], *, wait_seconds: float = 600) -> dict[str, Any]:
    """Make archived objects readable (RestoreObject, then wait); already readable ones are left alone."""
    client = s3(estate, region)
    pending: dict[str, tuple[str, str]] = {}
    for url in urls:
        bucket, key = split_url(url)
        head = client.head_object(Bucket=bucket, Key=key)
        if head.get("StorageClass") not in ARCHIVED or 'ongoing-request="false"' in (
            head.get("Restore") or ""
        ):
            continue
        if "ongoing-request" not in (head.get("Restore") or ""):
            # Expedited retrieval exists for GLACIER only; DEEP_ARCHIVE's fastest is Standard (12 h)
            speed = "Expedited" if head.get("StorageClass") == "GLACIER" else "Standard"
            client.restore_object(
                Bucket=bucket, Key=key, RestoreRequest={"Days": 2, "GlacierJobParameters": {"Tier": speed}}
            )
        pending[url] = (bucket, key)
    requested = len(pending)
    deadline = time.monotonic() + wait_seconds
    while pending:
        for url, (bucket, key) in list(pending.items()):
            if 'ongoing-request="false"' in (client.head_object(Bucket=bucket, Key=key).get("Restore") or ""):
                del pending[url]
        if pending and time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(pending)} archived objects not readable after {wait_seconds}s: {sorted(pending)[:3]}"
            )
        if pending:
            time.sleep(2)
    return {"thawed": requested, "checked": len(urls)}


# -- the lock -------------------------------------------------------------------------------------


def _lock_where(estate: Estate, name: str) -> tuple[str, str, str]:
    primary = estate.primary_region
    return primary.name, primary.backup_bucket, f"{LOCK_PREFIX}{name}.json"


def acquire_lock(estate: Estate, name: str, run_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Take the target's lock for this run (a retry of the same run keeps it); refuse while another
    run holds it, unless its lock is older than LOCK_STALE_AFTER (that run cannot be alive)."""
    region, bucket, key = _lock_where(estate, name)
    client = s3(estate, region)
    now = now or datetime.now(UTC)
    body = json.dumps({"run_id": run_id, "since": now.isoformat(timespec="seconds"), "target": name}).encode()
    for _ in range(3):
        try:
            client.put_object(
                Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", ServerSideEncryption="aws:kms"
            )
            return {"lock": f"s3://{bucket}/{key}", "taken_over": None}
        except Exception as exc:
            if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
        holder = read_json(estate, region, f"s3://{bucket}/{key}") or {}
        if holder.get("run_id") == run_id:
            return {"lock": f"s3://{bucket}/{key}", "taken_over": None}
        since = datetime.fromisoformat(holder["since"]) if holder.get("since") else now
        if now - since < LOCK_STALE_AFTER:
            raise RestoreInputError(
                "target",
                f"another restore of {name} is running (run {holder.get('run_id')}, since {holder.get('since')}); "
                "one restore per target at a time",
            )
        log.warning(
            "taking over the stale lock of run %s (since %s)", holder.get("run_id"), holder.get("since")
        )
        client.delete_object(Bucket=bucket, Key=key)
    raise RestoreInputError("target", f"could not take the lock s3://{bucket}/{key}")


def release_lock(estate: Estate, name: str, run_id: str) -> bool:
    """Release the lock if this run holds it (never another run's)."""
    region, bucket, key = _lock_where(estate, name)
    holder = read_json(estate, region, f"s3://{bucket}/{key}")
    if not holder or holder.get("run_id") != run_id:
        return False
    s3(estate, region).delete_object(Bucket=bucket, Key=key)
    return True


def lock_holder(estate: Estate, name: str) -> dict[str, Any] | None:
    region, bucket, key = _lock_where(estate, name)
    return read_json(estate, region, f"s3://{bucket}/{key}")
