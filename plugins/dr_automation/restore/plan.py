"""What a restore will do, decided before anything is touched.

``check_request`` holds the run's conf and Params to rules the JSON schema cannot express;
``build_plan`` turns the request, the backup's manifest, its verification record and a few facts
read from AWS (``restore.backup``) into the plan every later task follows. Both are pure: bad input
raises ``RestoreInputError`` naming the field and the reason, and at that point nothing has been
stopped or changed.

Components map to the backup's system types:

- ``database``: ``postgres_database`` dumps are restored by a toolbox pod (``db-restore``) into the
  live database (``in_place``, ``pg_restore --clean`` in one transaction) or into a new database on
  the same server (``new_instance``); ``rds_snapshot`` and ``postgres_wal`` (point in time) are RDS
  restores, which always create a new instance, so they are part of ``new_instance`` restores only;
- ``files``: ``s3_bucket`` / ``s3_prefix`` objects are copied back to their source (``in_place``);
  the source bucket must be versioned: the safety snapshot is the versions it holds now;
- ``configuration``: ``kubernetes_objects`` are applied to the estate's namespaces and ``secrets``
  are unsealed and put back into Secrets Manager (``in_place``).

Sessions, metrics, Neo4j exports and machine images are not restored by this DAG (listed in the
plan with the reason).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate

DAG_ID = "restore_from_backup"
COMPONENTS = ("database", "files", "configuration")
TARGETS = ("in_place", "new_instance")
COMPONENT_TYPES: dict[str, tuple[str, ...]] = {
    "database": ("postgres_database", "rds_snapshot", "postgres_wal"),
    "files": ("s3_bucket", "s3_prefix"),
    "configuration": ("kubernetes_objects", "secrets"),
}
NOT_RESTORED = {
    "redis_sessions": "sessions are short-lived: users sign in again",
    "cloudwatch_metrics": "metrics history is kept for reports, not restored",
    "neo4j": "the graph export is restored by the Neo4j runbook, not this DAG",
    "machine_images": "images are launched from their DR copies, not restored",
}
# Actions of the plan, by (system type, target).
PG_IN_PLACE, PG_NEW, RDS_SNAPSHOT, RDS_PITR = (
    "pg_restore_in_place",
    "pg_restore_new_database",
    "rds_from_snapshot",
    "rds_point_in_time",
)
FILES, K8S_APPLY, SECRETS = "s3_objects_back", "k8s_apply", "secrets_put_back"
CONF_KEYS = frozenset(
    {
        "backup_id",
        "tier",
        "components",
        "target",
        "stop_services",
        "restart_services",
        "rollback_on_failure",
        "dry_run",
        "override_unverified_reason",
    }
)
BACKUP_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
_BACKUP_ID = re.compile(BACKUP_ID_PATTERN)
_PLACEHOLDERS = {"test", "testing", "override", "n/a", "na", "none", "because", "urgent", "asdf", "x"}
ARCHIVED = frozenset({"GLACIER", "DEEP_ARCHIVE"})
RESTORES_PREFIX = "restores/"
LOCK_PREFIX = "restores/_locks/"


# Every AWS call the DAG's worker tasks make (service = SigV4 signing name), for IAM policies; the
# toolbox pods add s3 GetObject/HeadObject/PutObject on the backup and safety locations. Notifications
# are not listed (dr_automation.notifications).
AWS_ACTIONS: tuple[tuple[str, str], ...] = (
    ("s3", "GetObject"),
    ("s3", "HeadObject"),
    ("s3", "PutObject"),  # lock (If-None-Match), state, restore manifest
    ("s3", "DeleteObject"),  # lock release; with VersionId (s3:DeleteObjectVersion) in a rollback
    ("s3", "CopyObject"),  # files back to their bucket
    ("s3", "ListObjectsV2"),  # the pods' results
    ("s3", "GetBucketVersioning"),  # validate: files need a versioned bucket
    ("s3", "RestoreObject"),  # archived artifacts thawed
    ("kms", "Decrypt"),  # sealed secrets
    ("rds", "DescribeDBInstances"),
    ("rds", "RestoreDBInstanceFromDBSnapshot"),
    ("rds", "RestoreDBInstanceToPointInTime"),
    ("rds", "AddTagsToResource"),  # Tags on the restore calls
    ("secretsmanager", "DescribeSecret"),
    ("secretsmanager", "PutSecretValue"),
    ("secretsmanager", "UpdateSecretVersionStage"),  # rollback
)


class RestoreInputError(ValueError):
    """The restore must not go ahead: names the field and the reason. Nothing was changed."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def restore_params(estate: Estate) -> dict[str, Any]:
    """Params (JSON schema) of restore_from_backup: the UI form and the REST API both enforce them."""
    from airflow.sdk import Param

    return {
        "backup_id": Param(
            "",
            type="string",
            pattern=BACKUP_ID_PATTERN,
            title="Backup id",
            description="The backup to restore (its manifest is backups/<tier>/<backup id>/manifest.json). "
            "It must be complete and have passed verification.",
        ),
        "tier": Param(
            None,
            type=["string", "null"],
            enum=[*estate.tiers, None],
            title="Tier",
            description="The backup's tier; needed only when the same id exists in several tiers.",
        ),
        "components": Param(
            ["database"],
            type="array",
            items={"type": "string", "enum": list(COMPONENTS)},
            minItems=1,
            uniqueItems=True,
            title="Components",
            description="database (dumps; RDS snapshots and point in time for new_instance), files "
            "(S3 objects back to their bucket), configuration (Kubernetes objects, secrets).",
        ),
        "target": Param(
            "in_place",
            type="string",
            enum=list(TARGETS),
            title="Target",
            description="in_place: over the live systems (services stopped first, safety snapshot "
            "taken); new_instance: a new database / RDS instance beside the live one (database only).",
        ),
        "stop_services": Param(
            True,
            type="boolean",
            title="Stop services",
            description="Scale the estate's deployments to zero first (in_place).",
        ),
        "restart_services": Param(
            True,
            type="boolean",
            title="Restart services",
            description="Scale them back to their previous replicas at the end.",
        ),
        "rollback_on_failure": Param(
            True,
            type="boolean",
            title="Roll back on failure",
            description="Put the safety snapshot back and restart services if any step fails.",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Report the plan; stop and change nothing."
        ),
        "override_unverified_reason": Param(
            None,
            type=["string", "null"],
            maxLength=500,
            title="Override: restore an unverified backup because ...",
            description="Only when no verified backup will do (at least 10 characters; recorded and notified).",
        ),
    }


