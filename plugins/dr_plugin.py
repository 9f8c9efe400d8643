"""The bundle's Airflow plugin: registers what the UI must know about (operator extra links).

The only plugin entry file: plugins/.airflowignore keeps the plugins manager out of the library
packages, which every component imports by name instead.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from dr_automation.links import Route53HealthChecksLink, Route53HostedZoneLink


class DrAutomationPlugin(AirflowPlugin):
    name = "dr_automation"
    operator_extra_links = [Route53HostedZoneLink(), Route53HealthChecksLink()]
