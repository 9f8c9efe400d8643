"""Incident levels, stakeholder routing and business impact, all driven by the estate config.

Pure Python and cheap to import (no Airflow, no jsonschema): notifiers, DAGs at parse time, the
toolbox and the UI all use it. Bad arguments raise IncidentInputError naming the field.
"""

from __future__ import annotations

from dr_automation.incidents.impact import (
    RevenueLoss,
    SlaCredit,
    revenue_loss,
    sla_credit,
    uptime_percent,
)
from dr_automation.incidents.levels import (
    IncidentInputError,
    IncidentLevel,
    classify,
    incident_level,
    incident_levels,
)
from dr_automation.incidents.routing import (
    AS_NEEDED,
    AS_REQUIRED,
    Recipient,
    failure_level,
    named,
    route,
    routing_table,
)

__all__ = [
    "AS_NEEDED",
    "AS_REQUIRED",
    "IncidentInputError",
    "IncidentLevel",
    "Recipient",
    "RevenueLoss",
    "SlaCredit",
    "classify",
    "failure_level",
    "incident_level",
    "incident_levels",
    "named",
    "revenue_loss",
    "route",
    "routing_table",
    "sla_credit",
    "uptime_percent",
]
