"""Security incident drill: a credential is compromised; rotate, revoke, restore from immutable backups.

Everything it touches is the drill's own, named after (and tagged with) the drill id:
- an IAM user ``<drill id>-app`` (path ``/leanvibe-drills/<drill id>/``) with one access key, the
  "compromisable" credential, and an inline policy scoped to the drill's secret and bucket;
- a Secrets Manager secret ``<drill id>-app-secret`` holding what an application keeps there: that
  access key, a generated API token and the application's settings (never logged, never in a result);
- an Object Lock bucket ``<drill id>-backup`` (GOVERNANCE mode, short retention) holding an immutable
  backup: the settings and a generated drill dataset, with a manifest of every object's version id
  and SHA-256 (and the secret's SHA-256 at backup time).

``inject`` leaks the key (read from the secret, as an attacker with a foothold would) and acts with it:
tampers with the secret, overwrites and deletes the backup objects and tries to delete their locked
versions. Every attempt and the emulator's (or AWS's) real answer is recorded. ``recover`` detects
the tampering from observed state (secret hash against the manifest, versions the manifest does not
know), rotates the secret, revokes the key, and restores settings and data from the locked versions.
``verify`` recomputes every locked version's SHA-256 from its bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from dr_automation.drills.scenario import DrillContext, DrillError

log = logging.getLogger(__name__)

NAME = "security_incident"
LOCK_MODE = "GOVERNANCE"  # COMPLIANCE could not be removed by anyone until it expires (years)
RETENTION = dt.timedelta(days=1)  # short: cleanup removes it at once with BypassGovernanceRetention
IAM_PATH_ROOT = "/leanvibe-drills/"
DATASET_RECORDS = 50

# What the drill's own role calls (its IAM policy): "service:Action" as the API names it.
AWS_ACTIONS: tuple[str, ...] = (
    "iam:CreateUser",
    "iam:TagUser",  # permission CreateUser needs for its Tags
    "iam:PutUserPolicy",
    "iam:CreateAccessKey",
    "iam:ListAccessKeys",
    "iam:UpdateAccessKey",
    "iam:DeleteAccessKey",
    "iam:GetAccessKeyLastUsed",
    "iam:ListUsers",
    "iam:ListUserPolicies",
    "iam:DeleteUserPolicy",
    "iam:DeleteUser",
    "secretsmanager:CreateSecret",
    "secretsmanager:TagResource",  # permission CreateSecret needs for its Tags
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "secretsmanager:ListSecretVersionIds",
    "secretsmanager:ListSecrets",
    "secretsmanager:DeleteSecret",
    "s3:CreateBucket",
    "s3:PutBucketVersioning",  # permission CreateBucket needs with ObjectLockEnabledForBucket
    "s3:PutBucketTagging",
    "s3:PutObjectLockConfiguration",
    "s3:PutObject",
    "s3:PutObjectRetention",  # permission PutObject needs with ObjectLockMode/RetainUntilDate
    "s3:GetObject",
    "s3:HeadObject",
    "s3:ListObjectVersions",
    "s3:DeleteObject",  # with VersionId (s3:DeleteObjectVersion) and, in cleanup, bypassing governance
    "s3:BypassGovernanceRetention",  # permission: cleanup and the remove_backup fault
    "s3:HeadBucket",
    "s3:DeleteBucket",
    "kms:GenerateDataKey",  # permissions for the SSE-KMS backup objects
    "kms:Decrypt",
)
# What the compromised key is allowed to do (the drill user's inline policy) and what the attacker
# uses it for; the key is not the drill's role, so these calls are not in AWS_ACTIONS.
ATTACKER_ACTIONS: tuple[str, ...] = (
    "secretsmanager:GetSecretValue",
    "secretsmanager:PutSecretValue",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjects",
)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical(document: Any) -> bytes:
    """The bytes a document is stored and hashed as (stable key order)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def names(ctx: DrillContext) -> dict[str, str]:
    """Every name the drill uses, derived from the drill id alone (cleanup needs nothing else)."""
    return {
        "user": ctx.name("app"),
        "user_path": f"{IAM_PATH_ROOT}{ctx.drill_id}/",
        "policy": ctx.name("app-access"),
        "secret": ctx.name("app-secret"),
        "bucket": ctx.name("backup"),
        "backup_prefix": f"{ctx.prefix}backup/",
    }


