"""The toolbox pods of a tier: one mapped KubernetesPodOperator per pod-run system type.

Each type's pod is built once with ``toolbox_pod_partial`` (the bundle's house defaults) and expanded
over literal argument lists, one per batch of systems (``dr-toolbox batch`` runs a batch's commands
side by side; a batch of one is the system's own command), known when the DAG is parsed; so every
pod can be rendered and validated without a run, and a bigger estate is more mapped pods, not more
code.

Every pod writes its JSON result, success or failure, next to the backup (``--result-out``): the
manifest reads why a pod failed after the pod is gone. Credentials reach pods only as Secret
references (``secret_env``), never as values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dr_automation.backup.plan import (
    BACKUP_ID_TEMPLATE,
    POD_TYPES,
    TierPlan,
    batch_label,
    component_task_id,
)

if TYPE_CHECKING:
    from dr_automation.estate import Estate

# What each type writes under its component prefix.
ARTIFACTS = {
    "postgres_database": "{name}.pgdump",
    "kubernetes_objects": "objects.json.gz",
    "neo4j": "graph.jsonl.gz",
}
NEO4J_HTTP_PORT = 7474
DEFAULT_POLL_SECONDS = 1.0
# Jobs of a batch pod at a time (each a process: a dump or an export, mostly waiting on I/O).
POD_BATCH_PARALLEL = 4
POD_SIZE = {"postgres_database": "medium", "kubernetes_objects": "small", "neo4j": "medium"}


def dsn_env(database: str) -> str:
    return f"DB_DSN_{database.upper()}"


def neo4j_password_env(database: str) -> str:
    return f"NEO4J_PASSWORD_{database.upper()}"


def neo4j_http_uri(spec: Mapping[str, Any]) -> str:
    """The cluster's HTTP API: `http_uri`, else the bolt host on Neo4j's HTTP port."""
    if spec.get("http_uri"):
        return str(spec["http_uri"]).rstrip("/")
    host = urlsplit(spec["bolt_uri"]).hostname
    return f"http://{host}:{NEO4J_HTTP_PORT}"


def _kind_plurals(estate: Estate, kinds: Any) -> list[str]:
    known = {k["kind"]: k["plural"] for k in estate.kubernetes["resource_kinds"]}
    return list(known.values()) if kinds == "all" else [known[k] for k in kinds]


def pod_arguments(estate: Estate, plan: TierPlan, system: Mapping[str, Any]) -> list[str]:
    """The toolbox command line of one system (templated: the backup id is rendered per run)."""
    name, kind = system["name"], system["type"]
    backup = BACKUP_ID_TEMPLATE
    out = plan.work.url(plan.component_prefix(backup, name) + ARTIFACTS[kind].format(name=name))
    common = [
        "--result-out",
        plan.work.url(plan.result_key(backup, name)),
        "--result-kms-key-id",
        plan.work.kms_key_alias,
    ]
    storage = ["--kms-key-id", plan.work.kms_key_alias, "--storage-class", plan.work.storage_class]
    if kind == "postgres_database":
        labels = [f"dr-tier={plan.key}", f"dr-system={name}", f"dr-backup-id={backup}"]
        return [
            *common,
            "db-dump",
            "--dsn-env",
            dsn_env(system["database"]),
            "--out",
            out,
            *storage,
            *[arg for label in labels for arg in ("--label", label)],
        ]
    if kind == "kubernetes_objects":
        k8s = estate.kubernetes
        source = ["--api-url", k8s["api_url"]] if k8s.get("api_url") else ["--in-cluster"]
        return [
            *common,
            "export-k8s-objects",
            *source,
            "--namespaces",
            ",".join(k8s["namespaces"]),
            "--kinds",
            ",".join(_kind_plurals(estate, system["kinds"])),
            "--out",
            out,
            *storage,
        ]
    if kind == "neo4j":
        spec = estate.databases[system["database"]]
        return [
            *common,
            "neo4j-backup",
            "--uri",
            neo4j_http_uri(spec),
            "--password-env",
            neo4j_password_env(system["database"]),
            "--out",
            out,
            *storage,
        ]
    raise ValueError(f"system {name!r}: type {kind!r} is not run in a toolbox pod (pod types: {POD_TYPES})")


def pod_secrets(
    estate: Estate, system_type: str, systems: list[Mapping[str, Any]]
) -> dict[str, tuple[str, str]]:
    """Secret references the type's pods need: the DSN or password of each database they back up."""
    out: dict[str, tuple[str, str]] = {}
    for system in systems:
        database = system.get("database")
        if system_type == "postgres_database":
            ref = estate.databases[database]["credentials_secret"]
            out[dsn_env(database)] = (ref["name"], ref["key"])
        elif system_type == "neo4j":
            ref = estate.databases[database]["password_secret"]
            out[neo4j_password_env(database)] = (ref["name"], ref["key"])
    return out


def pod_task(estate: Estate, plan: TierPlan, system_type: str, **task_kwargs: Any) -> Any:
    """The mapped pod of `system_type`: one instance per batch of the tier's systems of that type,
    shown by the batch's label (the system's name for a batch of one)."""
    from dr_automation.pods import toolbox_pod_partial

    systems = plan.systems_of(system_type)
    in_cluster = system_type == "kubernetes_objects" and not estate.kubernetes.get("api_url")
    poll = float(estate.kubernetes.get("pod_poll_seconds", DEFAULT_POLL_SECONDS))
    partial = toolbox_pod_partial(
        component_task_id(system_type),
        estate=estate,
        secret_env=pod_secrets(estate, system_type, systems),
        size=POD_SIZE[system_type],
        labels={"dr-automation/tier": plan.key, "dr-automation/system-type": system_type.replace("_", "-")},
        # The Kubernetes export reads the API with the pod's service account when in a cluster.
        automount_service_account_token=in_cluster,
        # Backups are short: notice a finished pod within a second instead of the default two/five.
        poll_interval=poll,
        startup_check_interval_seconds=poll,
        # The system name, from --result-out's file name, instead of a bare map index in the UI.
        map_index_template="{{ task.arguments[1].split('/')[-1] | replace('.json', '') }}",
        **task_kwargs,
    )
    return partial.expand(arguments=[batch_arguments(estate, plan, b) for b in plan.batches_of(system_type)])


def batch_arguments(estate: Estate, plan: TierPlan, systems: list[Mapping[str, Any]]) -> list[str]:
    """One pod's command line for a batch: the system's own command when alone, else ``batch`` with
    each system's command as a job (its own result file); the batch's result is named by its label,
    like a system's, so the label shows in the UI either way."""
    if len(systems) == 1:
        return pod_arguments(estate, plan, systems[0])
    label = batch_label([s["name"] for s in systems])
    jobs = [arg for s in systems for arg in ("--job", json.dumps(pod_arguments(estate, plan, s)))]
    return [
        "--result-out",
        plan.work.url(plan.result_key(BACKUP_ID_TEMPLATE, label)),
        "--result-kms-key-id",
        plan.work.kms_key_alias,
        "batch",
        "--parallel",
        str(POD_BATCH_PARALLEL),
        *jobs,
    ]
