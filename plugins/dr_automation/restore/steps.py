"""The steps of a restore, as plain functions the DAG's tasks call; each returns JSON-safe facts.

Every step that stops, changes or puts back something is idempotent (a retry finds its own earlier
work: the previous replicas are kept in S3 before anything is scaled, new object versions are
recorded as they are made) and audited (``restore.<step>`` events: started, succeeded, failed).

Database restores and the database part of the safety snapshot run as toolbox pods (``pod_jobs``
gives their argument lists); everything else runs here, in the worker.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dr_automation.restore import backup as b
from dr_automation.restore.plan import (
    FILES,
    K8S_APPLY,
    PG_IN_PLACE,
    PG_NEW,
    RDS_PITR,
    RDS_SNAPSHOT,
    SECRETS,
    actions_of,
)

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

EVENT_PREFIX = "restore."
SERVICES_STATE = "services.json"
FILES_STATE = "files-restored.json"
SECRETS_STATE = "secrets.json"
K8S_SAFETY = "kubernetes-objects.json.gz"


# -- helpers ----------------------------------------------------------------------------------------


def audited(
    estate: Estate,
    context: Mapping[str, Any] | None,
    step: str,
    plan: Mapping[str, Any],
    fn: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Run one step between a started and a succeeded/failed audit event (the audit never blocks it)."""
    from dr_automation.audit import audit_step

    event = f"{EVENT_PREFIX}{step}"
    where = {"incident_id": plan["restore_id"], "target": f"{plan['tier']}/{plan['backup_id']}"}
    audit_step(estate, event, "started", context, log=log, **where)
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    try:
        result = {
            **fn(),
            "started_at": started,
            "ended_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
    except Exception as exc:
        from dr_automation.notifications.callbacks import describe_error

        audit_step(estate, event, "failed", context, log=log, detail={"error": describe_error(exc)}, **where)
        raise
    audit_step(estate, event, "succeeded", context, log=log, detail=_brief(result), **where)
    return result


def _brief(result: Mapping[str, Any]) -> dict[str, Any]:
    text = json.dumps(result, default=str)
    return dict(result) if len(text) < 4000 else {"summary": text[:4000]}


def state_url(plan: Mapping[str, Any], name: str) -> str:
    return plan["safety"]["location"].rsplit("safety/", 1)[0] + name


def put_json(estate: Estate, plan: Mapping[str, Any], url: str, doc: Any) -> str:
    bucket, key = b.split_url(url)
    b.s3(estate, plan["safety"]["region"]).put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(doc, indent=2, default=str).encode(),
        ContentType="application/json",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=plan["safety"]["kms_key"],
    )
    return url


def read_state(estate: Estate, plan: Mapping[str, Any], name: str) -> Any:
    return b.read_json(estate, plan["safety"]["region"], state_url(plan, name))


def read_bytes(estate: Estate, url: str, region: str) -> bytes:
    bucket, key = b.split_url(url)
    return b.s3(estate, region).get_object(Bucket=bucket, Key=key)["Body"].read()


# -- validate ---------------------------------------------------------------------------------------