def _error_code(exc: Exception) -> str:
    from dr_automation.backup.components import error_code

    return error_code(exc) or type(exc).__name__


def _status(exc: Exception) -> int | None:
    response = getattr(exc, "response", None) or {}
    return (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds")


def attacker_client(ctx: DrillContext, service: str, key: Mapping[str, str]) -> Any:
    """A client signing with the leaked key instead of the connection's credentials (what the
    attacker holds), on the endpoint the estate's AWS connection talks to (the emulator in the
    sandbox, AWS otherwise)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    region = ctx.estate.primary_region.name
    hook = AwsBaseHook(aws_conn_id=ctx.estate.connections["aws"], client_type=service, region_name=region)
    return hook.get_session(region_name=region).client(
        service,
        region_name=region,
        endpoint_url=hook.conn_config.endpoint_url,
        aws_access_key_id=key["aws_access_key_id"],
        aws_secret_access_key=key["aws_secret_access_key"],
        aws_session_token=None,
    )


def put_locked(
    ctx: DrillContext, s3: Any, bucket: str, key: str, body: bytes, retain_until: dt.datetime
) -> str:
    """Write one backup object under the lock (SSE-KMS with the estate's key); its version id.
    A checksum is required: S3 refuses a retention without Content-MD5 or a checksum header."""
    answer = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ChecksumAlgorithm="SHA256",
        ObjectLockMode=LOCK_MODE,
        ObjectLockRetainUntilDate=retain_until,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=ctx.estate.primary_region.kms_key_alias,
    )
    return answer["VersionId"]


def user_policy(ctx: DrillContext, secret_arn: str) -> dict[str, Any]:
    """What the application's key may do: its secret and its backup bucket, never bypass the lock."""
    bucket = names(ctx)["bucket"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AppSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                "Resource": [secret_arn],
            },
            {
                "Sid": "AppBackups",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Sid": "NeverBypassTheLock",
                "Effect": "Deny",
                "Action": ["s3:BypassGovernanceRetention", "s3:PutObjectRetention"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


def dataset(drill: str) -> dict[str, bytes]:
    """The drill's own data (never production's): settings and records, random per drill."""
    settings = {
        "service": drill,
        "webhook_url": f"https://hooks.{drill}.invalid/notify",
        "allowed_origins": [f"https://{drill}.invalid"],
        "session_ttl_seconds": 3600,
        "nonce": secrets.token_hex(8),
    }
    records = [
        {"id": i, "tenant": f"t{i % 7}", "value": secrets.token_hex(12)} for i in range(DATASET_RECORDS)
    ]
    return {"settings.json": canonical(settings), "dataset/records.json": canonical(records)}


def build_manifest(
    bucket: str, prefix: str, written: Mapping[str, Mapping[str, Any]], secret: Mapping[str, Any]
) -> dict[str, Any]:
    """What the backup was: per object its version id, size and SHA-256; the secret's hash."""
    return {
        "format": "dr-drill-immutable-backup/1",
        "bucket": bucket,
        "prefix": prefix,
        "objects": {k: dict(v) for k, v in sorted(written.items())},
        "secret": dict(secret),
    }


def missing_from_listing(manifest: Mapping[str, Any], listing: Mapping[str, Any]) -> list[str]:
    """Manifest objects whose locked version is not in a ListObjectVersions answer."""
    present = {(v["Key"], v["VersionId"]) for v in listing.get("Versions") or []}
    return [
        f"{key} (version {entry['version_id']})"
        for key, entry in manifest["objects"].items()
        if (key, entry["version_id"]) not in present
    ]


def unknown_versions(manifest: Mapping[str, Any], listing: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Versions and delete markers under the backup that the manifest does not know: tampering."""
    known = {(k, e["version_id"]) for k, e in manifest["objects"].items()}
    found = []
    for kind, items in (
        ("version", listing.get("Versions")),
        ("delete_marker", listing.get("DeleteMarkers")),
    ):
        for item in items or []:
            if (item["Key"], item["VersionId"]) not in known:
                found.append({"kind": kind, "key": item["Key"], "version_id": item["VersionId"]})
    return found


def _targets_locked_versions(attempt: Mapping[str, Any]) -> bool:
    """Whether an attacker's attempt went for a locked version (which the lock must refuse)."""
    return "?versionId=" in attempt["target"] or attempt["action"] == "s3:DeleteObjects"


def integrity(checks: Iterable[Mapping[str, Any]]) -> float:
    """Share of backup objects whose locked version verified (0 when there is nothing to check)."""
    checks = list(checks)
    return round(sum(1 for c in checks if c["ok"]) / len(checks), 4) if checks else 0.0


def _list_versions(s3: Any, bucket: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"Versions": [], "DeleteMarkers": []}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for kind in out:
            out[kind].extend(
                {"Key": v["Key"], "VersionId": v["VersionId"], "IsLatest": v.get("IsLatest")}
                for v in page.get(kind) or []
            )
    return out


def _read_version(s3: Any, bucket: str, key: str, version_id: str) -> bytes:
    """The bytes of one locked version; DrillError naming the object when it is gone."""
    try:
        return s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
    except Exception as exc:
        raise DrillError(
            f"immutable backup object s3://{bucket}/{key} (version {version_id}) is missing: {_error_code(exc)}"
        ) from exc


def _secret_document(sm: Any, secret: str) -> tuple[str, dict[str, Any]]:
    answer = sm.get_secret_value(SecretId=secret)
    return answer["VersionId"], json.loads(answer["SecretString"])


class SecurityIncident:
    """The scenario: see the module docstring."""

    name = NAME
    simulated = (
        "IAM authorisation: the sandbox's AWS emulator (moto) authenticates and authorises nothing, so "
        "the compromised key's inline policy is not enforced and a revoked key's calls would still be "
        "answered; revocation is proven by the key being gone from IAM (ListAccessKeys, "
        "GetAccessKeyLastUsed NoSuchEntity), not by a refused call",
        "Object Lock: the emulator really refuses deleting a locked version (DeleteObject/DeleteObjects "
        "with a VersionId: AccessDenied) and that refusal is what the drill records; it does not refuse "
        "shortening a GOVERNANCE retention without bypass or suspending versioning (AWS does), so the "
        "attacker does not try those",
        "detection evidence: who did what comes from the drill's own record of the attacker's calls "
        "(CloudTrail's part); the tampering itself is detected from observed state (secret hash "
        "against the backup manifest, versions the manifest does not know)",
        "the attacker: the drill itself acting with the leaked key, against the drill's own resources",
    )

    # -- setup ------------------------------------------------------------------------------
    def setup(self, ctx: DrillContext) -> dict[str, Any]:
        n = names(ctx)
        region = ctx.estate.primary_region
        iam, sm, s3 = ctx.aws("iam"), ctx.aws("secretsmanager"), ctx.aws("s3")

        iam.create_user(UserName=n["user"], Path=n["user_path"], Tags=ctx.aws_tags())
        key = iam.create_access_key(UserName=n["user"])["AccessKey"]
        files = dataset(ctx.drill_id)
        document = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
            "api_token": secrets.token_urlsafe(32),
            "settings": json.loads(files["settings.json"]),
        }
        created = sm.create_secret(
            Name=n["secret"],
            SecretString=canonical(document).decode(),
            Description=f"DR drill {ctx.drill_id}: the application's credentials (drill-made)",
            Tags=ctx.aws_tags(),
        )
        iam.put_user_policy(
            UserName=n["user"],
            PolicyName=n["policy"],
            PolicyDocument=json.dumps(user_policy(ctx, created["ARN"])),
        )

        bucket_args: dict[str, Any] = {"Bucket": n["bucket"], "ObjectLockEnabledForBucket": True}
        if region.name != "us-east-1":
            bucket_args["CreateBucketConfiguration"] = {"LocationConstraint": region.name}
        s3.create_bucket(**bucket_args)
        s3.put_bucket_tagging(Bucket=n["bucket"], Tagging={"TagSet": ctx.aws_tags()})
        s3.put_object_lock_configuration(
            Bucket=n["bucket"],
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": LOCK_MODE, "Days": max(1, RETENTION.days)}},
            },
        )
        retain_until = dt.datetime.now(dt.UTC).replace(microsecond=0) + RETENTION
        written: dict[str, dict[str, Any]] = {}
        for name, body in files.items():
            key_name = n["backup_prefix"] + name
            written[key_name] = {
                "version_id": put_locked(ctx, s3, n["bucket"], key_name, body, retain_until),
                "sha256": sha256_hex(body),
                "size": len(body),
            }
        manifest = build_manifest(
            n["bucket"],
            n["backup_prefix"],
            written,
            {
                "name": n["secret"],
                "version_id": created["VersionId"],
                "sha256": sha256_hex(canonical(document)),
                "settings_key": n["backup_prefix"] + "settings.json",
            },
        )
        manifest["retain_until"] = _iso(retain_until)
        manifest["mode"] = LOCK_MODE
        manifest_body = canonical(manifest)
        manifest_version = put_locked(
            ctx, s3, n["bucket"], n["backup_prefix"] + "manifest.json", manifest_body, retain_until
        )
        ctx.mark("backup_written")
        log.info(
            "drill %s: user %s (key %s), secret %s, locked backup s3://%s/%s (%d objects, %s until %s)",
            ctx.drill_id, n["user"], key["AccessKeyId"], n["secret"], n["bucket"], n["backup_prefix"],
            len(written), LOCK_MODE, manifest["retain_until"],
        )  # fmt: skip
        return {
            "compromised_key_id": key["AccessKeyId"],
            "manifest": manifest,
            "manifest_object": {
                "key": n["backup_prefix"] + "manifest.json",
                "version_id": manifest_version,
                "sha256": sha256_hex(manifest_body),
            },
        }

    # -- inject -----------------------------------------------------------------------------
    def inject(self, ctx: DrillContext) -> dict[str, Any]:
        n = names(ctx)
        manifest = ctx.state["manifest"]
        removed: list[str] = []
        if ctx.fault == "remove_backup":
            removed = self._remove_backup(ctx, manifest)

        # The leak: the application's secret read by someone with a foothold; the key is now theirs.
        _, leaked = _secret_document(ctx.aws("secretsmanager"), n["secret"])
        key = {k: leaked[k] for k in ("aws_access_key_id", "aws_secret_access_key")}
        sm, s3 = attacker_client(ctx, "secretsmanager", key), attacker_client(ctx, "s3", key)
        principal = key["aws_access_key_id"]
        attempts: list[dict[str, Any]] = []

        def attempt(action: str, target: str, call: Any, *, refused_if: Any = None) -> Any:
            at = time.time()
            try:
                answer = call()
            except Exception as exc:
                attempts.append(
                    {"action": action, "target": target, "principal": principal, "at": at,
                     "outcome": "refused", "code": _error_code(exc), "status": _status(exc)}
                )  # fmt: skip
                return None
            problem = refused_if(answer) if refused_if else None
            attempts.append(
                {"action": action, "target": target, "principal": principal, "at": at,
                 "outcome": "refused" if problem else "accepted", "code": problem,
                 "status": (answer.get("ResponseMetadata") or {}).get("HTTPStatusCode"),
                 "version_id": answer.get("VersionId")}
            )  # fmt: skip
            return answer

        ctx.mark("incident")
        tampered = {
            "aws_access_key_id": key["aws_access_key_id"],
            "aws_secret_access_key": key["aws_secret_access_key"],
            "api_token": secrets.token_urlsafe(32),
            "settings": {"webhook_url": "https://attacker.invalid/exfiltrate", "allowed_origins": ["*"]},
        }
        attempt(
            "secretsmanager:PutSecretValue",
            n["secret"],
            lambda: sm.put_secret_value(SecretId=n["secret"], SecretString=canonical(tampered).decode()),
        )
        bucket = n["bucket"]
        for object_key, entry in manifest["objects"].items():
            target = f"s3://{bucket}/{object_key}"
            attempt(
                "s3:PutObject",
                target,
                lambda k=object_key: s3.put_object(Bucket=bucket, Key=k, Body=b'{"ransom":"pay up"}'),
            )
            attempt(
                "s3:DeleteObject",
                f"{target}?versionId={entry['version_id']}",
                lambda k=object_key, v=entry["version_id"]: s3.delete_object(
                    Bucket=bucket, Key=k, VersionId=v
                ),
            )
            attempt("s3:DeleteObject", target, lambda k=object_key: s3.delete_object(Bucket=bucket, Key=k))
        every_version = [{"Key": k, "VersionId": e["version_id"]} for k, e in manifest["objects"].items()]
        attempt(
            "s3:DeleteObjects",
            f"s3://{bucket}/{n['backup_prefix']} ({len(every_version)} locked versions)",
            lambda: s3.delete_objects(Bucket=bucket, Delete={"Objects": every_version, "Quiet": False}),
            refused_if=lambda a: (
                ",".join(sorted({e.get("Code", "?") for e in a.get("Errors") or []})) or None
            ),
        )
        ctx.mark("attack_finished")
        refused = [a for a in attempts if a["outcome"] == "refused"]
        log.info(
            "drill %s: attacker (key %s) made %d attempts, %d refused: %s",
            ctx.drill_id, principal, len(attempts), len(refused),
            "; ".join(f"{a['action']} {a['target']}: {a['outcome']} {a.get('code') or ''}" for a in attempts),
        )  # fmt: skip
        return {"attempts": attempts, "backup_removed": removed}

    def _remove_backup(self, ctx: DrillContext, manifest: Mapping[str, Any]) -> list[str]:
        """The forced fault: the backup's versions deleted by the drill's role bypassing governance
        (what a broken retention setting would allow)."""
        s3 = ctx.aws("s3")
        bucket = manifest["bucket"]
        removed = []
        for key, entry in manifest["objects"].items():
            s3.delete_object(
                Bucket=bucket, Key=key, VersionId=entry["version_id"], BypassGovernanceRetention=True
            )
            removed.append(f"s3://{bucket}/{key}?versionId={entry['version_id']}")
        log.warning("drill %s: fault remove_backup: deleted %s", ctx.drill_id, ", ".join(removed))
        return removed

    # -- recover ----------------------------------------------------------------------------
    def recover(self, ctx: DrillContext) -> dict[str, Any]:
        n = names(ctx)
        manifest = ctx.state["manifest"]
        iam, sm, s3 = ctx.aws("iam"), ctx.aws("secretsmanager"), ctx.aws("s3")
        bucket, compromised = manifest["bucket"], ctx.state["compromised_key_id"]

        # Detect: what is there now against what the backup says it was.
        version_now, current = _secret_document(sm, n["secret"])
        secret_changed = sha256_hex(canonical(current)) != manifest["secret"]["sha256"]
        versions = sm.list_secret_version_ids(SecretId=n["secret"])["Versions"]
        unknown = unknown_versions(manifest, _list_versions(s3, bucket, manifest["prefix"]))
        unknown = [u for u in unknown if not u["key"].endswith("/manifest.json")]
        by_key = sorted(
            {a["principal"] for a in ctx.state.get("attempts") or [] if a["outcome"] == "accepted"}
        )
        if not secret_changed and not unknown:
            raise DrillError("detect: no tampering found (secret matches the backup, no unknown versions)")
        ctx.mark("detected")
        detection = {
            "secret_changed": secret_changed,
            "secret_version_now": version_now,
            "secret_versions": len(versions),
            "unknown_backup_versions": len(unknown),
            "acting_keys": by_key,
        }
        log.info("drill %s: detected tampering: %s", ctx.drill_id, json.dumps(detection))

        # Decide: the key that acted is the one to revoke; the locked versions are the restore source.
        if compromised not in by_key:
            raise DrillError(f"decide: the acting key(s) {by_key} are not the drill's key {compromised}")
        ctx.mark("decided")

        # Rotate: a new key and token, a new secret version (settings restored below).
        new_key = iam.create_access_key(UserName=n["user"])["AccessKey"]
        rotated = {
            "aws_access_key_id": new_key["AccessKeyId"],
            "aws_secret_access_key": new_key["SecretAccessKey"],
            "api_token": secrets.token_urlsafe(32),
            "settings": current.get("settings") or {},
        }
        rotation = sm.put_secret_value(SecretId=n["secret"], SecretString=canonical(rotated).decode())
        ctx.mark("rotated")

        # Revoke: deactivate, delete, and prove the key is gone.
        iam.update_access_key(UserName=n["user"], AccessKeyId=compromised, Status="Inactive")
        iam.delete_access_key(UserName=n["user"], AccessKeyId=compromised)
        listed = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=n["user"])["AccessKeyMetadata"]]
        if compromised in listed:
            raise DrillError(f"revoke: access key {compromised} is still listed for {n['user']}")
        ctx.mark("revoked")

        # Restore: settings and data from the locked versions, each checked against the manifest first.
        restored: dict[str, bytes] = {}
        for key, entry in manifest["objects"].items():
            body = _read_version(s3, bucket, key, entry["version_id"])
            if sha256_hex(body) != entry["sha256"]:
                raise DrillError(
                    f"restore: s3://{bucket}/{key} (version {entry['version_id']}) does not match its manifest SHA-256"
                )
            restored[key] = body
        listing = _list_versions(s3, bucket, manifest["prefix"])
        for marker in listing["DeleteMarkers"]:  # the attacker's deletes hide the data: lift them
            s3.delete_object(Bucket=bucket, Key=marker["Key"], VersionId=marker["VersionId"])
        for key, body in restored.items():
            put_locked(ctx, s3, bucket, key, body, dt.datetime.fromisoformat(manifest["retain_until"]))
        settings = json.loads(restored[manifest["secret"]["settings_key"]])
        final = sm.put_secret_value(
            SecretId=n["secret"], SecretString=canonical({**rotated, "settings": settings}).decode()
        )
        ctx.mark("restored")
        return {
            "detection": detection,
            "rotation": {"secret_version": rotation["VersionId"], "final_secret_version": final["VersionId"]},
            "new_key_id": listed[0] if listed else None,
            "keys_after_revocation": listed,
            "restored_objects": sorted(restored),
        }

    # -- verify -----------------------------------------------------------------------------
    def verify(self, ctx: DrillContext) -> dict[str, Any]:
        n = names(ctx)
        manifest = ctx.state["manifest"]
        iam, sm, s3 = ctx.aws("iam"), ctx.aws("secretsmanager"), ctx.aws("s3")
        bucket, compromised = manifest["bucket"], ctx.state["compromised_key_id"]
        problems: list[str] = []

        listing = _list_versions(s3, bucket, manifest["prefix"])
        problems += [f"locked version gone: {m}" for m in missing_from_listing(manifest, listing)]
        checks = []
        retain_until = dt.datetime.fromisoformat(manifest["retain_until"])
        for key, entry in manifest["objects"].items():
            check = {"key": key, "version_id": entry["version_id"], "ok": False}
            try:
                body = _read_version(s3, bucket, key, entry["version_id"])
                head = s3.head_object(Bucket=bucket, Key=key, VersionId=entry["version_id"])
                current = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as exc:
                problems.append(str(exc) if isinstance(exc, DrillError) else f"{key}: {_error_code(exc)}")
                checks.append(check)
                continue
            check["sha256"] = sha256_hex(body)
            locked = (
                head.get("ObjectLockMode") == LOCK_MODE and head.get("ObjectLockRetainUntilDate") is not None
            )
            kept = locked and head["ObjectLockRetainUntilDate"] >= retain_until
            check["ok"] = check["sha256"] == entry["sha256"] and kept
            if check["sha256"] != entry["sha256"]:
                problems.append(
                    f"s3://{bucket}/{key} (version {entry['version_id']}): SHA-256 differs from the manifest"
                )
            if not kept:
                problems.append(
                    f"s3://{bucket}/{key} (version {entry['version_id']}): lock or retention changed"
                )
            if sha256_hex(current) != entry["sha256"]:
                problems.append(f"s3://{bucket}/{key}: current version is not the backup's content")
            checks.append(check)
        stored = ctx.state["manifest_object"]  # the manifest itself, locked beside the backup
        body = _read_version(s3, bucket, stored["key"], stored["version_id"])
        checks.append({"key": stored["key"], "version_id": stored["version_id"], "sha256": sha256_hex(body),
                       "ok": sha256_hex(body) == stored["sha256"] and json.loads(body) == manifest})  # fmt: skip
        if not checks[-1]["ok"]:
            problems.append(
                f"s3://{bucket}/{stored['key']}: the stored manifest differs from the one written"
            )

        _, secret = _secret_document(sm, n["secret"])
        settings_key = manifest["secret"]["settings_key"]
        if sha256_hex(canonical(secret.get("settings"))) != manifest["objects"][settings_key]["sha256"]:
            problems.append(f"secret {n['secret']}: settings differ from the backup")
        if secret.get("aws_access_key_id") == compromised:
            problems.append(f"secret {n['secret']}: still holds the compromised key")
        if sha256_hex(canonical(secret)) == manifest["secret"]["sha256"]:
            problems.append(f"secret {n['secret']}: credentials were not rotated")
        listed = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=n["user"])["AccessKeyMetadata"]]
        if compromised in listed:
            problems.append(f"access key {compromised} is still listed")
        try:
            iam.get_access_key_last_used(AccessKeyId=compromised)
            problems.append(f"access key {compromised} is still known to IAM")
            key_state = "known"
        except Exception as exc:
            key_state = _error_code(exc)
        score = integrity(checks)
        if problems:
            raise DrillError("verify: " + "; ".join(problems))
        ctx.mark("verified")
        return {
            "integrity_checks": checks,
            "integrity_score": score,
            "versions_checked": len(listing["Versions"]),
            "compromised_key_lookup": key_state,
        }

    # -- measure ----------------------------------------------------------------------------
    def measure(self, ctx: DrillContext) -> dict[str, Any]:
        attempts = ctx.state.get("attempts") or []
        marks = ctx.state.get("marks") or {}
        return {
            "rto_seconds": ctx.since("incident", "verified"),
            "rpo_seconds": round(marks["incident"] - marks["backup_written"], 3),
            "integrity_score": ctx.state.get("integrity_score"),
            "phases": {
                "detect": ctx.since("incident", "detected"),
                "decide": ctx.since("detected", "decided"),
                "restore": ctx.since("decided", "restored"),
                "verify": ctx.since("restored", "verified"),
            },
            "figures": {
                "attempts": len(attempts),
                "attempts_refused": sum(1 for a in attempts if a["outcome"] == "refused"),
                "attempts_accepted": sum(1 for a in attempts if a["outcome"] == "accepted"),
                "refused": sorted(
                    {f"{a['action']} ({a.get('code')})" for a in attempts if a["outcome"] == "refused"}
                ),
                "backup_objects": len(ctx.state["manifest"]["objects"]),
                "versions_checked": ctx.state.get("versions_checked"),
                "unknown_versions_detected": (ctx.state.get("detection") or {}).get(
                    "unknown_backup_versions"
                ),
                "rotation_seconds": ctx.since("decided", "rotated"),
                "revocation_seconds": ctx.since("rotated", "revoked"),
                "compromised_key_lookup": ctx.state.get("compromised_key_lookup"),
                "lock_mode": ctx.state["manifest"].get("mode"),
                "attempt_log": [
                    {k: a.get(k) for k in ("action", "target", "outcome", "code", "status")} for a in attempts
                ],
            },
            "failures": [
                f"{a['action']} {a['target']} was accepted: the lock did not hold"
                for a in attempts
                if a["outcome"] == "accepted" and _targets_locked_versions(a)
            ],
        }

    # -- cleanup ----------------------------------------------------------------------------
    def cleanup(self, ctx: DrillContext) -> list[str]:
        """Bucket (every version, bypassing governance), secret (no recovery window), IAM user with its
        keys and policies: found from the drill id alone; idempotent."""
        n = names(ctx)
        iam, sm, s3 = ctx.aws("iam"), ctx.aws("secretsmanager"), ctx.aws("s3")
        for bucket in self._buckets(s3, ctx):
            self._empty_and_delete(s3, bucket)
        for secret in self._secrets(sm, ctx):
            sm.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        for user in self._users(iam, n["user_path"]):
            for policy in iam.list_user_policies(UserName=user)["PolicyNames"]:
                iam.delete_user_policy(UserName=user, PolicyName=policy)
            for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
                iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
            iam.delete_user(UserName=user)
        remaining = [f"bucket {b}" for b in self._buckets(s3, ctx)]
        remaining += [f"secret {s}" for s in self._secrets(sm, ctx)]
        remaining += [f"IAM user {u}" for u in self._users(iam, n["user_path"])]
        return remaining

    @staticmethod
    def _buckets(s3: Any, ctx: DrillContext) -> list[str]:
        """The drill's bucket if it exists (its name comes from the drill id)."""
        bucket = names(ctx)["bucket"]
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            if _status(exc) == 404 or _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return []
            raise
        return [bucket]

    @staticmethod
    def _secrets(sm: Any, ctx: DrillContext) -> list[str]:
        found = set()
        for filters in (
            [{"Key": "name", "Values": [ctx.drill_id]}],
            [{"Key": "tag-key", "Values": [ctx.tag_key]}, {"Key": "tag-value", "Values": [ctx.drill_id]}],
        ):
            for page in sm.get_paginator("list_secrets").paginate(Filters=filters):
                found.update(
                    s["Name"] for s in page.get("SecretList") or [] if s["Name"].startswith(ctx.drill_id)
                )
        return sorted(found)

    @staticmethod
    def _users(iam: Any, path: str) -> list[str]:
        return [
            u["UserName"]
            for page in iam.get_paginator("list_users").paginate(PathPrefix=path)
            for u in page["Users"]
        ]

    @staticmethod
    def _empty_and_delete(s3: Any, bucket: str) -> None:
        # Delete markers first: the emulator fails deleting a version under a delete marker.
        listing = _list_versions(s3, bucket, "")
        for marker in listing["DeleteMarkers"]:
            s3.delete_object(Bucket=bucket, Key=marker["Key"], VersionId=marker["VersionId"])
        for version in listing["Versions"]:
            s3.delete_object(
                Bucket=bucket,
                Key=version["Key"],
                VersionId=version["VersionId"],
                BypassGovernanceRetention=True,
            )
        s3.delete_bucket(Bucket=bucket)


SCENARIO = SecurityIncident()
