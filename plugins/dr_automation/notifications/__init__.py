"""Incident notifications: channel notifiers, the incident fan-out and the DAG failure callback.

Cheap to import (DAG files import it through dag_defaults at parse time): the notifier classes,
and with them Airflow's notifier base and the providers' hooks, load on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dr_automation.notifications.callbacks import on_task_failure

if TYPE_CHECKING:
    from dr_automation.notifications.channels import (
        ChatWebhookNotifier,
        Delivery,
        NotificationDeliveryError,
        SesEmailNotifier,
        SnsTopicNotifier,
        StatusPageWebhookNotifier,
    )
    from dr_automation.notifications.incident import IncidentNotifier, build_message, notify_incident

_LAZY = {
    "ChatWebhookNotifier": "channels",
    "Delivery": "channels",
    "NotificationDeliveryError": "channels",
    "SesEmailNotifier": "channels",
    "SnsTopicNotifier": "channels",
    "StatusPageWebhookNotifier": "channels",
    "IncidentNotifier": "incident",
    "build_message": "incident",
    "notify_incident": "incident",
}

__all__ = [
    "ChatWebhookNotifier",
    "Delivery",
    "IncidentNotifier",
    "NotificationDeliveryError",
    "SesEmailNotifier",
    "SnsTopicNotifier",
    "StatusPageWebhookNotifier",
    "build_message",
    "notify_incident",
    "on_task_failure",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
