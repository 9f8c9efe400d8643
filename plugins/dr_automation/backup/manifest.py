"""The manifest of one backup run: what each system's backup is, where it is, and whether it is whole.

Written after every run, whatever happened, next to the backups in each of the tier's locations.
Nothing in it is taken on a task's word:

- a system's *status* comes from the states of every task instance that worked on it (Airflow's own
  record of the run), its *duration* is their summed run time, and a failed system's *reason* is what
  the failing step recorded (a Python task or a copy: XCom ``backup_outcome``; a toolbox pod: its
  result file) or, failing that, which task ended in which state;
- its *artifacts* are what S3 holds under the system's prefix: size, SHA-256 (the writer's, checked
  against S3's own SHA-256 checksum, or recomputed by reading the object), SSE-KMS key;
- each copy in another location is checked object by object (size, checksum, ETag, storage class,
  encryption, Object Lock mode and retain-until date).

Anything that does not hold marks that system failed with the reason; its siblings are unaffected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dr_automation.backup.components import aws_client, error_code
from dr_automation.backup.copies import retain_until
from dr_automation.backup.plan import (
    BATCH_WORKERS,
    COPY_S3,
    COPY_SNAPSHOT,
    CREATE_SNAPSHOT,
    PLACE,
    PLAN_PLACEMENT,
    PLAN_SNAPSHOT_COPIES,
    POD_TYPES,
    PYTHON_TYPES,
    RECORD_SNAPSHOT,
    S3_TYPES,
    Location,
    TierPlan,
    component_task_id,
)

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "dr-backup-manifest/1"
SUCCEEDED, FAILED = "succeeded", "failed"
TaskKey = tuple[str, int]


# -- which task instance worked on which system ------------------------------------------------------


@dataclass
class Attribution:
    """(task_id, map_index) -> system; tasks every system of a group depends on; instances that must exist."""

    by_task: dict[TaskKey, str] = field(default_factory=dict)
    shared: dict[str, list[str]] = field(default_factory=dict)
    expected: set[TaskKey] = field(default_factory=set)
    # (task_id, map_index) of a batch of several systems -> their names (each judged on its own)
    batches: dict[TaskKey, list[str]] = field(default_factory=dict)


def attribution(plan: TierPlan, copy_plans: Mapping[str, Sequence[Any]]) -> Attribution:
    """Literal mappings follow the config's system order; XCom mappings follow their plan lists."""
    out = Attribution()

    def literal(task_id: str, systems: Iterable[Mapping[str, Any]]) -> None:
        for index, system in enumerate(systems):
            out.by_task[(task_id, index)] = system["name"]
            out.expected.add((task_id, index))

    for system_type in POD_TYPES + PYTHON_TYPES:
        task_id = component_task_id(system_type)
        for index, batch in enumerate(plan.batches_of(system_type)):
            out.expected.add((task_id, index))
            if len(batch) == 1:
                out.by_task[(task_id, index)] = batch[0]["name"]
            else:
                out.batches[(task_id, index)] = [s["name"] for s in batch]
    literal(COPY_S3, plan.systems_of(*S3_TYPES))
    rds = plan.systems_of("rds_snapshot")
    literal(CREATE_SNAPSHOT, rds)
    literal(RECORD_SNAPSHOT, rds)
    for index, item in enumerate(copy_plans.get(PLACE) or []):
        out.by_task[(PLACE, index)] = item["component"]
    for index, name in enumerate(copy_plans.get(COPY_SNAPSHOT) or []):
        out.by_task[(COPY_SNAPSHOT, index)] = name
    if rds:
        out.shared[PLAN_SNAPSHOT_COPIES] = [s["name"] for s in rds]
    if plan.copies:
        out.shared[PLAN_PLACEMENT] = [s["name"] for s in plan.systems]
    return out


