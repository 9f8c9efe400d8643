"""The failure callback every task of the bundle gets (through dag_defaults.default_args).

A failed DR task pages the on-call route of its DAG's incident level (``notifications.failure_levels``):
the INTERNAL recipients only (customers never hear about a failed task), with the task, the error
(redacted and truncated) and a link to the task's log in the Airflow UI, and it is audited.

This module is imported at DAG-parse time, so it imports nothing heavy at module level. The
callback never raises into Airflow: a broken notification path is logged and audited instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 500
CALLBACK_ERROR_EVENT = "notification.callback_error"
CALLBACK_ACTOR = "airflow:on_failure_callback"
# A callback holds the worker slot: keep its retries short.
CALLBACK_RETRIES = 1
CALLBACK_RETRY_DELAY_SECONDS = 1.0


def task_log_url(
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int | None = None,
    map_index: int | None = None,
    *,
    base_url: str | None = None,
) -> str:
    """The task's log page in the Airflow 3 UI, from ``[api] base_url`` (same shape as ti.log_url)."""
    if base_url is None:
        from airflow.sdk.configuration import conf

        base_url = conf.get("api", "base_url", fallback="http://localhost:8080/")
    url = f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}/tasks/{quote(task_id)}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    if try_number:
        url += f"?try_number={try_number}"
    return url


def describe_error(exception: BaseException | str | None) -> str:
    """One bounded line, secrets redacted and URLs removed (a webhook or presigned URL is a secret)."""
    if exception is None:
        return "unknown error (Airflow passed no exception)"
    from dr_automation.notifications.channels import safe_error

    if isinstance(exception, BaseException):
        text = safe_error(exception)
    else:
        text = safe_error(RuntimeError(str(exception))).removeprefix("RuntimeError: ")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _ids(context: Mapping[str, Any]) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None),
        "run_id": getattr(ti, "run_id", None) or context.get("run_id"),
        "task_id": getattr(ti, "task_id", None),
        "try_number": getattr(ti, "try_number", None),
        "map_index": getattr(ti, "map_index", None),
    }


def notify_task_failure(context: Mapping[str, Any], *, estate: Any = None) -> dict[str, Any]:
    """Page the failing DAG's on-call route about this task; returns notify_incident's result."""
    from dr_automation.incidents import failure_level
    from dr_automation.notifications.incident import notify_incident, stable_incident_id

    if estate is None:
        from dr_automation.estate import load_estate

        estate = load_estate()
    ids = _ids(context)
    dag_id, run_id, task_id = ids["dag_id"], ids["run_id"], ids["task_id"]
    if not dag_id or not run_id or not task_id:
        raise ValueError("context: no task instance (dag_id, run_id and task_id are required)")
    try_number = ids["try_number"]
    map_index = ids["map_index"]
    level = failure_level(estate, dag_id)
    error = describe_error(context.get("exception"))
    url = task_log_url(dag_id, run_id, task_id, try_number, map_index)
    where = f"{task_id}[{map_index}]" if isinstance(map_index, int) and map_index >= 0 else task_id
    title = f"DR task failed: {dag_id}.{where}"
    if len(title) > 200:
        title = title[:197] + "..."
    summary = "\n".join(
        [
            f"Task {where} of DAG {dag_id} failed (try {try_number}).",
            f"Run: {run_id}",
            f"Error: {error}",
            f"Log: {url}",
        ]
    )
    incident_id = stable_incident_id(dag_id, run_id, task_id, str(map_index), str(try_number))
    return notify_incident(
        level,
        title,
        summary,
        incident_id=incident_id,
        estate=estate,
        links={"task_log": url},
        audiences={"internal"},
        context=context,
        actor=CALLBACK_ACTOR,
        retries=CALLBACK_RETRIES,
        retry_delay_seconds=CALLBACK_RETRY_DELAY_SECONDS,
    )


def on_task_failure(context: Mapping[str, Any]) -> None:
    """on_failure_callback: notify and audit; never raise into Airflow."""
    try:
        result = notify_task_failure(context)
        if result["counts"]["failed"]:
            log.warning(
                "failure notification %s: %d of %d deliveries failed",
                result["incident_id"],
                result["counts"]["failed"],
                result["counts"]["total"],
            )
    except Exception as exc:
        _report_callback_error(context, exc)


def _report_callback_error(context: Mapping[str, Any], exc: Exception) -> None:
    try:
        from dr_automation.notifications.channels import safe_error

        message = safe_error(exc)
    except Exception:
        message = type(exc).__name__
    log.error("failure callback could not notify: %s", message)
    try:
        from dr_automation.audit import AuditLog
        from dr_automation.estate import load_estate

        ids = _ids(context)
        AuditLog.from_estate(load_estate()).record(
            CALLBACK_ERROR_EVENT,
            status="failed",
            actor=CALLBACK_ACTOR,
            detail={"error": message, "try_number": ids["try_number"]},
            dag_id=ids["dag_id"],
            run_id=ids["run_id"],
            task_id=ids["task_id"],
        )
    except Exception as audit_exc:
        log.error("failure callback could not audit its own failure: %s", type(audit_exc).__name__)
