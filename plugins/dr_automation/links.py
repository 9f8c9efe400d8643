"""Operator extra links to the AWS console pages of what the bundle's tasks touched.

Registered by the bundle's plugin (plugins/dr_plugin.py) so the UI can render them.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink
from airflow.sdk import BaseOperatorLink


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


# -- backups: derived from the task instance alone ---------------------------------------------------
# A backup run's locations follow from its DAG (the tier) and run id (the backup id), so these links
# need nothing persisted by the task: they work for every backup task, Python, pod or provider
# operator alike (the plugin registers them as global links; other DAGs' tasks get none).


@functools.lru_cache(maxsize=4)
def _estate(path: str, mtime: float) -> Any:
    from dr_automation.estate import load_estate

    return load_estate(path)


def _tier_of(dag_id: str) -> tuple[Any, Any] | None:
    """(estate, tier plan) of a backup tier DAG, None for any other DAG."""
    from dr_automation.backup.plan import tier_plan
    from dr_automation.estate import estate_path

    path = estate_path()
    estate = _estate(str(path), path.stat().st_mtime)
    for key, tier in estate.tiers.items():
        if tier.dag_id == dag_id:
            return estate, tier_plan(estate, key)
    return None


class _BackupRunLink(BaseOperatorLink):
    """A console URL computed from (dag_id, run_id, task_id, map_index); '' when not applicable."""

    name: ClassVar[str]

    def url(self, estate: Any, plan: Any, backup: str, ti_key: Any) -> str | None:
        raise NotImplementedError

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        try:
            found = _tier_of(ti_key.dag_id)
            if found is None:
                return ""
            from dr_automation.backup.plan import backup_id

            return self.url(*found, backup_id(ti_key.run_id), ti_key) or ""
        except Exception:  # a link must never break the task page
            return ""


class S3BackupPrefixLink(_BackupRunLink):
    """This run's backup in the tier's home location (the S3 console's folder view)."""

    name = "Backup in S3"

    def url(self, estate: Any, plan: Any, backup: str, ti_key: Any) -> str:
        from dr_automation.status.snapshot import s3_prefix_console

        home = plan.home
        return s3_prefix_console(home.bucket, plan.final_prefix(backup), home.region)


class S3BackupManifestLink(_BackupRunLink):
    """This run's manifest.json in the tier's home location (the S3 console's object view)."""

    name = "Backup manifest (S3)"

    def url(self, estate: Any, plan: Any, backup: str, ti_key: Any) -> str:
        from dr_automation.status.snapshot import s3_object_console

        location, key = plan.manifest_keys(backup)[0]
        return s3_object_console(location.bucket, key, location.region)


class RdsSnapshotLink(_BackupRunLink):
    """The RDS snapshot a create/record snapshot task instance made (mapped over the tier's
    rds_snapshot systems in config order), in the RDS console."""

    name = "RDS snapshot"

    def url(self, estate: Any, plan: Any, backup: str, ti_key: Any) -> str | None:
        from dr_automation.backup.plan import CREATE_SNAPSHOT, RECORD_SNAPSHOT
        from dr_automation.backup.snapshots import snapshot_id

        systems = plan.systems_of("rds_snapshot")
        if ti_key.task_id not in (CREATE_SNAPSHOT, RECORD_SNAPSHOT) or not 0 <= ti_key.map_index < len(
            systems
        ):
            return None
        identifier = snapshot_id(plan, systems[ti_key.map_index]["name"], backup)
        region = plan.work.region
        return f"https://console.aws.amazon.com/rds/home?region={region}#db-snapshot:id={identifier}"