def check_request(estate: Estate, conf: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The request, beyond the JSON schema: unknown conf keys, a real override reason, components that
    make sense for the target."""
    extra = sorted(set(conf) - CONF_KEYS)
    if extra:
        raise RestoreInputError(
            extra[0], f"not a parameter of {DAG_ID} (allowed: {', '.join(sorted(CONF_KEYS))})"
        )
    backup = params.get("backup_id")
    if not isinstance(backup, str) or not _BACKUP_ID.match(backup):
        raise RestoreInputError(
            "backup_id", f"{backup!r} is not a backup id (letters, digits, '.', '_', '-')"
        )
    tier = params.get("tier")
    if tier is not None and tier not in estate.tiers:
        raise RestoreInputError("tier", f"{tier!r} is not a tier of the estate ({', '.join(estate.tiers)})")
    components = list(params.get("components") or [])
    unknown = [c for c in components if c not in COMPONENTS]
    if not components or unknown or len(set(components)) != len(components):
        raise RestoreInputError(
            "components", f"must be a non-empty subset of {list(COMPONENTS)} (got {components!r})"
        )
    target = params.get("target")
    if target not in TARGETS:
        raise RestoreInputError("target", f"must be one of {list(TARGETS)} (got {target!r})")
    if target == "new_instance" and components != ["database"]:
        raise RestoreInputError(
            "components",
            "target new_instance restores the database only (files and configuration restore in place)",
        )
    reason = params.get("override_unverified_reason")
    if reason is not None:
        text = str(reason).strip()
        if len(text) < 10 or text.lower() in _PLACEHOLDERS or len(set(text.lower()) - set(" .-_")) < 4:
            raise RestoreInputError(
                "override_unverified_reason",
                "must say why an unverified backup is restored (at least 10 characters, not a placeholder)",
            )
        reason = text
    flags = {
        k: bool(params.get(k))
        for k in ("stop_services", "restart_services", "rollback_on_failure", "dry_run")
    }
    return {
        "backup_id": backup,
        "tier": tier,
        "components": [c for c in COMPONENTS if c in components],
        "target": target,
        "override_unverified_reason": reason,
        **flags,
    }


def restore_id(run_id: str) -> str:
    """The run id as an S3-key-safe id, prefixed (every key and name of the run derives from it)."""
    from dr_automation.backup.plan import backup_id

    return f"restore-{backup_id(run_id)}"[:120]


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:10]


def new_database_name(database: str, rid: str) -> str:
    """A plain PostgreSQL identifier for a new_instance restore, derived from the run (retries reuse it)."""
    return f"{re.sub(r'[^a-z0-9_]', '_', database.lower())[:30]}_restore_{short_hash(rid)}"


def new_instance_id(instance: str, system: str, rid: str) -> str:
    """An RDS instance identifier (letter first, lowercase, hyphens, <= 63 chars) from the run."""
    base = re.sub(r"[^a-z0-9-]+", "-", instance.lower()).strip("-")[:38]
    return f"{base}-restore-{short_hash(system, rid)}"


def lock_name(request: Mapping[str, Any], tier: str) -> str:
    """One restore per target at a time: the live estate is one target; each new instance another."""
    if request["target"] == "in_place":
        return "in-place"
    return f"new-instance-{tier}-{request['backup_id']}"[:200]


def verification_passed(record: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Did the backup pass verification, and why not. Accepts the verification record's outcome as
    ``passed`` (bool) or ``status``/``outcome``/``result`` of passed/verified."""
    if record is None:
        return False, "no verification record"
    for key in ("passed", "ok"):
        if isinstance(record.get(key), bool):
            return record[key], str(record.get("reason") or f"{key} is false")
    for key in ("status", "outcome", "result"):
        value = record.get(key)
        if isinstance(value, str):
            ok = value.lower() in ("passed", "verified", "success", "succeeded")
            return ok, f"{key} is {value!r}" + (f": {record['reason']}" if record.get("reason") else "")
    return False, "the record does not say whether it passed"


def artifact_url(entry: Mapping[str, Any], suffix: str) -> tuple[str, Mapping[str, Any]]:
    """The URL (home location) and manifest record of the entry's artifact ending with `suffix`."""
    for artifact in entry.get("artifacts") or []:
        if artifact["name"].endswith(suffix):
            return entry["locations"][0] + artifact["name"], artifact
    raise RestoreInputError("backup_id", f"{entry['name']}: the backup holds no *{suffix} artifact")


def _entry_action(
    estate: Estate,
    request: Mapping[str, Any],
    tier: str,
    rid: str,
    entry: Mapping[str, Any],
    facts: Mapping[str, Any],
) -> dict[str, Any] | str:
    """The action restoring one manifest entry, or why it is not restored by this request."""
    kind, name, target = entry["type"], entry["name"], request["target"]
    system = _system(estate, tier, name)
    base = {"system": name, "type": kind}
    if kind == "postgres_database":
        dump, artifact = artifact_url(entry, ".pgdump")
        stats, _ = artifact_url(entry, ".pgdump.stats.json")
        spec = estate.databases[system["database"]]
        action = {
            **base,
            "database": system["database"],
            "from": dump,
            "sha256": artifact["sha256"],
            "stats": stats,
        }
        if target == "in_place":
            return {**action, "action": PG_IN_PLACE, "into": spec.get("database")}
        return {
            **action,
            "action": PG_NEW,
            "into": new_database_name(spec.get("database") or system["database"], rid),
        }
    if kind in ("rds_snapshot", "postgres_wal"):
        if target == "in_place":
            return "RDS restores create a new instance: use target new_instance"
        spec = estate.databases[system["database"]]
        instance = new_instance_id(spec["rds_instance_id"], name, rid)
        if kind == "rds_snapshot":
            snaps = (facts.get("snapshots") or {}).get(name) or {}
            found = [s for s in snaps.get("snapshots") or [] if s.get("region") == spec["region"]]
            if not found:
                raise RestoreInputError(
                    "backup_id", f"{name}: the backup describes no snapshot in {spec['region']}"
                )
            return {
                **base,
                "action": RDS_SNAPSHOT,
                "region": spec["region"],
                "snapshot": found[0]["identifier"],
                "instance": instance,
            }
        evidence = (facts.get("pitr") or {}).get(name) or {}
        if not evidence.get("latest_restorable_time"):
            raise RestoreInputError("backup_id", f"{name}: the backup records no restorable time")
        return {
            **base,
            "action": RDS_PITR,
            "region": spec["region"],
            "source_instance": spec["rds_instance_id"],
            "restore_time": evidence["latest_restorable_time"],
            "instance": instance,
        }
    if kind in ("s3_bucket", "s3_prefix"):
        bucket = system["bucket"]
        if not (facts.get("versioned") or {}).get(bucket):
            raise RestoreInputError(
                "components",
                f"files: bucket {bucket} is not versioned, so no safety snapshot can be kept (enable versioning)",
            )
        copied = {
            a["name"][len("objects/") :]: a["sha256"]
            for a in entry.get("artifacts") or []
            if a["name"].startswith("objects/")
        }
        return {
            **base,
            "action": FILES,
            "bucket": bucket,
            "prefix": system.get("prefix", ""),
            "from": entry["locations"][0] + "objects/",
            "objects": list(copied),
            "sha256": copied,
        }
    if kind == "kubernetes_objects":
        url, artifact = artifact_url(entry, ".json.gz")
        return {**base, "action": K8S_APPLY, "from": url, "sha256": artifact["sha256"]}
    if kind == "secrets":
        url, artifact = artifact_url(entry, ".sealed.json")
        return {
            **base,
            "action": SECRETS,
            "from": url,
            "sha256": artifact["sha256"],
            "secret_ids": list(system.get("secret_ids") or []),
        }
    return NOT_RESTORED.get(kind, f"type {kind} has no restore")


def _system(estate: Estate, tier: str, name: str) -> Mapping[str, Any]:
    for system in estate.tiers[tier].systems:
        if system["name"] == name:
            return system
    raise RestoreInputError(
        "backup_id", f"system {name!r} of the backup is no longer in tiers.{tier} of the estate"
    )


def component_of(system_type: str) -> str | None:
    return next((c for c, types in COMPONENT_TYPES.items() if system_type in types), None)


def build_plan(
    estate: Estate,
    request: Mapping[str, Any],
    run_id: str,
    found: Mapping[str, Any],
    facts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The restore plan: what is restored how, what is stopped, where the safety snapshot goes.

    `found`: tier, manifest (document and URL), verification record (document or None, and URL).
    Raises RestoreInputError for an incomplete, unverified (without override) or unsuitable backup."""
    facts = facts or {}
    tier, manifest = found["tier"], found["manifest"]
    backup = request["backup_id"]
    if manifest.get("status") != "complete":
        failed = manifest.get("summary", {}).get("failed") or {}
        raise RestoreInputError(
            "backup_id",
            f"backup {backup} of {tier} is {manifest.get('status')!r}, not complete (failed: {', '.join(failed) or '?'})",
        )
    passed, why = verification_passed(found.get("verification"))
    override = request.get("override_unverified_reason")
    if not passed and not override:
        raise RestoreInputError(
            "backup_id",
            f"backup {backup} of {tier} has not passed verification ({why}; {found.get('verification_url')}): "
            "restore a verified backup, or give override_unverified_reason",
        )
    rid = restore_id(run_id)
    actions: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for entry in manifest.get("components") or []:
        component = component_of(entry["type"])
        if component not in request["components"]:
            reason = NOT_RESTORED.get(entry["type"]) or f"component {component} not requested"
            skipped.append({"system": entry["name"], "type": entry["type"], "reason": reason})
            continue
        outcome = _entry_action(estate, request, tier, rid, entry, facts)
        if isinstance(outcome, str):
            skipped.append({"system": entry["name"], "type": entry["type"], "reason": outcome})
        else:
            actions.append({**outcome, "component": component})
    databases = [a["database"] for a in actions if a["action"] in (PG_IN_PLACE, PG_NEW)]
    if len(databases) != len(set(databases)):
        raise RestoreInputError(
            "backup_id", f"backup {backup} holds several dumps of one database: restore them one at a time"
        )
    for component in request["components"]:
        if not any(a["component"] == component for a in actions):
            held = [s["system"] for s in skipped if component_of(s["type"]) == component]
            detail = (
                f" ({'; '.join(s['system'] + ': ' + s['reason'] for s in skipped if s['system'] in held)})"
                if held
                else ""
            )
            raise RestoreInputError(
                "components",
                f"{component}: backup {backup} of {tier} holds nothing to restore {request['target']}{detail}",
            )
    in_place = request["target"] == "in_place"
    primary = estate.primary_region
    safety_prefix = f"{RESTORES_PREFIX}{rid}/safety/"
    k8s = estate.kubernetes
    return {
        "restore_id": rid,
        "run_id": run_id,
        "tier": tier,
        "backup_id": backup,
        "manifest": found["manifest_url"],
        "backup_region": found["region"],
        "manifest_created_at": manifest.get("created_at"),
        "verification": {
            "passed": passed,
            "detail": why,
            "record": found.get("verification_url"),
            "override": override,
        },
        "request": dict(request),
        "actions": actions,
        "skipped": skipped,
        "archived": list(found.get("archived") or []),
        "stop": {
            "namespaces": list(k8s["namespaces"]) if in_place and request["stop_services"] else [],
            "why": "scale every deployment of the estate's namespaces to zero"
            if in_place and request["stop_services"]
            else (
                "not requested"
                if in_place
                else "a new instance is restored beside the live one: nothing is stopped"
            ),
        },
        "safety": {
            "location": f"s3://{primary.backup_bucket}/{safety_prefix}",
            "region": primary.name,
            "kms_key": primary.kms_key_alias,
            "database": in_place and any(a["action"] == PG_IN_PLACE for a in actions),
            "kubernetes": in_place and any(a["action"] == K8S_APPLY for a in actions),
            "files": in_place and any(a["action"] == FILES for a in actions),
        },
        "record": record_url(found, rid),
        "lock": lock_name(request, tier),
    }


def record_url(found: Mapping[str, Any], rid: str) -> str:
    """The restore manifest sits beside the backup's manifest: backups/<tier>/<id>/restores/<rid>.json."""
    url = found["manifest_url"]
    return url.rsplit("/", 1)[0] + f"/{RESTORES_PREFIX}{rid}.json"


def describe(plan: Mapping[str, Any]) -> list[str]:
    """The plan in words, for the dry run's log and record."""
    lines = [
        f"restore {plan['tier']}/{plan['backup_id']} ({plan['request']['target']}), restore id {plan['restore_id']}"
    ]
    if plan["stop"]["namespaces"]:
        lines.append(f"stop: deployments of {', '.join(plan['stop']['namespaces'])} to 0 replicas")
    safety = [k for k in ("database", "kubernetes", "files") if plan["safety"][k]]
    if safety:
        lines.append(f"safety snapshot of {', '.join(safety)} to {plan['safety']['location']}")
    for a in plan["actions"]:
        lines.append(f"{a['component']}: {a['system']} ({a['type']}) -> {a['action']}")
    for s in plan["skipped"]:
        lines.append(f"not restored: {s['system']} ({s['type']}): {s['reason']}")
    return lines


def actions_of(plan: Mapping[str, Any], *kinds: str) -> Sequence[dict[str, Any]]:
    return [a for a in plan["actions"] if a["action"] in kinds]
