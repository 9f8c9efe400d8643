"""Locations (`s3://bucket/key` or a local path): upload, download, hashing, small JSON documents.

boto3 is imported lazily and configured only from the standard environment (AWS_ENDPOINT_URL,
AWS_DEFAULT_REGION, credentials), so the same code runs in a pod with IRSA and against the sandbox.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dr_toolbox.errors import ToolboxError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger("dr_toolbox")

CHUNK = 1024 * 1024
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
)


@dataclass(frozen=True)
class Location:
    """Where an artifact lives; `bucket` is None for a local path."""

    raw: str
    bucket: str | None = None
    key: str | None = None
    path: str | None = None

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def with_suffix(self, suffix: str) -> Location:
        return parse_location(self.raw + suffix, "location")

    def __str__(self) -> str:
        return self.raw


def parse_location(value: str, argument: str) -> Location:
    """Parse `s3://bucket/key` or a local path; `argument` names the CLI flag for error messages."""
    if not value or not value.strip():
        raise UsageError(argument, "must not be empty")
    if value.startswith("s3://"):
        rest = value[len("s3://") :]
        bucket, _, key = rest.partition("/")
        if not _BUCKET_RE.match(bucket):
            raise UsageError(argument, f"invalid S3 bucket name {bucket!r} in {value!r}")
        if not key or key.endswith("/"):
            raise UsageError(argument, f"S3 location {value!r} must name an object key, not a bucket/prefix")
        return Location(raw=value, bucket=bucket, key=key)
    if "://" in value:
        raise UsageError(argument, f"unsupported scheme in {value!r}: use s3://bucket/key or a local path")
    return Location(raw=value, path=os.path.abspath(value))


def s3_client() -> Any:
    """An S3 client from the standard environment, with retries suited to long-running pods."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def sha256_file(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _aws_error(exc: Exception, action: str, loc: Location) -> ToolboxError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    if code in ("404", "NoSuchKey", "NotFound"):
        return ToolboxError(f"{action} {loc}: object not found")
    if code in ("NoSuchBucket",):
        return ToolboxError(f"{action} {loc}: bucket {loc.bucket} does not exist")
    if code in ("403", "AccessDenied"):
        return ToolboxError(f"{action} {loc}: access denied")
    return ToolboxError(f"{action} {loc}: {type(exc).__name__}: {exc}")


def encryption_args(kms_key_id: str | None, *, require_kms: bool = False) -> dict[str, str]:
    """Server-side encryption for every object the toolbox writes: KMS when a key is given (or
    required), else SSE-S3 (AES256). Nothing is ever written to S3 unencrypted."""
    if kms_key_id:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
    if require_kms:
        return {"ServerSideEncryption": "aws:kms"}
    return {"ServerSideEncryption": "AES256"}


def describe_encryption(args: dict[str, str], loc: Location) -> dict[str, Any]:
    if not loc.is_s3:
        return {"type": "none", "reason": "local path"}
    out: dict[str, Any] = {"type": args["ServerSideEncryption"]}
    if "SSEKMSKeyId" in args:
        out["kms_key_id"] = args["SSEKMSKeyId"]
    return out


def upload_file(
    src: str,
    loc: Location,
    *,
    encryption: dict[str, str],
    storage_class: str | None = None,
    metadata: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    content_type: str = "application/octet-stream",
) -> dict[str, Any]:
    """Copy a local file to `loc`; for S3 returns the head_object of what was stored."""
    if not loc.is_s3:
        assert loc.path is not None
        os.makedirs(os.path.dirname(loc.path) or ".", exist_ok=True)
        tmp = f"{loc.path}.partial"
        shutil.copyfile(src, tmp)
        os.replace(tmp, loc.path)  # atomic: a reader never sees a half-written artifact
        return {}
    from urllib.parse import urlencode

    from botocore.exceptions import BotoCoreError, ClientError

    extra: dict[str, Any] = {
        **encryption,
        "ChecksumAlgorithm": "SHA256",
        "ContentType": content_type,
        "Metadata": metadata or {},
    }
    if storage_class:
        extra["StorageClass"] = storage_class
    if tags:
        extra["Tagging"] = urlencode(tags)
    client = s3_client()
    try:
        client.upload_file(src, loc.bucket, loc.key, ExtraArgs=extra)
        head = client.head_object(Bucket=loc.bucket, Key=loc.key)
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(exc, "upload to", loc) from exc
    stored = head.get("ServerSideEncryption")
    if stored != encryption["ServerSideEncryption"]:
        raise ToolboxError(
            f"upload to {loc}: object stored with encryption {stored!r}, expected "
            f"{encryption['ServerSideEncryption']!r}"
        )
    return head


def upload_bytes(payload: bytes, loc: Location, **kwargs: Any) -> str:
    """upload_file() for an in-memory payload, with its SHA-256 in the object's metadata; returns it."""
    sha = hashlib.sha256(payload).hexdigest()
    metadata = {"sha256": sha, **(kwargs.pop("metadata", None) or {})}
    workdir = tempfile.mkdtemp(prefix="dr-upload-")
    try:
        path = os.path.join(workdir, "payload")
        with open(path, "wb") as fh:
            fh.write(payload)
        upload_file(path, loc, metadata=metadata, **kwargs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return sha


def put_json(doc: Any, loc: Location, *, encryption: dict[str, str]) -> None:
    data = json.dumps(doc, indent=2, sort_keys=True).encode()
    if not loc.is_s3:
        assert loc.path is not None
        os.makedirs(os.path.dirname(loc.path) or ".", exist_ok=True)
        tmp = f"{loc.path}.partial"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, loc.path)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client().put_object(
            Bucket=loc.bucket,
            Key=loc.key,
            Body=data,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            **encryption,
        )
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(exc, "upload to", loc) from exc


def read_json(loc: Location) -> Any:
    try:
        if not loc.is_s3:
            assert loc.path is not None
            if not os.path.exists(loc.path):
                raise ToolboxError(f"read {loc}: file not found")
            with open(loc.path, "rb") as fh:
                data = fh.read()
        else:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                data = s3_client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
            except (BotoCoreError, ClientError) as exc:
                raise _aws_error(exc, "read", loc) from exc
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise ToolboxError(f"read {loc}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def head(loc: Location) -> dict[str, Any]:
    """Object metadata (S3) or a stat-like dict (local); raises a clear error when absent."""
    if not loc.is_s3:
        assert loc.path is not None
        if not os.path.isfile(loc.path):
            raise ToolboxError(f"read {loc}: file not found")
        return {"ContentLength": os.path.getsize(loc.path), "Metadata": {}}
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return s3_client().head_object(Bucket=loc.bucket, Key=loc.key)
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(exc, "read", loc) from exc


def download(loc: Location, dest: str) -> tuple[str, int]:
    """Fetch `loc` into `dest`, returning (sha256, size) of the bytes actually received."""
    if not loc.is_s3:
        head(loc)
        assert loc.path is not None
        shutil.copyfile(loc.path, dest)
        return sha256_file(dest)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client().download_file(loc.bucket, loc.key, dest)
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(exc, "download", loc) from exc
    return sha256_file(dest)


def iter_bytes(loc: Location) -> Iterator[bytes]:
    """Stream an object without a temp file (checksum of large objects in a small pod)."""
    if not loc.is_s3:
        head(loc)
        assert loc.path is not None
        with open(loc.path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
        return
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = s3_client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        yield from body.iter_chunks(CHUNK)
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(exc, "read", loc) from exc


def sha256_location(loc: Location) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    for chunk in iter_bytes(loc):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size
