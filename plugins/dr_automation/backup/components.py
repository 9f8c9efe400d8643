"""The system types backed up by a Python task: transaction-log evidence, user sessions, secrets,
monitoring data and machine images. Each writes its artifacts under the system's component prefix
in the tier's work location (SSE-KMS with the region's key, SHA-256 recorded in the object's metadata
and as S3's own checksum) and returns what it wrote.

Values of sessions and secrets are never decoded, printed or logged: sessions are copied as Redis
DUMP payloads, secrets are sealed with a KMS data key (AES-256-GCM) before they leave the task, on
top of SSE-KMS at rest. Only counts and ids reach the log.

A failure is recorded (XCom ``backup_outcome``: system and reason) before it is raised, so the manifest
can name the failed system and say why; errors that a retry cannot fix (missing bucket, access denied,
nothing to back up) fail the task at once instead of burning the tier's retries.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dr_automation.backup.plan import Location, TierPlan, backup_id

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

OUTCOME_KEY = "backup_outcome"
ENVELOPE_FORMAT = "dr-backup/kms-envelope/v1"
SESSIONS_FORMAT = "dr-backup/redis-dump/v1"
METRICS_FORMAT = "dr-backup/cloudwatch/v1"
# Client errors a retry cannot fix: fail the component at once.
PERMANENT_ERROR_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBSnapshotNotFound",
        "InvalidObjectState",
        "NoSuchBucket",
        "NoSuchKey",
        "NotFoundException",
        "ResourceNotFoundException",
        "UnrecognizedClientException",
    }
)


class BackupError(RuntimeError):
    """A system cannot be backed up as configured; the message names the system and the reason."""


# -- AWS and S3 -------------------------------------------------------------------------------------


def aws_client(estate: Estate, service: str, region: str) -> Any:
    """A boto3 client through the estate's AWS connection (endpoint, credentials, retries from it);
    one per connection, service and region in a process (clients are thread-safe, and building one
    costs more than most backup calls)."""
    with _CLIENTS_LOCK:  # a batch's threads ask at once: build each client once
        return _client(estate.connections["aws"], service, region)


_CLIENTS_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _client(conn_id: str, service: str, region: str) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region).conn


def forget_clients() -> None:
    """Drop the cached clients (their connection or credentials changed, e.g. between test fixtures)."""
    _client.cache_clear()


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def delete_versions(client: Any, bucket: str, prefix: str) -> int:
    """Delete every version and delete marker under `prefix` (the buckets are versioned)."""
    deleted = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        versions = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if versions:
            client.delete_objects(Bucket=bucket, Delete={"Objects": versions, "Quiet": True})
            deleted += len(versions)
    return deleted


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, BackupError) or error_code(exc) in PERMANENT_ERROR_CODES


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_artifact(
    estate: Estate,
    location: Location,
    key: str,
    body: bytes,
    *,
    content_type: str = "application/json",
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write one artifact: SSE-KMS with the location's key, its storage class, SHA-256 recorded twice
    (metadata `sha256` as the writer computed it, and S3's checksum as S3 received it)."""
    digest = sha256_hex(body)
    aws_client(estate, "s3", location.region).put_object(
        Bucket=location.bucket,
        Key=key,
        Body=body,
        ContentType=content_type,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=location.kms_key_alias,
        StorageClass=location.storage_class,
        ChecksumAlgorithm="SHA256",
        Metadata={"sha256": digest, **(metadata or {})},
    )
    return {"key": key, "size_bytes": len(body), "sha256": digest}


