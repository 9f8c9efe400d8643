"""Operator extra links to the AWS console pages of what the bundle's tasks touched.

Registered by the bundle's plugin (plugins/dr_plugin.py) so the UI can render them.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink


class Route53HostedZoneLink(BaseAwsLink):
    """The hosted zone's record sets in the Route 53 console."""

    name = "Route 53 hosted zone"
    key = "route53_hosted_zone"
    format_str = BASE_AWS_CONSOLE_LINK + "/route53/v2/hostedzones#ListRecordSets/{zone_id}"


class Route53HealthChecksLink(BaseAwsLink):
    """The Route 53 health checks page (status of every region's check)."""

    name = "Route 53 health checks"
    key = "route53_health_checks"
    format_str = BASE_AWS_CONSOLE_LINK + "/route53/healthchecks/home#/"
