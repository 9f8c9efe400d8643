"""dr_test_quarterly on the sandbox, real scheduler and triggerer: every scenario runs as its own DAG run,
one of them forced to fail (its backup removed). The report states the lower success rate and
readiness, names the reason, is kept under Object Lock and reaches the drill stakeholders; nothing of
any drill remains; and the status board shows the drill's RTO/RPO and the tiers' verified RPO as the
sandbox holds them, in a real browser."""

from __future__ import annotations

import json
import time

import psycopg2
import pytest

from dr_automation.drills.quarterly import drill_id_of, scenario_run_id
from dr_automation.drills.report import SCENARIOS
from dr_automation.drills.scenario import drill_id
from dr_automation.estate import load_estate
from dr_sandbox.webhook_sink import fetch_messages
from tests.e2e.conftest import open_board, running_sandbox
from tests.e2e.failover_helpers import aws_client, failed_logs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2700)]

QUARTERLY = "dr_test_quarterly"
TIERS = ("backup_tier1_realtime", "backup_tier3_daily")
RUN_ID = "e2e__quarterly_forced"
FORCED = "database_failure"


@pytest.fixture(scope="module")
def drilled(tmp_path_factory):
    """A sandbox where tiers 1 and 3 were backed up and verified, then the quarterly drill ran."""
    with running_sandbox(tmp_path_factory, "quarterly", ("verify_backups", *TIERS, QUARTERLY)) as ctx:
        client = ctx[3]
        for dag_id in TIERS:
            client.trigger(dag_id, {}, run_id="e2e__backup")
        for dag_id in TIERS:
            finished = client.wait_for_run(dag_id, "e2e__backup", timeout=900)
            assert finished["state"] == "success", failed_logs(client, dag_id, "e2e__backup")
            client.pause(dag_id)
        _wait_verified(client)
        client.pause("verify_backups")
        client.trigger(QUARTERLY, {"faults": {FORCED: "remove_backup"}}, run_id=RUN_ID)
        finished = client.wait_for_run(QUARTERLY, RUN_ID, timeout=2400)
        yield (*ctx, finished)