def put_document(
    estate: Estate,
    plan: TierPlan,
    backup: str,
    system: str,
    filename: str,
    data: bytes,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A system's document in the work location, gzip-compressed (`<filename>.gz`) when the tier says
    so (reproducibly: no timestamp in the gzip header)."""
    content_type = "application/json"
    if estate.tiers[plan.key].compression:
        data, filename, content_type = gzip.compress(data, mtime=0), f"{filename}.gz", "application/gzip"
    key = plan.component_prefix(backup, system) + filename
    return put_artifact(estate, plan.work, key, data, content_type=content_type, metadata=metadata)


# -- transaction logs (RDS point-in-time recovery evidence + the real WAL position) ----------------


def backup_postgres_wal(
    estate: Estate, plan: TierPlan, system: Mapping[str, Any], backup: str
) -> dict[str, Any]:
    """RDS ships the instance's transaction logs every five minutes; prove the latest restorable time
    is within the tier's RPO, and record the live WAL position of the database beside it."""
    database = estate.databases[system["database"]]
    instance_id = database["rds_instance_id"]
    rds = aws_client(estate, "rds", database["region"])
    found = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"]
    if not found:
        raise BackupError(f"{system['name']}: RDS instance {instance_id} not found in {database['region']}")
    instance = found[0]
    now = datetime.now(UTC)
    latest = instance.get("LatestRestorableTime")
    retention = int(instance.get("BackupRetentionPeriod") or 0)
    evidence: dict[str, Any] = {
        "system": system["name"],
        "rds_instance_id": instance_id,
        "region": database["region"],
        "status": instance.get("DBInstanceStatus"),
        "backup_retention_days": retention,
        "latest_restorable_time": latest.isoformat() if latest else None,
        "checked_at": now.isoformat(timespec="seconds"),
        "rpo_minutes": plan.rpo_minutes,
    }
    problems = []
    if retention < 1:
        problems.append(
            "automated backups are off (BackupRetentionPeriod 0), so no transaction logs are kept"
        )
    if latest is None:
        problems.append("RDS reports no LatestRestorableTime")
    else:
        lag = (now - latest).total_seconds()
        evidence["restore_lag_seconds"] = round(lag, 1)
        if lag > plan.rpo_minutes * 60:
            problems.append(
                f"the latest restorable time is {lag / 60:.1f} min old, beyond the {plan.rpo_minutes} min RPO"
            )
    if system["database"] == "primary":  # connections.primary_database reaches the primary's PostgreSQL
        evidence["wal"] = _wal_position(estate)
    artifact = put_artifact(
        estate,
        plan.work,
        plan.component_prefix(backup, system["name"]) + "pitr-evidence.json",
        json.dumps(evidence, indent=2, sort_keys=True).encode(),
    )
    if problems:
        raise BackupError(f"{system['name']}: {'; '.join(problems)}")
    return {"artifacts": [artifact], "latest_restorable_time": evidence["latest_restorable_time"]}


def _wal_position(estate: Estate) -> dict[str, Any]:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=estate.connections["primary_database"])
    row = hook.get_first(
        "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
        "ELSE pg_current_wal_lsn() END::text, now(), current_setting('wal_level')"
    )
    in_recovery, lsn, at, wal_level = row
    wal: dict[str, Any] = {
        "lsn": lsn,
        "in_recovery": in_recovery,
        "at": at.isoformat(),
        "wal_level": wal_level,
    }
    if not in_recovery:
        wal["segment"] = hook.get_first("SELECT pg_walfile_name(pg_current_wal_lsn())")[0]
    return wal


# -- user sessions (Redis) --------------------------------------------------------------------------


def backup_redis_sessions(
    estate: Estate, plan: TierPlan, system: Mapping[str, Any], backup: str
) -> dict[str, Any]:
    """Every session key of the region's store, as DUMP payloads with their remaining TTL (restorable
    with RESTORE; the payloads are opaque bytes here, never decoded)."""
    from dr_automation.target_region import session_prefix, session_store

    region = estate.region_with_role(system["region"]).name
    prefix = session_prefix(estate, region)
    batch = int(estate.raw["sessions"]["batch_size"])
    client = session_store(estate, region)
    lines = [json.dumps({"format": SESSIONS_FORMAT, "region": region, "key_prefix": prefix})]
    keys = expired = 0
    pending: list[bytes] = []

    def flush() -> None:
        nonlocal keys, expired
        pipe = client.pipeline(transaction=False)
        for key in pending:
            pipe.dump(key)
            pipe.pttl(key)
        answers = pipe.execute()
        for i, key in enumerate(pending):
            payload, ttl = answers[2 * i], answers[2 * i + 1]
            if payload is None or ttl == -2:  # expired between SCAN and DUMP
                expired += 1
                continue
            record = {
                "key": base64.b64encode(bytes(key)).decode(),
                "pttl": ttl,
                "dump": base64.b64encode(payload).decode(),
            }
            lines.append(json.dumps(record, sort_keys=True))
            keys += 1
        pending.clear()

    for key in client.scan_iter(match=f"{prefix}*", count=batch):
        pending.append(key)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    artifact = put_document(
        estate,
        plan,
        backup,
        system["name"],
        "sessions.jsonl",
        ("\n".join(lines) + "\n").encode(),
        {"keys": str(keys), "region": region},
    )
    log.info(
        "%s: %d session keys of %s backed up (%d expired meanwhile)", system["name"], keys, region, expired
    )
    return {"artifacts": [artifact], "keys": keys, "region": region}


