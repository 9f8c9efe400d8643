"""The bundle's Airflow plugin: registers what the UI must know about (operator extra links, and
the DR status board: its FastAPI app and its navigation entry, dr_automation.status.app).

The only plugin entry file: plugins/.airflowignore keeps the plugins manager out of the library
packages, which every component imports by name instead.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dr_automation.links import (
    RdsSnapshotLink,
    Route53HealthChecksLink,
    Route53HostedZoneLink,
    S3BackupManifestLink,
    S3BackupPrefixLink,
)
from dr_automation.status.app import EXTERNAL_VIEW, FASTAPI_APP


class DrAutomationPlugin(AirflowPlugin):
    name = "dr_automation"
    operator_extra_links = [
        Route53HostedZoneLink(),
        Route53HealthChecksLink(),
    ]
    # Computed from the task instance alone; empty (hidden) outside the backup tier DAGs.
    global_operator_extra_links = [S3BackupPrefixLink(), S3BackupManifestLink(), RdsSnapshotLink()]
    fastapi_apps = [FASTAPI_APP]
    external_views = [EXTERNAL_VIEW]