def _wait_verified(client, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        runs = client.runs("verify_backups")
        if len(runs) >= 1 and all(r["state"] in ("success", "failed") for r in runs):
            return
        assert time.monotonic() < deadline, [(r["dag_run_id"], r["state"]) for r in runs]
        time.sleep(2)


def _report(layout, creds, endpoints) -> dict:
    estate = load_estate(endpoints["estate"])
    s3 = aws_client(layout, creds, "s3")
    key = f"reports/drills/{drill_id_of(RUN_ID)}.json"
    return json.loads(s3.get_object(Bucket=estate.primary_region.backup_bucket, Key=key)["Body"].read())


def test_the_forced_failure_lowers_the_success_rate_and_readiness_with_its_reason(drilled):
    layout, endpoints, creds, client, finished = drilled
    # 4 of 5 passed: 80 % is the overall-success line, so the drill succeeds at MEDIUM readiness
    assert finished["state"] == "success", failed_logs(client, QUARTERLY, RUN_ID)
    # unpausing the quarterly DAG scheduled the quarter that already passed: it drilled nothing
    for other in [r for r in client.runs(QUARTERLY) if r["dag_run_id"] != RUN_ID]:
        assert other["run_type"] == "scheduled", other
        states = {ti["task_id"]: ti["state"] for ti in client.task_instances(QUARTERLY, other["dag_run_id"])}
        assert states["plan"] == "skipped" and states["report"] == "skipped", states
    for name in SCENARIOS:
        assert [r["dag_run_id"] for r in client.runs(f"dr_test_{name}")] == [scenario_run_id(RUN_ID, name)]
    report = _report(layout, creds, endpoints)
    by_name = {s["scenario"]: s for s in report["scenarios"]}
    assert list(by_name) == list(SCENARIOS)
    assert (report["passed"], report["total"], report["success_rate"]) == (4, 5, 0.8)
    assert report["overall_success"] is True and report["readiness"] == "MEDIUM"
    forced = by_name[FORCED]
    assert forced["passed"] is False and forced["fault"] == "remove_backup"
    assert forced["reason"].startswith("recover:") and "backup" in forced["reason"], forced["reason"]
    # what it did measure: each step it ran, up to the failed one
    assert set(forced["step_seconds"]) == {"setup", "inject", "recover"}, forced["step_seconds"]
    assert all(v >= 0 for v in forced["step_seconds"].values()) and forced["step_seconds"]["setup"] > 0
    assert any(r.startswith(f"{FORCED}: the scenario did not complete") for r in report["recommendations"])
    # the scenario's own run failed, and its cleanup still ran and succeeded
    run = client.wait_for_run(f"dr_test_{FORCED}", scenario_run_id(RUN_ID, FORCED), timeout=10)
    assert run["state"] == "failed"
    states = {
        ti["task_id"]: ti["state"]
        for ti in client.task_instances(f"dr_test_{FORCED}", scenario_run_id(RUN_ID, FORCED))
    }
    assert states["recover"] == "failed" and states["cleanup"] == "success", states


def test_every_other_scenario_passed_with_measured_figures(drilled):
    layout, endpoints, creds, _, _ = drilled
    report = _report(layout, creds, endpoints)
    for s in report["scenarios"]:
        if s["scenario"] == FORCED:
            continue
        assert s["passed"], (s["scenario"], s.get("reason"))
        assert s["rto_seconds"] > 0 and s["rpo_seconds"] is not None, s
        assert s["integrity_score"] == 1.0, s
        assert s["compliance"]["rto_met"] and s["compliance"]["rpo_met"], s
        assert s["phases"] and all(v >= 0 for v in s["phases"].values()), s
        assert s["figures"], s
        assert s["simulated"], s
    # the figures differ between scenarios: measured, not constants
    assert len({s["rto_seconds"] for s in report["scenarios"] if s.get("rto_seconds")}) == 4


def test_the_report_is_kept_under_object_lock_and_sent_to_the_drill_stakeholders(drilled):
    layout, endpoints, creds, _, _ = drilled
    estate = load_estate(endpoints["estate"])
    bucket = estate.section("drills")["report_bucket"]
    s3 = aws_client(layout, creds, "s3")
    key = f"reports/drills/{drill_id_of(RUN_ID)}"
    for suffix in (".json", ".html"):
        head = s3.head_object(Bucket=bucket, Key=key + suffix)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        with pytest.raises(s3.exceptions.ClientError):
            s3.delete_object(Bucket=bucket, Key=key + suffix, VersionId=head["VersionId"])
    page = s3.get_object(Bucket=bucket, Key=f"{key}.html")["Body"].read().decode()
    assert "<svg" in page and "MEDIUM" in page and FORCED in page
    chats = [m for m in fetch_messages(layout.sink_url) if drill_id_of(RUN_ID) in json.dumps(m)]
    channels = {json.dumps(m) for m in chats}
    assert any("#incident-command" in c for c in channels), chats  # CTO and VP Engineering
    assert any("#platform-oncall" in c for c in channels), chats  # Platform Team Lead
    assert all("readiness MEDIUM" in c for c in channels)


def test_no_drill_resource_remains(drilled):
    layout, endpoints, creds, _, _ = drilled
    estate = load_estate(endpoints["estate"])
    ids = [drill_id(s, scenario_run_id(RUN_ID, s)) for s in SCENARIOS]
    s3 = aws_client(layout, creds, "s3")
    for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        assert not bucket.startswith("dr-drill-"), bucket
        for prefix in ids:
            listed = s3.list_object_versions(Bucket=bucket, Prefix=f"drills/{prefix}/")
            assert not listed.get("Versions") and not listed.get("DeleteMarkers"), (bucket, prefix)
    route53 = aws_client(layout, creds, "route53")
    zone = route53.list_hosted_zones_by_name(DNSName=estate.route53["hosted_zone"])["HostedZones"][0]["Id"]
    names = [
        r["Name"]
        for r in route53.list_resource_record_sets(HostedZoneId=zone, MaxItems="1000")["ResourceRecordSets"]
    ]
    assert not [n for n in names if n.startswith("dr-drill-")], names
    checks = route53.list_health_checks(MaxItems="1000")["HealthChecks"]
    tags = [
        t
        for i in range(0, len(checks), 10)  # the API takes 10 ids at a time
        for t in route53.list_tags_for_resources(
            ResourceType="healthcheck", ResourceIds=[c["Id"] for c in checks[i : i + 10]]
        )["ResourceTagSets"]
    ]
    assert not [t for t in tags for kv in t["Tags"] if kv["Key"].endswith(":drill")]
    secrets = aws_client(layout, creds, "secretsmanager").list_secrets(MaxResults=100)["SecretList"]
    assert not [s["Name"] for s in secrets if "dr-drill-" in s["Name"]]
    users = aws_client(layout, creds, "iam").list_users()["Users"]
    assert not [u["UserName"] for u in users if u["UserName"].startswith("dr-drill-")]
    with psycopg2.connect(creds["audit_database_dsn"]) as conn, conn.cursor() as cur:
        # (this drill's databases only: the machine's server is shared with other runs)
        cur.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE ANY(%s)",
            ([i.replace("-", "_") + "%" for i in ids],),
        )
        leftovers = [r[0] for r in cur.fetchall()]
    conn.close()
    assert leftovers == []