# -- critical configuration and secrets (Secrets Manager) -------------------------------------------


def seal(estate: Estate, region: str, key_alias: str, plaintext: bytes, aad: str) -> dict[str, Any]:
    """Envelope encryption: a fresh KMS data key encrypts the payload (AES-256-GCM); only the
    KMS-encrypted data key is kept, so reading the backup needs kms:Decrypt, not just s3:GetObject."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data_key = aws_client(estate, "kms", region).generate_data_key(KeyId=key_alias, KeySpec="AES_256")
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key["Plaintext"]).encrypt(nonce, plaintext, aad.encode())
    del data_key["Plaintext"]
    return {
        "format": ENVELOPE_FORMAT,
        "algorithm": "AES-256-GCM",
        "kms_key_id": data_key["KeyId"],
        "region": region,
        "encrypted_data_key": base64.b64encode(data_key["CiphertextBlob"]).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "aad": aad,
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }


def unseal(estate: Estate, envelope: Mapping[str, Any]) -> bytes:
    """The payload of a sealed backup (restores and tests)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if envelope.get("format") != ENVELOPE_FORMAT:
        raise BackupError(f"format: expected {ENVELOPE_FORMAT!r}, got {envelope.get('format')!r}")
    kms = aws_client(estate, "kms", envelope["region"])
    key = kms.decrypt(CiphertextBlob=base64.b64decode(envelope["encrypted_data_key"]))["Plaintext"]
    return AESGCM(key).decrypt(
        base64.b64decode(envelope["nonce"]),
        base64.b64decode(envelope["ciphertext"]),
        envelope["aad"].encode(),
    )


def backup_secrets(estate: Estate, plan: TierPlan, system: Mapping[str, Any], backup: str) -> dict[str, Any]:
    region = plan.work.region
    client = aws_client(estate, "secretsmanager", region)
    payload: dict[str, Any] = {}
    for secret_id in system["secret_ids"]:
        value = client.get_secret_value(SecretId=secret_id)
        entry = {"arn": value["ARN"], "version_id": value["VersionId"]}
        if "SecretString" in value:
            entry["secret_string"] = value["SecretString"]
        else:
            entry["secret_binary"] = base64.b64encode(value["SecretBinary"]).decode()
        payload[secret_id] = entry
    name = system["name"]
    aad = f"{plan.key}/{backup}/{name}"
    envelope = seal(
        estate, region, plan.work.kms_key_alias, json.dumps(payload, sort_keys=True).encode(), aad
    )
    envelope["secret_ids"] = list(system["secret_ids"])
    artifact = put_artifact(
        estate,
        plan.work,
        plan.component_prefix(backup, name) + "secrets.sealed.json",
        json.dumps(envelope, sort_keys=True).encode(),
        metadata={"secrets": str(len(payload)), "client-side-encryption": "AES-256-GCM/kms-data-key"},
    )
    log.info("%s: %d secrets sealed with a KMS data key", name, len(payload))
    return {"artifacts": [artifact], "secrets": len(payload), "client_side_encryption": "AES-256-GCM"}


# -- monitoring data (CloudWatch metrics) -----------------------------------------------------------


