"""The toolbox pods of a restore, known when the DAG is parsed (so every pod is rendered and
validated without a run): per PostgreSQL database of the estate, a safety dump, an in-place restore,
a restore into a new database and a rollback restore; and one export of the live Kubernetes objects.

Branch tasks run only the pods the run's plan needs. Where a pod's arguments depend on the backup
(the dump's location and SHA-256, the new database's name), they are read from the ``validate`` task's
XCom by Jinja; safety locations derive from the run id (``dr_restore_id`` filter), like the plan's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate

RESTORE_ID_FILTER = "dr_restore_id"
RID = "{{ run_id | " + RESTORE_ID_FILTER + " }}"
SAFETY_K8S = "safety_kubernetes"
POD_KINDS = ("safety_dump", "restore_database", "restore_new_database", "rollback_database")


def task_id(kind: str, database: str) -> str:
    return f"{kind}_{database}"


def databases(estate: Estate) -> list[str]:
    """The estate's PostgreSQL databases whose DSN pods can read (a Kubernetes Secret)."""
    return [
        d
        for d, spec in estate.databases.items()
        if spec.get("engine") == "postgres" and spec.get("credentials_secret")
    ]


def _xcom(key: str) -> str:
    return "{{ ti.xcom_pull(task_ids='validate', key='" + key + "') }}"


def arguments(estate: Estate, kind: str, database: str) -> list[str]:
    """The toolbox command line of one pod; mirrors the plan's safety location (``restore.plan``)."""
    from dr_automation.backup.pods import dsn_env

    primary = estate.primary_region
    base = f"s3://{primary.backup_bucket}/restores/{RID}/"
    kms = primary.kms_key_alias
    result = ["--result-out", f"{base}results/{kind}-{database}.json", "--result-kms-key-id", kms]
    dsn = ["--dsn-env", dsn_env(database)]
    dump = f"{base}safety/{database}.pgdump"
    if kind == "safety_dump":
        return [
            *result,
            "db-dump",
            *dsn,
            "--out",
            dump,
            "--kms-key-id",
            kms,
            "--label",
            f"dr-restore-id={RID}",
        ]
    restore = [
        *result,
        "db-restore",
        "--from",
        _xcom(f"db.{database}.from"),
        *dsn,
        "--expect-sha256",
        _xcom(f"db.{database}.sha256"),
    ]
    if kind == "restore_database":
        return [*restore, "--clean"]
    if kind == "restore_new_database":
        return [*restore, "--create-database", _xcom(f"db.{database}.into")]
    if kind == "rollback_database":
        return [*result, "db-restore", "--from", dump, *dsn, "--clean"]
    raise ValueError(f"kind: {kind!r} is not one of {POD_KINDS}")


def safety_k8s_arguments(estate: Estate) -> list[str]:
    primary = estate.primary_region
    base = f"s3://{primary.backup_bucket}/restores/{RID}/"
    k8s = estate.kubernetes
    source = ["--api-url", k8s["api_url"]] if k8s.get("api_url") else ["--in-cluster"]
    return [
        "--result-out",
        f"{base}results/{SAFETY_K8S}.json",
        "--result-kms-key-id",
        primary.kms_key_alias,
        "export-k8s-objects",
        *source,
        "--namespaces",
        ",".join(k8s["namespaces"]),
        "--kinds",
        ",".join(k["plural"] for k in k8s["resource_kinds"]),
        "--out",
        f"{base}safety/kubernetes-objects.json.gz",
        "--kms-key-id",
        primary.kms_key_alias,
    ]


def pod(estate: Estate, kind: str, database: str | None = None, **kwargs: Any) -> Any:
    """One restore pod with the bundle's house defaults (``dr_automation.pods.toolbox_pod``)."""
    from dr_automation.backup.pods import dsn_env
    from dr_automation.pods import toolbox_pod

    poll = float(estate.kubernetes.get("pod_poll_seconds", 1.0))
    common = {
        "estate": estate,
        "poll_interval": poll,
        "startup_check_interval_seconds": poll,
        "labels": {"dr-automation/restore": kind.replace("_", "-")},
        **kwargs,
    }
    if kind == SAFETY_K8S:
        in_cluster = not estate.kubernetes.get("api_url")
        return toolbox_pod(
            SAFETY_K8S, safety_k8s_arguments(estate), automount_service_account_token=in_cluster, **common
        )
    assert database is not None
    ref = estate.databases[database]["credentials_secret"]
    return toolbox_pod(
        task_id(kind, database),
        arguments(estate, kind, database),
        secret_env={dsn_env(database): (ref["name"], ref["key"])},
        size="medium",
        **common,
    )
