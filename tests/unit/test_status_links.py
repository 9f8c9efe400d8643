"""The board's plugin entries and the backup console links (computed from the task instance alone)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from dr_automation.backup.plan import backup_id, tier_plan
from dr_automation.backup.snapshots import snapshot_id
from dr_automation.links import RdsSnapshotLink, S3BackupManifestLink, S3BackupPrefixLink

RUN = "scheduled__2026-11-25T02:00:00+00:00"


def _key(dag_id: str, task_id: str = "write_manifest", map_index: int = -1):
    from airflow.models.taskinstancekey import TaskInstanceKey

    return TaskInstanceKey(dag_id=dag_id, task_id=task_id, run_id=RUN, try_number=1, map_index=map_index)


def test_manifest_and_prefix_links_point_at_this_runs_backup(estate):
    plan = tier_plan(estate, "tier1_realtime")
    backup = backup_id(RUN)
    manifest = S3BackupManifestLink().get_link(None, ti_key=_key("backup_tier1_realtime"))
    key = f"backups/tier1_realtime/{backup}/manifest.json"
    assert manifest == (
        f"https://console.aws.amazon.com/s3/object/{plan.home.bucket}?region=us-east-1&prefix={quote(key, safe='')}"
    )
    prefix = S3BackupPrefixLink().get_link(None, ti_key=_key("backup_tier1_realtime", "copy_s3"))
    assert prefix.startswith(
        f"https://console.aws.amazon.com/s3/buckets/{plan.home.bucket}?region=us-east-1&"
    )
    assert quote(f"backups/tier1_realtime/{backup}/", safe="") in prefix


def test_archival_tier_links_to_its_locked_archive_bucket(estate):
    link = S3BackupManifestLink().get_link(None, ti_key=_key("backup_tier4_archival"))
    assert "/s3/object/leanvibe-backups-archive-us-east-1?" in link


def test_rds_snapshot_link_names_the_mapped_systems_snapshot(estate):
    plan = tier_plan(estate, "tier3_daily")
    [system] = plan.systems_of("rds_snapshot")
    link = RdsSnapshotLink().get_link(None, ti_key=_key("backup_tier3_daily", "create_rds_snapshot", 0))
    assert link == (
        "https://console.aws.amazon.com/rds/home?region=us-east-1#db-snapshot:id="
        + snapshot_id(plan, system["name"], backup_id(RUN))
    )
    # another task of the tier, or an index past the systems: no link
    assert RdsSnapshotLink().get_link(None, ti_key=_key("backup_tier3_daily", "write_manifest", 0)) == ""
    assert RdsSnapshotLink().get_link(None, ti_key=_key("backup_tier3_daily", "create_rds_snapshot", 5)) == ""


@pytest.mark.parametrize("link", [S3BackupManifestLink(), S3BackupPrefixLink(), RdsSnapshotLink()])
def test_tasks_of_other_dags_get_no_backup_link(link):
    assert link.get_link(None, ti_key=_key("regional_failover", "switch_dns")) == ""


def test_plugin_registers_the_board_app_and_navigation_entry_in_airflows_shapes():
    import dr_plugin
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    plugin = dr_plugin.DrAutomationPlugin
    [app] = plugin.fastapi_apps
    assert app["url_prefix"] == "/dr-status" and app["name"]
    assert not any(app["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)
    [view] = plugin.external_views
    parsed = ExternalViewResponse.model_validate(view)
    assert parsed.destination == "nav" and parsed.href == "/dr-status/" and parsed.url_route == "dr-status"
    names = {type(link).__name__ for link in plugin.global_operator_extra_links}
    assert names == {"S3BackupManifestLink", "S3BackupPrefixLink", "RdsSnapshotLink"}
