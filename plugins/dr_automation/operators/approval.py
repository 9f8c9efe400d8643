"""The failover's approval gate: Airflow's ApprovalOperator, with the answer kept for the record.

On Airflow 3.3 the HITL operator's resumed result does not reach XCom as ``return_value`` (seen in
the sandbox), yet the failover record must say who approved or rejected, and when. This subclass
pushes the answer under its own key (``approval``) before the standard skip/continue behaviour.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

APPROVAL_XCOM_KEY = "approval"


class RecordedApprovalOperator(ApprovalOperator):
    """ApprovalOperator whose answer (option, user, time) is pushed to XCom key ``approval``."""

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if "error" not in event:
            user = event.get("responded_by_user") or {}
            context["ti"].xcom_push(
                key=APPROVAL_XCOM_KEY,
                value={
                    "chosen_options": list(event.get("chosen_options") or []),
                    "responded_by_user": {"id": user.get("id"), "name": user.get("name")},
                    "responded_at": str(event.get("responded_at")),
                },
            )
        return super().execute_complete(context, event)