def evaluate(
    plan: TierPlan,
    crumbs: Iterable[Mapping[str, Any]],
    copy_plans: Mapping[str, Sequence[Any]],
    failures: Iterable[Mapping[str, Any]] = (),
    results: Mapping[str, Mapping[str, Any] | None] | None = None,
    done: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """Each system's status, reason, summed task duration and task states, from the run's task
    instances (`crumbs`: task_id, map_index, state, duration of every finished instance).

    A batch instance that did not succeed fails only its systems without proof of their own success
    (`done`: Python systems the batch reported backed up; a pod's job: its result file saying ok)."""
    who = attribution(plan, copy_plans)
    finished = {(c["task_id"], int(c["map_index"])): c for c in crumbs}
    proven = set(done) | {name for name, r in (results or {}).items() if r and r.get("ok") is True}
    out: dict[str, dict[str, Any]] = {
        s["name"]: {"status": SUCCEEDED, "problems": [], "duration_seconds": 0.0, "tasks": []}
        for s in plan.systems
    }
    for key in sorted(set(who.by_task) | who.expected):
        names = who.batches.get(key) or [who.by_task[key]]
        label = f"{key[0]}[{key[1]}]"
        crumb = finished.get(key)
        for name in names:
            entry = out[name]
            if crumb is None:
                entry["problems"].append(f"{label} did not finish")
                continue
            entry["duration_seconds"] += float(crumb.get("duration") or 0.0)
            entry["tasks"].append({"task": label, "state": crumb["state"]})
            if crumb["state"] != "success" and (len(names) == 1 or name not in proven):
                entry["problems"].append(f"{label} ended {crumb['state']}")
    for task_id, names in who.shared.items():
        crumb = finished.get((task_id, -1))
        if crumb is not None and crumb["state"] != "success":
            for name in names:
                out[name]["problems"].append(f"{task_id} ended {crumb['state']}")
    recorded: dict[str, Mapping[str, Any]] = {}
    for failure in failures:  # the latest try's words win
        name = failure.get("system")
        if name in out and int(failure.get("try_number") or 0) >= int(
            recorded.get(name, {}).get("try_number") or 0
        ):
            recorded[name] = failure
    for name, entry in out.items():
        entry["duration_seconds"] = round(entry["duration_seconds"], 3)
        if not entry["problems"]:
            continue
        entry["status"] = FAILED
        result = (results or {}).get(name) or {}
        reason = (recorded.get(name) or {}).get("reason") or (
            result.get("error") if result.get("ok") is False else None
        )
        entry["reason"] = (
            f"{reason} ({'; '.join(entry['problems'])})" if reason else "; ".join(entry["problems"])
        )
    return out


# -- what S3 holds --------------------------------------------------------------------------------


def checksum_hex(value: str | None) -> str | None:
    """S3's base64 SHA-256 checksum as hex; None for a composite (multipart) or missing checksum."""
    if not value or "-" in value:
        return None
    return base64.b64decode(value).hex()


def _stream_sha256(s3: Any, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def describe_object(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """Size, SHA-256 and how it was verified, encryption and class of one stored object.

    The writer's SHA-256 (metadata) must equal S3's own checksum; an object with only one of them (or
    none) is read back and hashed, so every recorded SHA-256 was checked against the stored bytes.
    """
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    written = (head.get("Metadata") or {}).get("sha256")
    stored = checksum_hex(head.get("ChecksumSHA256"))
    problems = []
    if written and stored:
        sha, verified_by = stored, "s3-checksum"
        if written != stored:
            problems.append(f"{key}: SHA-256 {written} written but S3 holds {stored}")
    else:
        sha, verified_by = _stream_sha256(s3, bucket, key), "read-back"
        if written and written != sha:
            problems.append(f"{key}: SHA-256 {written} written but the object reads back as {sha}")
    encryption = head.get("ServerSideEncryption")
    if encryption != "aws:kms":
        problems.append(f"{key}: stored with encryption {encryption!r}, not aws:kms")
    return {
        "size_bytes": head["ContentLength"],
        "sha256": sha,
        "verified_by": verified_by,
        "etag": head.get("ETag", "").strip('"'),
        "checksum": stored,
        "encryption": {"type": encryption, "kms_key_id": head.get("SSEKMSKeyId")},
        "storage_class": head.get("StorageClass", "STANDARD"),
        "problems": problems,
    }


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]


def check_copy(
    s3: Any, location: Location, key: str, original: Mapping[str, Any], lock: tuple[str, int] | None
) -> tuple[list[str], str | None]:
    """Problems of one copy against the work object it was copied from (none: the copy is whole),
    and the KMS key S3 says it is encrypted with."""
    try:
        head = s3.head_object(Bucket=location.bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as exc:
        return [f"{location.url(key)} missing ({error_code(exc) or type(exc).__name__})"], None
    where = location.url(key)
    problems = []
    if head["ContentLength"] != original["size_bytes"]:
        problems.append(f"{where}: {head['ContentLength']} bytes, expected {original['size_bytes']}")
    stored = checksum_hex(head.get("ChecksumSHA256"))
    if stored and stored != original["sha256"]:
        problems.append(f"{where}: SHA-256 {stored}, expected {original['sha256']}")
    if not stored and head.get("ETag", "").strip('"') != original["etag"]:
        problems.append(f"{where}: ETag differs from the original")
    stored_class = head.get("StorageClass", "STANDARD")
    if stored_class != location.storage_class:
        problems.append(f"{where}: storage class {stored_class}, expected {location.storage_class}")
    if head.get("ServerSideEncryption") != "aws:kms":
        problems.append(f"{where}: not encrypted with aws:kms")
    if location.object_lock and lock:
        mode, years = lock
        until = head.get("ObjectLockRetainUntilDate")
        floor = datetime.now(UTC) + timedelta(days=365 * years - 2)
        if head.get("ObjectLockMode") != mode or until is None or until < floor:
            problems.append(
                f"{where}: Object Lock {head.get('ObjectLockMode')} until {until}, expected {mode} for {years} years"
            )
    return problems, head.get("SSEKMSKeyId")


def listing_sha256(artifacts: Sequence[Mapping[str, Any]]) -> str:
    """One SHA-256 for a multi-object system: over '<sha256>  <size>  <name>' lines, sorted by name."""
    lines = "".join(
        f"{a['sha256']}  {a['size_bytes']}  {a['name']}\n" for a in sorted(artifacts, key=lambda a: a["name"])
    )
    return hashlib.sha256(lines.encode()).hexdigest()


# -- the manifest -----------------------------------------------------------------------------------


def build_entry(
    estate: Estate,
    plan: TierPlan,
    backup: str,
    system: Mapping[str, Any],
    outcome: dict[str, Any],
    *,
    details: Mapping[str, Any] | None = None,
    clients: dict[str, Any],
) -> dict[str, Any]:
    """One system's manifest entry; its artifacts and copies are checked here (problems fail it)."""
    name = system["name"]

    def s3(region: str) -> Any:
        if region not in clients:
            clients[region] = aws_client(estate, "s3", region)
        return clients[region]

    prefix = plan.component_prefix(backup, name)
    work = s3(plan.work.region)
    problems: list[str] = []
    artifacts = []
    keys = _list_keys(work, plan.work.bucket, prefix)
    for key in keys:
        described = describe_object(work, plan.work.bucket, key)
        problems += described.pop("problems")
        artifacts.append({"name": key[len(prefix) :], **described})
    if outcome["status"] == SUCCEEDED and not artifacts and system["type"] not in S3_TYPES:
        problems.append(f"nothing was written under {plan.work.url(prefix)}")  # (an S3 source may be empty)
    final = f"{plan.final_prefix(backup)}{name}/"
    keys: dict[str, Any] = {}
    if artifacts and not plan.staged:
        keys[plan.work.bucket] = artifacts[0]["encryption"]["kms_key_id"]
    lock = (plan.lock_mode, plan.lock_years) if plan.lock_mode and plan.lock_years else None
    if outcome["status"] == SUCCEEDED and not problems:
        for location in plan.copies:
            client = s3(location.region)
            for artifact in artifacts:
                found, key_id = check_copy(client, location, final + artifact["name"], artifact, lock)
                problems += found
                keys.setdefault(location.bucket, key_id)
    status, reason = outcome["status"], outcome.get("reason")
    if problems and status == SUCCEEDED:
        status, reason = (
            FAILED,
            "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""),
        )
    single = artifacts[0]["name"] if len(artifacts) == 1 else ""
    first = artifacts[0] if artifacts else {}
    entry: dict[str, Any] = {
        "name": name,
        "type": system["type"],
        "status": status,
        "reason": reason,
        "duration_seconds": outcome["duration_seconds"],
        "location": plan.home.url(final + single),
        "locations": [loc.url(final) for loc in plan.locations],
        "storage_class": plan.home.storage_class,
        "size_bytes": sum(a["size_bytes"] for a in artifacts),
        "sha256": first.get("sha256") if single else (listing_sha256(artifacts) if artifacts else None),
        "sha256_of": "artifact" if single else "listing",
        "encryption": {"type": first.get("encryption", {}).get("type"), "kms_key_ids": keys}
        | (
            {"client_side": details["client_side_encryption"]}
            if details and "client_side_encryption" in details
            else {}
        ),
        "artifacts": [
            {k: a[k] for k in ("name", "size_bytes", "sha256", "verified_by")}
            for a in sorted(artifacts, key=lambda a: a["name"])
        ],
        "tasks": outcome["tasks"],
    }
    if details:
        entry["details"] = dict(details)
    return entry


def build_manifest(
    estate: Estate,
    plan: TierPlan,
    backup: str,
    run_id: str,
    outcomes: Mapping[str, dict[str, Any]],
    *,
    details: Mapping[str, Mapping[str, Any]] | None = None,
    retention: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    clients = {loc.region: aws_client(estate, "s3", loc.region) for loc in (plan.work, *plan.locations)}

    def entry(system: Mapping[str, Any]) -> dict[str, Any]:
        return build_entry(
            estate,
            plan,
            backup,
            system,
            outcomes[system["name"]],
            details=(details or {}).get(system["name"]),
            clients=clients,
        )

    # each entry is a few S3 reads (list, head per artifact and copy): side by side, in config order
    with ThreadPoolExecutor(max_workers=BATCH_WORKERS) as pool:
        components = list(pool.map(entry, plan.systems))
    failed = {c["name"]: c["reason"] for c in components if c["status"] != SUCCEEDED}
    now = datetime.now(UTC)
    return {
        "format": MANIFEST_FORMAT,
        "backup_id": backup,
        "tier": plan.key,
        "dag_id": plan.dag_id,
        "run_id": run_id,
        "organization": estate.name,
        "created_at": now.isoformat(timespec="seconds"),
        "rpo_minutes": plan.rpo_minutes,
        "retention_days": plan.retention_days,
        "expires_after": (now + timedelta(days=plan.retention_days)).date().isoformat(),
        "status": "complete" if not failed else "partial",
        "locations": [loc.describe() | {"prefix": plan.final_prefix(backup)} for loc in plan.locations],
        "work": {
            "location": plan.work.url(plan.work_prefix(backup)),
            "expires": "1 day" if plan.staged else None,
        },
        "object_lock": {"mode": plan.lock_mode, "years": plan.lock_years} if plan.lock_mode else None,
        "components": components,
        "summary": {
            "components": len(components),
            "succeeded": len(components) - len(failed),
            "failed": failed,
            "size_bytes": sum(c["size_bytes"] for c in components),
        },
        "retention": retention,
    }


def write_manifest(
    estate: Estate, plan: TierPlan, backup: str, manifest: Mapping[str, Any]
) -> dict[str, Any]:
    """Put the manifest in every location (SSE-KMS, STANDARD so verification reads it at once, under
    the location's Object Lock when it has one); returns where and its SHA-256."""
    body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(body).hexdigest()
    written = []
    for location, key in plan.manifest_keys(backup):
        extra: dict[str, Any] = {}
        if location.object_lock and plan.lock_mode and plan.lock_years:
            extra = {
                "ObjectLockMode": plan.lock_mode,
                "ObjectLockRetainUntilDate": datetime.fromisoformat(retain_until(plan.lock_years)),
            }
        aws_client(estate, "s3", location.region).put_object(
            Bucket=location.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=location.kms_key_alias,
            StorageClass="STANDARD",
            ChecksumAlgorithm="SHA256",
            Metadata={"sha256": digest, "backup-id": backup, "status": manifest["status"]},
            **extra,
        )
        written.append(location.url(key))
    log.info("manifest %s (%s) written to %s", backup, manifest["status"], ", ".join(written))
    return {"manifests": written, "sha256": digest, "size_bytes": len(body)}
