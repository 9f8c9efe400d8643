"""The callback of each tier's DeadlineAlert: a backup run not finished within the tier's RPO pages the
tier DAG's on-call route (``notifications.failure_levels``), internal recipients only.

Runs in the triggerer, which cannot import from the dags folder: that is why it lives here. It is an
AsyncCallback; the notification fan-out is synchronous (provider hooks), so it runs in a thread and
never blocks the triggerer's event loop. The deadline is counted from when the run was queued, so a
run stuck behind its predecessor (one run at a time per tier) is late too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

ACTOR = "airflow:deadline_alert"


def notify_deadline_missed(
    tier: str, dag_id: str, rpo_minutes: int, context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Notify that `dag_id`'s run missed its RPO; the incident id is stable per run (one page per run)."""
    from dr_automation.estate import load_estate
    from dr_automation.incidents import failure_level
    from dr_automation.notifications.incident import notify_incident, stable_incident_id

    estate = load_estate()
    run = dict((context or {}).get("dag_run") or {})
    run_id = str(run.get("run_id") or "unknown run")
    deadline = (context or {}).get("deadline") or {}
    summary = "\n".join(
        [
            f"Backup run {run_id} of {dag_id} ({tier}) has not finished within its {rpo_minutes}-minute RPO.",
            f"Queued at: {run.get('queued_at') or 'unknown'}; deadline: {deadline.get('deadline_time', 'unknown')}.",
            "Until it finishes, the newest complete backup of this tier is older than the RPO. "
            "Check the run's running and queued tasks (a slow pod, throttled AWS calls, a full pool).",
        ]
    )
    result = notify_incident(
        failure_level(estate, dag_id),
        f"Backup {dag_id} missed its {rpo_minutes} min RPO",
        summary,
        incident_id=stable_incident_id(dag_id, run_id, "rpo-deadline"),
        estate=estate,
        audiences={"internal"},
        actor=ACTOR,
    )
    log.warning(
        "%s run %s missed its RPO: incident %s (%s)", dag_id, run_id, result["incident_id"], result["status"]
    )
    return {"incident_id": result["incident_id"], "status": result["status"], "counts": result["counts"]}


async def backup_deadline_missed(
    tier: str, dag_id: str, rpo_minutes: int, context: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """AsyncCallback entry point (kwargs from the DAG's DeadlineAlert, context from the scheduler)."""
    return await asyncio.to_thread(notify_deadline_missed, tier, dag_id, rpo_minutes, context)
