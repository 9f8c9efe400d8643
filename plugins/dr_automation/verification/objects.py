"""Checks on what S3 holds: the manifest is the one the backup run wrote, and every artifact of every
entry exists in every location, is available, is encrypted with SSE-KMS (the location's key) and
its SHA-256, recomputed from the bytes, is the one the manifest records.

Each check is a plain dict ``{"check", "target", "ok", "reason"}``; a failing check's reason says
exactly what differs (and, for a checksum, whether the object changed after it was written or the
manifest records the wrong value), so the record and the alert can quote it as is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from dr_automation.backup.components import error_code
from dr_automation.backup.manifest import MANIFEST_FORMAT, checksum_hex, listing_sha256

ARCHIVED = frozenset({"GLACIER", "DEEP_ARCHIVE"})
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
CHUNK = 1024 * 1024


def check(name: str, target: str, ok: bool, reason: str | None = None, **detail: Any) -> dict[str, Any]:
    return {"check": name, "target": target, "ok": ok, "reason": None if ok else reason, **detail}


def split_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket/key URL")
    return parts.netloc, parts.path.lstrip("/")


def _restored(head: Mapping[str, Any]) -> bool:
    return 'ongoing-request="false"' in (head.get("Restore") or "")


def make_readable(s3: Any, bucket: str, key: str, head: Mapping[str, Any]) -> tuple[bool, Mapping[str, Any]]:
    """An archived object is restored for a day before it can be read (a restore test reads it, as a
    restore would). Returns (readable, head); the emulator restores at once, AWS takes hours."""
    if head.get("StorageClass") not in ARCHIVED or _restored(head):
        return True, head
    if "ongoing-request" not in (head.get("Restore") or ""):
        s3.restore_object(
            Bucket=bucket, Key=key, RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Standard"}}
        )
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return _restored(head), head


def stream_sha256(s3: Any, bucket: str, key: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def check_artifact(
    s3: Any, bucket: str, key: str, artifact: Mapping[str, Any], *, kms_key_id: str | None
) -> list[dict[str, Any]]:
    """exists, available, encrypted, size, checksum of one stored copy of an artifact."""
    where = f"s3://{bucket}/{key}"
    try:
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as exc:
        code = error_code(exc)
        if code in MISSING_CODES:
            return [check("exists", where, False, f"{where} is missing ({code})")]
        return [check("exists", where, False, f"{where} cannot be read ({code or type(exc).__name__})")]
    out = [check("exists", where, True)]
    readable, head = make_readable(s3, bucket, key, head)
    storage = head.get("StorageClass", "STANDARD")
    out.append(
        check(
            "available",
            where,
            readable,
            f"{where} is archived in {storage} and its restore has not completed yet",
            storage_class=storage,
        )
    )
    sse, key_id = head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")
    if sse != "aws:kms":
        reason = f"{where} is not encrypted with SSE-KMS (ServerSideEncryption={sse or 'none'})"
    elif kms_key_id and key_id != kms_key_id:
        reason = f"{where} is encrypted with KMS key {key_id}, the manifest records {kms_key_id}"
    else:
        reason = None
    out.append(check("encrypted", where, reason is None, reason, kms_key_id=key_id))
    size, recorded = head["ContentLength"], artifact["size_bytes"]
    out.append(
        check("size", where, size == recorded, f"{where} is {size} bytes, the manifest records {recorded}")
    )
    written = (head.get("Metadata") or {}).get("sha256")
    stored = checksum_hex(head.get("ChecksumSHA256"))
    if readable:
        actual, verified_by = stream_sha256(s3, bucket, key)[0], "recomputed"
    else:  # an archive still being restored: S3's own full-object SHA-256, read without the bytes
        actual, verified_by = stored, "s3-checksum"
    want = artifact["sha256"]
    if actual is None:
        reason = f"{where}: no readable bytes and no S3 checksum to compare with the manifest's {want}"
    elif actual == want:
        reason = None
    elif written == actual or (written is None and stored == actual):
        reason = (
            f"{where}: the manifest records SHA-256 {want} but the object hashes to {actual}, as its writer "
            "recorded: the manifest's checksum is wrong"
        )
    else:
        reason = (
            f"{where}: SHA-256 {actual} recomputed, the manifest records {want}"
            + (f" (its writer recorded {written})" if written else "")
            + ": the object changed after it was written"
        )
    out.append(check("checksum", where, reason is None, reason, sha256=actual, verified_by=verified_by))
    return out


def read_manifest(
    s3: Any, bucket: str, key: str, *, expected_sha256: str | None = None
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The manifest and the check that it is the one the backup run wrote: its bytes hash to the
    SHA-256 the run recorded (object metadata, and the asset event's when there is one)."""
    where = f"s3://{bucket}/{key}"
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        code = error_code(exc)
        return None, check("manifest", where, False, f"manifest {where} cannot be read ({code or exc})")
    body = obj["Body"].read()
    actual = hashlib.sha256(body).hexdigest()
    written = (obj.get("Metadata") or {}).get("sha256")
    problems = []
    if written and written != actual:
        problems.append(f"hashes to {actual}, the backup run recorded {written}")
    if expected_sha256 and expected_sha256 != actual:
        problems.append(f"hashes to {actual}, the asset event carries {expected_sha256}")
    try:
        manifest = json.loads(body)
    except ValueError as exc:
        return None, check("manifest", where, False, f"manifest {where} is not JSON ({exc})")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        problems.append(f"format {got!r}, expected {MANIFEST_FORMAT!r}")
    reason = f"manifest {where} " + "; ".join(problems) if problems else None
    return (manifest if isinstance(manifest, dict) else None), check(
        "manifest", where, not problems, reason, sha256=actual
    )


def check_entry_summary(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's own SHA-256 and size agree with its artifacts (a hand-edited entry does not)."""
    artifacts = entry.get("artifacts") or []
    target = entry["name"]
    if not artifacts:
        return check("summary", target, False, f"{target}: the manifest lists no artifact")
    want = artifacts[0]["sha256"] if len(artifacts) == 1 else listing_sha256(artifacts)
    problems = []
    if entry.get("sha256") != want:
        problems.append(f"entry SHA-256 {entry.get('sha256')} does not match its artifacts ({want})")
    size = sum(a["size_bytes"] for a in artifacts)
    if entry.get("size_bytes") != size:
        problems.append(f"entry size {entry.get('size_bytes')} is not the sum of its artifacts ({size})")
    return check("summary", target, not problems, f"{target}: " + "; ".join(problems))


def check_entry_objects(
    s3_for: Any, manifest: Mapping[str, Any], entry: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Every artifact of the entry in every location it lists."""
    regions = {loc["bucket"]: loc["region"] for loc in manifest.get("locations") or []}
    key_ids = (entry.get("encryption") or {}).get("kms_key_ids") or {}
    out = [check_entry_summary(entry)]
    for prefix_url in entry.get("locations") or []:
        bucket, prefix = split_url(prefix_url)
        s3 = s3_for(regions.get(bucket) or manifest["locations"][0]["region"])
        for artifact in entry.get("artifacts") or []:
            out += check_artifact(
                s3, bucket, prefix + artifact["name"], artifact, kms_key_id=key_ids.get(bucket)
            )
    return out


def failed(checks: list[Mapping[str, Any]]) -> list[str]:
    return [c["reason"] for c in checks if not c["ok"]]
