"""What the board reads from Airflow itself: pending approvals and the latest run of each DAG.

Runs inside the api-server (the plugin's FastAPI app), so it reads the metadata database directly,
limited to the DAGs the signed-in user may read (the auth manager decides, as for the REST API).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from dr_automation.status.snapshot import dag_link, run_link, task_link


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class MetadataAirflowState:
    """Reads through a SQLAlchemy session; `readable` is None (every DAG) or the permitted dag ids."""

    session: Any
    readable: Collection[str] | None = None
    limit: int = 50

    def _allowed(self, dag_ids: Sequence[str] | None = None) -> list[str] | None:
        if self.readable is None:
            return list(dag_ids) if dag_ids is not None else None
        return [d for d in (dag_ids if dag_ids is not None else self.readable) if d in self.readable]

    def pending_approvals(self) -> list[dict[str, Any]]:
        """HITL requests without an answer whose task still waits for one (newest first)."""
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.state import TaskInstanceState
        from sqlalchemy import select

        query = (
            select(HITLDetail, TaskInstance)
            .join(TaskInstance, HITLDetail.ti_id == TaskInstance.id)
            .where(HITLDetail.responded_at.is_(None))
            .where(TaskInstance.state == TaskInstanceState.AWAITING_INPUT)
            .order_by(HITLDetail.created_at.desc())
            .limit(self.limit)
        )
        allowed = self._allowed()
        if allowed is not None:
            query = query.where(TaskInstance.dag_id.in_(allowed))
        out = []
        for detail, ti in self.session.execute(query).all():
            answer = task_link(ti.dag_id, ti.run_id, ti.task_id) + (
                f"/mapped/{ti.map_index}" if ti.map_index >= 0 else ""
            )
            out.append(
                {
                    "dag_id": ti.dag_id,
                    "run_id": ti.run_id,
                    "task_id": ti.task_id,
                    "map_index": ti.map_index,
                    "subject": detail.subject,
                    "body": detail.body,
                    "options": list(detail.options or []),
                    "assignees": [a.get("name") or a.get("id") for a in detail.assignees or []],
                    "created_at": _iso(detail.created_at),
                    "answer_link": f"{answer}/required_actions",
                    "run_link": run_link(ti.dag_id, ti.run_id),
                }
            )
        return out

    def latest_runs(self, dag_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each DAG's newest run (by run_after): state and link; a DAG without runs is absent."""
        from airflow.models.dagrun import DagRun
        from sqlalchemy import func, select

        allowed = self._allowed(dag_ids) or []
        if not allowed:
            return {}
        newest = (
            select(DagRun.dag_id, func.max(DagRun.run_after).label("run_after"))
            .where(DagRun.dag_id.in_(allowed))
            .group_by(DagRun.dag_id)
            .subquery()
        )
        query = select(DagRun).join(
            newest, (DagRun.dag_id == newest.c.dag_id) & (DagRun.run_after == newest.c.run_after)
        )
        out = {}
        for run in self.session.scalars(query):
            out[run.dag_id] = {
                "run_id": run.run_id,
                "state": str(run.state.value if hasattr(run.state, "value") else run.state),
                "run_after": _iso(run.run_after),
                "start_date": _iso(run.start_date),
                "end_date": _iso(run.end_date),
                "run_link": run_link(run.dag_id, run.run_id),
                "dag_link": dag_link(run.dag_id),
            }
        return out