def validate(
    estate: Estate, conf: Mapping[str, Any], params: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    """The request, the backup and the plan; takes the target's lock unless it is a dry run.
    Raises RestoreInputError (field and reason) with nothing stopped or changed."""
    from dr_automation.restore.plan import build_plan, check_request

    request = check_request(estate, conf, params)
    found = b.find_backup(estate, request["backup_id"], request["tier"])
    facts = b.read_facts(estate, found, request)
    plan = build_plan(estate, request, run_id, found, facts)
    if not request["dry_run"]:
        plan["lock_taken"] = b.acquire_lock(estate, plan["lock"], run_id)
    return plan


def xcom_values(plan: Mapping[str, Any]) -> dict[str, str]:
    """The values the database pods' templated arguments read (``dr_automation.restore.pods``)."""
    out = {}
    for a in actions_of(plan, PG_IN_PLACE, PG_NEW):
        d = a["database"]
        out |= {f"db.{d}.from": a["from"], f"db.{d}.sha256": a["sha256"], f"db.{d}.into": a["into"] or ""}
    return out


def chosen_pods(plan: Mapping[str, Any], phase: str) -> list[str]:
    """Task ids of the toolbox pods a phase (safety, restore, rollback) of this plan needs."""
    from dr_automation.restore import pods

    ids = []
    for a in actions_of(plan, PG_IN_PLACE, PG_NEW):
        d = a["database"]
        if phase == "safety" and a["action"] == PG_IN_PLACE:
            ids.append(pods.task_id("safety_dump", d))
        elif phase == "restore":
            ids.append(
                pods.task_id("restore_database" if a["action"] == PG_IN_PLACE else "restore_new_database", d)
            )
        elif phase == "rollback" and a["action"] == PG_IN_PLACE:
            ids.append(pods.task_id("rollback_database", d))
    if phase == "safety" and plan["safety"]["kubernetes"]:
        ids.append(pods.SAFETY_K8S)
    return ids


# -- prepare, stop, safety ----------------------------------------------------------------------------


def prepare(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Archived artifacts made readable before anything stops (a thaw can take hours in AWS)."""
    needed = {a.get("from") for a in plan["actions"]} | {a.get("stats") for a in plan["actions"]}
    urls = [
        u
        for u in plan["archived"]
        if u in needed or any(n and n.endswith("/objects/") and u.startswith(n) for n in needed)
    ]
    return b.thaw(estate, plan["backup_region"], urls) if urls else {"thawed": 0, "checked": 0}


def stop_services(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Every Deployment of the namespaces to zero; the previous replicas kept in S3 first (a retry
    reads them back instead of recording the zeros it made)."""
    from dr_automation.restore import kube

    namespaces = plan["stop"]["namespaces"]
    if not namespaces:
        return {"stopped": {}, "why": plan["stop"]["why"]}
    client = kube.api_client(estate)
    previous = read_state(estate, plan, SERVICES_STATE)
    if previous is None:
        previous = {
            "replicas": kube.deployments(client, namespaces),
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        put_json(estate, plan, state_url(plan, SERVICES_STATE), previous)
    kube.scale_deployments(client, {ref: 0 for ref in previous["replicas"]})
    return {"stopped": previous["replicas"], "state": state_url(plan, SERVICES_STATE)}


def safety_files(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """The version each object to be overwritten has now (None: it does not exist); the bucket's
    versioning keeps those versions, so nothing is copied."""
    recorded: dict[str, dict[str, str | None]] = {}
    for a in actions_of(plan, FILES):
        client = b.s3(estate, estate.primary_region.name)
        versions: dict[str, str | None] = {}
        for name in a["objects"]:
            key = a["prefix"] + name
            try:
                versions[key] = client.head_object(Bucket=a["bucket"], Key=key).get("VersionId")
            except Exception as exc:
                if b._code(exc) not in b.MISSING:
                    raise
                versions[key] = None
        recorded[a["bucket"]] = versions
    if recorded:
        put_json(estate, plan, plan["safety"]["location"] + "files-versions.json", recorded)
    return {"buckets": {k: len(v) for k, v in recorded.items()}}


def safety_secrets(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """The current version of each secret a restore will overwrite (Secrets Manager keeps it)."""
    recorded = {}
    sm = _sm(estate)
    for a in actions_of(plan, SECRETS):
        for secret_id in a["secret_ids"]:
            try:
                recorded[secret_id] = sm.describe_secret(SecretId=secret_id)
                stages = recorded[secret_id].get("VersionIdsToStages") or {}
                recorded[secret_id] = next((v for v, s in stages.items() if "AWSCURRENT" in s), None)
            except Exception as exc:
                if b._code(exc) != "ResourceNotFoundException":
                    raise
                recorded[secret_id] = None
    if recorded:
        put_json(estate, plan, state_url(plan, SECRETS_STATE), recorded)
    return {"secrets": len(recorded)}


def _sm(estate: Estate) -> Any:
    from dr_automation.backup.components import aws_client

    return aws_client(estate, "secretsmanager", estate.primary_region.name)


# -- restore ----------------------------------------------------------------------------------------


def restore_rds(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """RDS restores (snapshot or point in time) to a new instance each; an instance this run already
    created is left as it is (a retry does not restore twice)."""
    from dr_automation.backup.components import aws_client

    out = {}
    for a in actions_of(plan, RDS_SNAPSHOT, RDS_PITR):
        rds = aws_client(estate, "rds", a["region"])
        try:
            rds.describe_db_instances(DBInstanceIdentifier=a["instance"])
            out[a["system"]] = {"instance": a["instance"], "created": False}
            continue
        except Exception as exc:
            if b._code(exc) not in ("DBInstanceNotFound", "DBInstanceNotFoundFault"):
                raise
        tags = [
            {"Key": f"{estate.raw['organization']['tag_prefix']}:dr-restore-id", "Value": plan["restore_id"]}
        ]
        if a["action"] == RDS_SNAPSHOT:
            rds.restore_db_instance_from_db_snapshot(
                DBInstanceIdentifier=a["instance"], DBSnapshotIdentifier=a["snapshot"], Tags=tags
            )
        else:
            rds.restore_db_instance_to_point_in_time(
                SourceDBInstanceIdentifier=a["source_instance"],
                TargetDBInstanceIdentifier=a["instance"],
                RestoreTime=datetime.fromisoformat(a["restore_time"]),
                Tags=tags,
            )
        out[a["system"]] = {"instance": a["instance"], "created": True, "action": a["action"]}
    return out


def restore_files(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Each backed-up object copied back to its source key (server-side); every new version id is
    recorded, even when a copy fails half way, so a rollback deletes exactly those versions."""
    made: dict[str, dict[str, str]] = read_state(estate, plan, FILES_STATE) or {}
    try:
        for a in actions_of(plan, FILES):
            client = b.s3(estate, estate.primary_region.name)
            src_bucket, src_prefix = b.split_url(a["from"])
            for name in a["objects"]:
                key = a["prefix"] + name
                answer = client.copy_object(
                    Bucket=a["bucket"],
                    Key=key,
                    CopySource={"Bucket": src_bucket, "Key": src_prefix + name},
                    MetadataDirective="COPY",
                )
                made.setdefault(a["bucket"], {})[key] = answer.get("VersionId")
    finally:
        if made:
            put_json(estate, plan, state_url(plan, FILES_STATE), made)
    return {"objects": {bucket: len(keys) for bucket, keys in made.items()}}


def restore_configuration(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Kubernetes objects applied (stopped Deployments stay at zero until restart); secrets unsealed
    and put back as each secret's new current version."""
    from dr_automation.restore import kube

    out: dict[str, Any] = {}
    held = (read_state(estate, plan, SERVICES_STATE) or {}).get("replicas") or {}
    for a in actions_of(plan, K8S_APPLY):
        export = json.loads(gzip.decompress(read_bytes(estate, a["from"], plan["backup_region"])))
        out[a["system"]] = kube.apply_objects(
            estate, kube.api_client(estate), export["items"], hold_replicas={r: 0 for r in held}
        )
    for a in actions_of(plan, SECRETS):
        from dr_automation.backup.components import unseal

        envelope = json.loads(read_bytes(estate, a["from"], plan["backup_region"]))
        payload = json.loads(unseal(estate, envelope))
        sm = _sm(estate)
        for secret_id, value in payload.items():
            kwargs = (
                {"SecretString": value["secret_string"]}
                if "secret_string" in value
                else {"SecretBinary": value["secret_binary"]}
            )
            sm.put_secret_value(SecretId=secret_id, **kwargs)
        out[a["system"]] = {"secrets": sorted(payload)}
    return out


# -- verify ------------------------------------------------------------------------------------------


def live_stats(estate: Estate, database: str | None) -> dict[str, dict[str, Any]]:
    """Row counts and content checksums of every table, in one REPEATABLE READ snapshot, computed the
    way the backup's stats were (the toolbox's own query), through the primary database connection."""
    import psycopg2
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

    from dr_toolbox.pg import list_tables, table_stats

    conn_id = estate.connections["primary_database"]
    c = PostgresHook.get_connection(conn_id)
    conn = psycopg2.connect(
        host=c.host,
        port=c.port or 5432,
        user=c.login,
        password=c.password,
        dbname=database or c.schema,
        connect_timeout=10,
    )
    try:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        cur = conn.cursor()
        stats = table_stats(cur, list_tables(cur))
        conn.rollback()
    finally:
        conn.close()
    return stats


def verify_data(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Every restored table's rows and checksum equal the figures recorded at backup time; restored
    objects hash to the manifest's SHA-256; applied objects are there; RDS instances are available."""
    from dr_toolbox.dbops import compare_stats

    problems: list[str] = []
    out: dict[str, Any] = {}
    for a in actions_of(plan, PG_IN_PLACE, PG_NEW):
        recorded = json.loads(read_bytes(estate, a["stats"], plan["backup_region"]))["tables"]
        actual = live_stats(estate, a["into"] if a["action"] == PG_NEW else None)
        _, mismatches = compare_stats(recorded, actual)
        out[a["system"]] = {"tables": {t: actual.get(t) for t in recorded}, "mismatches": mismatches}
        problems += [f"{a['system']}: {m['table']}: {m['reason']}" for m in mismatches]
    for a in actions_of(plan, FILES):
        client = b.s3(estate, estate.primary_region.name)
        differ = [
            n for n in a["objects"] if object_sha256(client, a["bucket"], a["prefix"] + n) != a["sha256"][n]
        ]
        out[a["system"]] = {"objects": len(a["objects"]), "differ": differ}
        problems += [
            f"{a['system']}: s3://{a['bucket']}/{a['prefix']}{n} differs from the backup" for n in differ
        ]
    for a in actions_of(plan, K8S_APPLY):
        from dr_automation.restore import kube

        export = json.loads(gzip.decompress(read_bytes(estate, a["from"], plan["backup_region"])))
        client = kube.api_client(estate)
        plurals = {(k["api_version"], k["kind"]): k["plural"] for k in estate.kubernetes["resource_kinds"]}
        differ = []
        for item in export["items"]:
            meta = item["metadata"]
            path = kube.collection(
                item["apiVersion"], plurals[(item["apiVersion"], item["kind"])], meta["namespace"]
            )
            live = kube.call(client, "GET", f"{path}/{meta['name']}")
            if live is None or ("data" in item and live.get("data") != item["data"]):
                differ.append(f"{item['kind']}/{meta['namespace']}/{meta['name']}")
        out[a["system"]] = {"objects": len(export["items"]), "differ": differ}
        problems += [f"{a['system']}: {d} missing or different" for d in differ]
    for a in actions_of(plan, RDS_SNAPSHOT, RDS_PITR):
        from dr_automation.backup.components import aws_client

        found = aws_client(estate, "rds", a["region"]).describe_db_instances(
            DBInstanceIdentifier=a["instance"]
        )["DBInstances"]
        status = found[0]["DBInstanceStatus"] if found else "missing"
        out[a["system"]] = {"instance": a["instance"], "status": status}
        if status != "available":
            problems.append(f"{a['system']}: instance {a['instance']} is {status}")
    if problems:
        raise RuntimeError("restored data does not match the backup: " + "; ".join(problems[:10]))
    return out


def object_sha256(client: Any, bucket: str, key: str) -> str | None:
    """The stored object's SHA-256: S3's own checksum when it has one, else hashed from the bytes."""
    import hashlib

    from dr_automation.backup.manifest import checksum_hex

    try:
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except Exception as exc:
        if b._code(exc) in b.MISSING:
            return None
        raise
    stored = checksum_hex(head.get("ChecksumSHA256"))
    if stored:
        return stored
    digest = hashlib.sha256()
    for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def restart_services(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Every stopped Deployment back to the replicas it had before the restore."""
    from dr_automation.restore import kube

    previous = (read_state(estate, plan, SERVICES_STATE) or {}).get("replicas") or {}
    if not previous:
        return {"restarted": {}}
    kube.scale_deployments(kube.api_client(estate), previous)
    return {"restarted": previous}


def verify_health(estate: Estate, plan: Mapping[str, Any]) -> dict[str, Any]:
    """Deployments ready at their desired replicas, and the primary region's API answering /health
    (which queries the database) healthy."""
    from dr_automation.failover import probe_region
    from dr_automation.restore import kube

    previous = (read_state(estate, plan, SERVICES_STATE) or {}).get("replicas") or {}
    states = kube.ready(kube.api_client(estate), previous) if previous else {}
    not_ready = {r: s for r, s in states.items() if s["ready"] < s["desired"]}
    probe = probe_region(estate, estate.primary_region.name)
    problems = [f"{r}: {s['ready']}/{s['desired']} ready" for r, s in not_ready.items()]
    if not probe["healthy"]:
        problems.append(f"{probe['url']} answered {probe['status']}")
    if problems:
        raise RuntimeError("the application is not healthy after the restore: " + "; ".join(problems))
    return {"deployments": states, "probe": probe}


# -- rollback ----------------------------------------------------------------------------------------

STARTED = frozenset({"success", "failed", "up_for_retry", "running"})


def rollback_plan(plan: Mapping[str, Any], states: Mapping[str, str | None]) -> dict[str, Any]:
    """What the rollback puts back, from what ran: a database only if its restore started and the
    safety dump exists; files and configuration only if their restore started."""
    if not plan["request"]["rollback_on_failure"]:
        return {
            "rollback": False,
            "why": "rollback_on_failure is false: left as it is for investigation",
            "databases": [],
        }
    from dr_automation.restore import pods

    databases = []
    for task in chosen_pods(plan, "rollback"):
        d = task.split("rollback_database_", 1)[1]
        restored = states.get(pods.task_id("restore_database", d)) in STARTED
        if restored and states.get(pods.task_id("safety_dump", d)) == "success":
            databases.append(task)
    return {
        "rollback": True,
        "databases": databases,
        "files": states.get("restore_files") in STARTED,
        "configuration": states.get("restore_configuration") in STARTED
        and (not plan["safety"]["kubernetes"] or states.get(pods.SAFETY_K8S) == "success"),
        "services": states.get("stop_services") in STARTED,
    }


def rollback_rest(estate: Estate, plan: Mapping[str, Any], what: Mapping[str, Any]) -> dict[str, Any]:
    """Put files (delete the versions the restore made), configuration (apply the safety export;
    secrets back to their previous version) back, then restart services. Each part is attempted
    even if another fails; the step fails naming what could not be put back."""
    from dr_automation.restore import kube

    done: dict[str, Any] = {}
    problems: list[str] = []

    def part(name: str, fn: Callable[[], Any]) -> None:
        try:
            done[name] = fn()
        except Exception as exc:
            problems.append(f"{name}: {type(exc).__name__}: {str(exc)[:300]}")

    def files() -> dict[str, int]:
        made = read_state(estate, plan, FILES_STATE) or {}
        client = b.s3(estate, estate.primary_region.name)
        for bucket, keys in made.items():
            for key, version in keys.items():
                if version:
                    client.delete_object(Bucket=bucket, Key=key, VersionId=version)
        return {bucket: len(keys) for bucket, keys in made.items()}

    def configuration() -> dict[str, Any]:
        out: dict[str, Any] = {}
        if plan["safety"]["kubernetes"]:
            url = plan["safety"]["location"] + K8S_SAFETY
            export = json.loads(gzip.decompress(read_bytes(estate, url, plan["safety"]["region"])))
            held = (read_state(estate, plan, SERVICES_STATE) or {}).get("replicas") or {}
            out["kubernetes"] = kube.apply_objects(
                estate, kube.api_client(estate), export["items"], hold_replicas={r: 0 for r in held}
            )
        versions = read_state(estate, plan, SECRETS_STATE) or {}
        sm = _sm(estate)
        for secret_id, version in versions.items():
            if not version:
                continue
            current = next(
                (
                    v
                    for v, s in (
                        sm.describe_secret(SecretId=secret_id).get("VersionIdsToStages") or {}
                    ).items()
                    if "AWSCURRENT" in s
                ),
                None,
            )
            if current != version:
                sm.update_secret_version_stage(
                    SecretId=secret_id,
                    VersionStage="AWSCURRENT",
                    MoveToVersionId=version,
                    RemoveFromVersionId=current,
                )
        out["secrets"] = len(versions)
        return out

    if what.get("files"):
        part("files", files)
    if what.get("configuration"):
        part("configuration", configuration)
    if what.get("services"):
        part("services", lambda: restart_services(estate, plan))
    if problems:
        raise RuntimeError("rollback incomplete: " + "; ".join(problems))
    return done