def test_the_board_shows_the_drill_and_the_verified_backups_as_the_sandbox_holds_them(
    drilled, browser, tmp_path
):
    layout, endpoints, creds, _, _ = drilled
    estate = load_estate(endpoints["estate"])
    report = _report(layout, creds, endpoints)
    context, page, board = open_board(browser, layout, creds)
    drill = board.locator(f'div.drill[data-drill="{report["drill_id"]}"]')
    drill.wait_for(timeout=60_000)
    text = drill.inner_text()
    assert "readiness MEDIUM" in text and "success 0.8" in text
    # one RTO and one RPO bar per measured scenario, labelled with the measured minutes
    assert drill.locator("svg rect").count() >= 2 * (len(SCENARIOS) - 1)
    labels = drill.locator("svg text").all_text_contents()
    for s in report["scenarios"]:
        for what in ("rto", "rpo"):
            if s.get(f"{what}_seconds") is not None:
                assert f"{round(s[f'{what}_seconds'] / 60, 2):g} min" in labels, (s["scenario"], what, labels)
    # the tiers backed up here show their last backup and a verified RPO from verification/state.json
    s3 = aws_client(layout, creds, "s3")
    state = json.loads(
        s3.get_object(Bucket=estate.primary_region.backup_bucket, Key="verification/state.json")[
            "Body"
        ].read()
    )
    for tier_key in ("tier1_realtime", "tier3_daily"):
        row = board.locator(f'tr.tier[data-tier="{tier_key}"]')
        # the backups this sandbox took (tier 3 may also have run its latest cron point when unpaused)
        listed = s3.list_objects_v2(Bucket=estate.primary_region.backup_bucket, Prefix=f"backups/{tier_key}/")
        taken = {
            o["Key"].split("/")[2] for o in listed.get("Contents", []) if o["Key"].endswith("/manifest.json")
        }
        assert row.get_attribute("data-backup-id") in taken, (tier_key, taken)
        assert state["tiers"][tier_key]["last_verified"]["backup_id"] in taken, tier_key
        assert row.get_attribute("data-verified") not in ("not verified yet", None), tier_key
        rpo = estate.tiers[tier_key].rpo_minutes
        assert f"vs {rpo} min" in row.inner_text(), (tier_key, row.inner_text())  # verified RPO vs objective
    page.screenshot(path=str(tmp_path / "status_board_with_drill.png"), full_page=True)
    assert (tmp_path / "status_board_with_drill.png").stat().st_size > 10_000
    context.close()