def backup_cloudwatch_metrics(
    estate: Estate, plan: TierPlan, system: Mapping[str, Any], backup: str
) -> dict[str, Any]:
    """Every metric of the namespace in every region, over twice the RPO (consecutive backups overlap,
    so a late run leaves no gap), one-minute averages."""
    namespace = system["namespace"]
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=max(2 * plan.rpo_minutes, 10))
    doc: dict[str, Any] = {
        "format": METRICS_FORMAT,
        "namespace": namespace,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "period_seconds": 60,
        "regions": {},
    }
    points = 0
    for region in estate.regions:
        cloudwatch = aws_client(estate, "cloudwatch", region)
        metrics = [
            m
            for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace)
            for m in page["Metrics"]
        ]
        series = []
        for offset in range(0, len(metrics), 500):  # GetMetricData takes at most 500 queries
            chunk = metrics[offset : offset + 500]
            queries = [
                {
                    "Id": f"m{i}",
                    "MetricStat": {"Metric": m, "Period": 60, "Stat": "Average"},
                    "ReturnData": True,
                }
                for i, m in enumerate(chunk)
            ]
            answers = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
            by_id = {r["Id"]: r for r in answers["MetricDataResults"]}
            for i, metric in enumerate(chunk):
                result = by_id.get(f"m{i}", {})
                values = result.get("Values", [])
                points += len(values)
                series.append(
                    {
                        "metric": metric["MetricName"],
                        "dimensions": metric.get("Dimensions", []),
                        "timestamps": [t.isoformat() for t in result.get("Timestamps", [])],
                        "values": values,
                    }
                )
        doc["regions"][region] = series
    artifact = put_document(
        estate,
        plan,
        backup,
        system["name"],
        "metrics.json",
        json.dumps(doc, sort_keys=True).encode(),
        {"datapoints": str(points)},
    )
    return {
        "artifacts": [artifact],
        "series": sum(len(s) for s in doc["regions"].values()),
        "datapoints": points,
    }


# -- machine images (AMIs) ---------------------------------------------------------------------------

_IMAGE_FIELDS = (
    "ImageId",
    "Name",
    "Description",
    "Architecture",
    "RootDeviceName",
    "RootDeviceType",
    "VirtualizationType",
    "BlockDeviceMappings",
    "CreationDate",
    "Tags",
)


def backup_machine_images(
    estate: Estate, plan: TierPlan, system: Mapping[str, Any], backup: str
) -> dict[str, Any]:
    """The images tagged `tag` in the primary region: each copied to the DR region (once, found again
    by tag) and its definition archived, so an instance can be rebuilt in either region."""
    tag = system["tag"]
    primary, dr = estate.primary_region.name, estate.dr_region.name
    source = aws_client(estate, "ec2", primary)
    images = source.describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [tag]}])["Images"]
    if not images:
        raise BackupError(f"{system['name']}: no machine image tagged {tag!r} in {primary}")
    target = aws_client(estate, "ec2", dr)
    records = []
    for image in sorted(images, key=lambda i: i["ImageId"]):
        copies = target.describe_images(
            Owners=["self"], Filters=[{"Name": "tag:dr-source-image-id", "Values": [image["ImageId"]]}]
        )["Images"]
        if copies:
            copy_id = copies[0]["ImageId"]
        else:
            copy_id = target.copy_image(
                SourceImageId=image["ImageId"],
                SourceRegion=primary,
                Name=f"{image.get('Name', image['ImageId'])}-dr",
                Encrypted=True,
                KmsKeyId=estate.dr_region.kms_key_alias,
            )["ImageId"]
            target.create_tags(
                Resources=[copy_id],
                Tags=[{"Key": "dr-source-image-id", "Value": image["ImageId"]}, *image.get("Tags", [])],
            )
        records.append(
            {
                **{k: image[k] for k in _IMAGE_FIELDS if k in image},
                "dr_copy": {"region": dr, "image_id": copy_id},
            }
        )
    doc = {"tag": tag, "region": primary, "images": records}
    artifact = put_document(
        estate,
        plan,
        backup,
        system["name"],
        "images.json",
        json.dumps(doc, sort_keys=True, default=str).encode(),
        {"images": str(len(records))},
    )
    return {
        "artifacts": [artifact],
        "images": [r["ImageId"] for r in records],
        "dr_copies": [r["dr_copy"]["image_id"] for r in records],
    }


PYTHON_COMPONENTS: dict[str, Callable[[Estate, TierPlan, Mapping[str, Any], str], dict[str, Any]]] = {
    "postgres_wal": backup_postgres_wal,
    "redis_sessions": backup_redis_sessions,
    "secrets": backup_secrets,
    "cloudwatch_metrics": backup_cloudwatch_metrics,
    "machine_images": backup_machine_images,
}


# -- running a component inside a task ---------------------------------------------------------------


def record_failure(context: Mapping[str, Any], system: str, exc: BaseException) -> str:
    """Keep why `system` failed where the manifest reads it; returns the (redacted, bounded) reason."""
    from dr_automation.notifications.callbacks import describe_error

    reason = describe_error(exc)
    ti = context.get("ti")
    if ti is not None:
        ti.xcom_push(key=OUTCOME_KEY, value={"system": system, "reason": reason, "try_number": ti.try_number})
    return reason


def raise_for(exc: BaseException, reason: str) -> None:
    """Re-raise: at once and for good when a retry cannot help, else for the tier's retries."""
    if is_permanent(exc):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(reason) from exc
    raise exc


def label_instance(context: dict[str, Any], system: str) -> None:
    """Show the system's name instead of a bare map index (the tasks' map_index_template reads it)."""
    from airflow.sdk import get_current_context

    try:
        get_current_context()["dr_system"] = system  # the context the runner renders the label from
    except RuntimeError:  # called outside a running task (unit tests)
        pass
    context["dr_system"] = system


def run_component(
    estate: Estate,
    plan: TierPlan,
    system: Mapping[str, Any],
    context: dict[str, Any],
    step: Callable[[Estate, TierPlan, Mapping[str, Any], str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Back up one system with `step` (default: its type's Python component); the system's name
    becomes the mapped task's label in the UI, and a failure is recorded before it is raised."""
    name = system["name"]
    label_instance(context, name)
    backup = backup_id(context["run_id"])
    started = time.monotonic()
    try:
        details = (step or PYTHON_COMPONENTS[system["type"]])(estate, plan, system, backup)
    except Exception as exc:
        reason = record_failure(context, name, exc)
        log.error("%s (%s) failed: %s", name, system["type"], reason)
        raise_for(exc, reason)
        raise  # pragma: no cover - raise_for always raises
    return {
        **details,
        "system": name,
        "type": system["type"],
        "seconds": round(time.monotonic() - started, 3),
    }


class BatchIncomplete(RuntimeError):
    """Some systems of a batch failed (named, with their reasons); the others are backed up."""


def run_batch(
    estate: Estate,
    plan: TierPlan,
    systems: list[Mapping[str, Any]],
    context: dict[str, Any],
    *,
    workers: int | None = None,
) -> dict[str, Any]:
    """Back up a batch of systems side by side (a bounded thread pool: the work is network waits),
    one task instance for all of them. Every system is tried whatever its siblings do; what failed
    is recorded by name (XCom ``backup_outcome``: ``failures`` and the ``done`` systems) before the
    task fails, at once when no failure is worth a retry, else for the tier's retries."""
    from concurrent.futures import ThreadPoolExecutor

    from dr_automation.backup.plan import BATCH_WORKERS, batch_label
    from dr_automation.notifications.callbacks import describe_error

    names = [s["name"] for s in systems]
    label = batch_label(names)
    label_instance(context, label)
    backup = backup_id(context["run_id"])

    def one(system: Mapping[str, Any]) -> tuple[dict[str, Any] | None, BaseException | None]:
        started = time.monotonic()
        try:
            details = PYTHON_COMPONENTS[system["type"]](estate, plan, system, backup)
        except Exception as exc:
            return None, exc
        elapsed = round(time.monotonic() - started, 3)
        return {**details, "system": system["name"], "type": system["type"], "seconds": elapsed}, None

    with ThreadPoolExecutor(max_workers=max(1, min(workers or BATCH_WORKERS, len(systems)))) as pool:
        answers = list(pool.map(one, systems))
    ti = context.get("ti")
    try_number = getattr(ti, "try_number", None)
    done = [details for details, _ in answers if details is not None]
    failed: list[tuple[str, BaseException]] = [
        (s["name"], exc) for s, (_, exc) in zip(systems, answers, strict=True) if exc is not None
    ]
    failures = []
    for name, exc in failed:
        reason = describe_error(exc)
        failures.append({"system": name, "reason": reason, "try_number": try_number})
        log.error("%s failed: %s", name, reason)
    if ti is not None:
        outcome = {"batch": label, "done": [d["system"] for d in done], "failures": failures}
        ti.xcom_push(key=OUTCOME_KEY, value=outcome)
    log.info("batch %s: %d of %d systems backed up", label, len(done), len(systems))
    if failed:
        message = f"{len(failed)} of {len(systems)} systems failed: " + "; ".join(
            f"{f['system']} ({f['reason']})" for f in failures
        )
        if all(is_permanent(exc) for _, exc in failed):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(message)
        raise BatchIncomplete(message)
    return {"batch": label, "systems": done}
