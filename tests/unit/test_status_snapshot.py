"""status_snapshot against moto (the estate's buckets) and a scratch PostgreSQL health history."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dr_automation.charts import OVER
from dr_automation.health.history import HealthHistory
from dr_automation.status import DRILLS_PREFIX
from dr_automation.status.page import render_page
from dr_automation.status.snapshot import status_snapshot
from tests.integration.scratch import dsn_for, scratch_database
from tests.unit.backup_moto import client, mocked_estate_aws

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PRIMARY, SECONDARY = "us-east-1", "us-west-2"


@pytest.fixture(scope="module")
def aws(estate):
    with mocked_estate_aws(estate) as ctx:
        yield ctx


@pytest.fixture(scope="module")
def history_dsn():
    with scratch_database("dr_status_unit") as name:
        yield dsn_for(name)


@pytest.fixture
def history(history_dsn):
    h = HealthHistory(dsn=history_dsn)
    h.ensure_schema()
    h._run([("TRUNCATE dr_region_health", ())])
    yield h
    h.close()


@pytest.fixture
def clean_buckets(estate, aws):
    """Every object of the estate's buckets removed (versions too) before a test."""
    buckets = [(r.backup_bucket, n) for n, r in estate.regions.items()]
    for bucket, region in buckets:
        s3 = client("s3", region)
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    yield


class FakeAirflow:
    def __init__(self, approvals=(), runs=None) -> None:
        self.approvals = list(approvals)
        self.runs = runs or {}
        self.asked: list[list[str]] = []

    def pending_approvals(self) -> list[dict[str, Any]]:
        return self.approvals

    def latest_runs(self, dag_ids):
        self.asked.append(list(dag_ids))
        return {d: r for d, r in self.runs.items() if d in dag_ids}


def _answer(estate, region: str):
    address = estate.regions[region].address
    return lambda name, ns: [address]


def _view(region: str):
    return lambda: {"mode": "failover", "serving_region": region, "inverted_checks": []}


def _put(region: str, bucket: str, key: str, doc: dict[str, Any]) -> None:
    client("s3", region).put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())


def _manifest(tier: str, backup: str, created: datetime, status: str = "complete", failed=None):
    return {
        "format": "dr-backup-manifest/1",
        "backup_id": backup,
        "tier": tier,
        "dag_id": f"backup_{tier}",
        "run_id": backup.replace("T10-", "T10:"),
        "created_at": created.isoformat(timespec="seconds"),
        "status": status,
        "summary": {
            "components": 3,
            "succeeded": 3 - len(failed or {}),
            "failed": failed or {},
            "size_bytes": 9,
        },
    }


def _cycle(history, cycle: int, at: datetime, scores: dict[str, float]) -> None:
    history.record_cycle(
        "region_health_monitor/scheduled__2026-11-25T11:00:00+00:00/watch",
        cycle,
        at,
        [
            {
                "region": r,
                "role": "primary" if r == PRIMARY else "secondary",
                "serving": r == PRIMARY,
                "score": s,
                "healthy": s >= 0.8,
                "consecutive_failures": 0 if s >= 0.8 else cycle,
            }
            for r, s in scores.items()
        ],
    )


def test_an_empty_estate_lists_every_tier_and_region_and_says_nothing_happened_yet(
    estate, aws, clean_buckets, history
):
    snap = status_snapshot(
        estate, history=history, resolve=_answer(estate, PRIMARY), route53=_view(PRIMARY), now=NOW
    )
    assert snap["serving"]["region"] == PRIMARY
    assert snap["serving"]["route53"]["serving_region"] == PRIMARY
    assert snap["serving"]["recorded"] is None
    assert [r["region"] for r in snap["regions"]] == list(estate.regions)
    assert all(r["score"] is None and r["series"] == [] for r in snap["regions"])
    assert [t["tier"] for t in snap["tiers"]] == list(estate.tiers)
    for tier in snap["tiers"]:
        assert tier["last_backup"] is None
        assert tier["verification"]["status"] == "not verified yet"
        assert tier["verification"]["rpo_minutes"] == estate.tiers[tier["tier"]].rpo_minutes
    assert snap["failovers"] == {"records": [], "unreadable": {}}
    assert snap["drills"] == {
        "location": f"s3://{estate.primary_region.backup_bucket}/{DRILLS_PREFIX}",
        "under_way": [],
        "drills": [],
    }
    assert snap["approvals"] == [] and snap["dags"] == {}
    html = render_page(snap)
    assert 'id="drills-none"' in html and "no backup yet" in html and "not verified yet" in html
    assert 'id="approvals-none"' in html


def test_figures_come_from_manifests_verification_state_failover_records_drills_and_history(
    estate, aws, clean_buckets, history
):
    primary, secondary = estate.regions[PRIMARY], estate.regions[SECONDARY]
    bucket = primary.backup_bucket
    # tier 1: an older scheduled backup, then the newest (manual) one with a failed system
    old = "scheduled__2026-11-25T10-00-00-00-00"
    new = "manual__2026-11-25T11-50-00-00-00"
    _put(
        PRIMARY,
        bucket,
        f"backups/tier1_realtime/{old}/manifest.json",
        _manifest("tier1_realtime", old, NOW - timedelta(minutes=120)),
    )
    _put(
        PRIMARY,
        bucket,
        f"backups/tier1_realtime/{new}/manifest.json",
        _manifest("tier1_realtime", new, NOW - timedelta(minutes=10), "partial", {"sessions": "redis down"}),
    )
    client("s3").put_object(Bucket=bucket, Key=f"backups/tier1_realtime/{new}/sessions/x.jsonl", Body=b"x")
    # verification: tier 1 verified 12 min ago (RPO 5: breached), tier 2 verified 3 min ago (RPO 15)
    state = {
        "format": "dr-backup-verification-state/1",
        "updated_at": (NOW - timedelta(minutes=1)).isoformat(),
        "run_id": "verify__1",
        "tiers": {
            "tier1_realtime": {
                "last_verified": {"backup_id": old, "backup_time": (NOW - timedelta(minutes=12)).isoformat()}
            },
            "tier2_frequent": {
                "last_verified": {"backup_id": "b2", "backup_time": (NOW - timedelta(minutes=3)).isoformat()}
            },
            "tier3_daily": {"newest_backup": {"backup_id": "b3", "result": "failed"}},
        },
    }
    _put(PRIMARY, bucket, "verification/state.json", state)
    # a failover to us-west-2 (record in its bucket) and the serving state it wrote
    record = {
        "failover_id": "failover-1",
        "outcome": "success",
        "target_region": SECONDARY,
        "mode": "health_check",
        "requested_by": "sre-oncall",
        "reason": "us-east-1 API 5xx for 10 min",
        "incident_level": 3,
        "approval": {"answer": "Approve", "by": "cto", "at": "x"},
        "run_id": "manual__2026-11-25T11:40:00+00:00",
    }
    _put(SECONDARY, secondary.backup_bucket, "reports/failovers/failover-1.json", record)
    serving = {
        "serving_region": SECONDARY,
        "previous_region": PRIMARY,
        "since": NOW.isoformat(),
        "failover_id": "failover-1",
    }
    _put(SECONDARY, secondary.backup_bucket, "state/serving-region.json", serving)
    _put(
        PRIMARY,
        bucket,
        "state/serving-region.json",
        {**serving, "serving_region": PRIMARY, "since": (NOW - timedelta(days=1)).isoformat()},
    )
    # a drill report (the contract read from reports/drills/)
    drill = {
        "drill_id": "drill-2026q4",
        "run_id": "scheduled__2026-10-01T00:00:00+00:00",
        "success_rate": 0.8,
        "readiness": "MEDIUM",
        "scenarios": [
            {
                "scenario": "region_outage",
                "dag_id": "dr_test_region_outage",
                "run_id": "r1",
                "passed": True,
                "rto_seconds": 90,
                "rto_objective_minutes": 5,
                "rpo_minutes": 0.5,
                "rpo_objective_minutes": 5,
            },
            {
                "scenario": "database_failure",
                "passed": False,
                "rto_minutes": 75,
                "rto_objective_minutes": 60,
                "rpo_minutes": 7,
                "rpo_objective_minutes": 5,
            },
        ],
    }
    _put(PRIMARY, bucket, f"{DRILLS_PREFIX}drill-2026q4.json", drill)
    # health: three cycles, the primary degrading
    for i, score in enumerate((1.0, 0.6, 0.4), start=1):
        _cycle(
            history,
            i,
            NOW - timedelta(seconds=90 - 30 * i),
            {PRIMARY: score, SECONDARY: 1.0, "eu-west-1": 0.8},
        )
    _cycle(history, 0, NOW - timedelta(hours=3), {PRIMARY: 0.0})  # outside the window
    approval = {
        "dag_id": "regional_failover",
        "run_id": "r9",
        "task_id": "await_approval",
        "subject": "Fail over?",
        "created_at": NOW.isoformat(),
        "answer_link": "/dags/regional_failover/runs/r9/tasks/await_approval/required_actions",
        "run_link": "/dags/regional_failover/runs/r9",
        "assignees": ["cto"],
        "body": None,
        "options": ["Approve", "Reject"],
    }
    airflow = FakeAirflow([approval], {"backup_tier1_realtime": {"run_id": "x", "state": "success"}})

    snap = status_snapshot(
        estate,
        history=history,
        resolve=_answer(estate, SECONDARY),
        route53=_view(SECONDARY),
        airflow=airflow,
        now=NOW,
        history_minutes=30,
    )

    assert snap["serving"]["region"] == SECONDARY
    assert snap["serving"]["recorded"]["serving_region"] == SECONDARY  # the newest state wins
    regions = {r["region"]: r for r in snap["regions"]}
    assert regions[PRIMARY]["score"] == 0.4 and regions[PRIMARY]["healthy"] is False
    assert [p["score"] for p in regions[PRIMARY]["series"]] == [1.0, 0.6, 0.4]
    assert regions[PRIMARY]["consecutive_failures"] == 3
    assert regions[PRIMARY]["links"]["monitor"] == (
        "/dags/region_health_monitor/runs/scheduled__2026-11-25T11%3A00%3A00%2B00%3A00/tasks/watch"
    )
    assert regions["eu-west-1"]["healthy"] is True and regions["eu-west-1"]["cycles"] == 3

    tiers = {t["tier"]: t for t in snap["tiers"]}
    t1 = tiers["tier1_realtime"]
    assert t1["last_backup"]["backup_id"] == new and t1["last_backup"]["status"] == "partial"
    assert t1["last_backup"]["age_minutes"] == 10.0 and t1["backup_within_rpo"] is False
    assert t1["last_backup"]["failed"] == {"sessions": "redis down"}
    assert t1["last_backup"]["manifest"] == f"s3://{bucket}/backups/tier1_realtime/{new}/manifest.json"
    assert t1["last_backup"]["console"].startswith(
        "https://console.aws.amazon.com/s3/object/leanvibe-backups-prod?"
    )
    assert t1["verification"]["verified_rpo_minutes"] == 12.0 and t1["verification"]["breached"] is True
    assert t1["verification"]["run_link"] == "/dags/verify_backups/runs/verify__1"
    assert tiers["tier2_frequent"]["verification"]["verified_rpo_minutes"] == 3.0
    assert tiers["tier2_frequent"]["verification"]["status"] == "within objective"
    # a tier with backups seen but none verified: unbounded, breached
    assert tiers["tier3_daily"]["verification"]["breached"] is True
    assert tiers["tier3_daily"]["verification"]["verified_rpo_minutes"] is None
    assert tiers["tier4_archival"]["verification"]["status"] == "not verified yet"

    [failover] = snap["failovers"]["records"]
    assert failover["outcome"] == "success" and failover["approved_by"] == "cto"
    assert failover["run_link"] == "/dags/regional_failover/runs/manual__2026-11-25T11%3A40%3A00%2B00%3A00"
    [d] = snap["drills"]["drills"]
    assert d["drill_id"] == "drill-2026q4" and d["readiness"] == "MEDIUM"
    outage, db = d["scenarios"]
    assert outage["rto_minutes"] == 1.5 and outage["run_link"] == "/dags/dr_test_region_outage/runs/r1"
    assert db["rto_minutes"] == 75.0 and db["rto_objective_minutes"] == 60
    assert snap["approvals"] == [approval]
    assert snap["dags"] == {"backup_tier1_realtime": {"run_id": "x", "state": "success"}}
    assert "verify_backups" in airflow.asked[0] and "backup_tier4_archival" in airflow.asked[0]

    html = render_page(snap, ui_base="/airflow")
    assert f'id="serving" data-region="{SECONDARY}"' in html
    assert f'data-region="{PRIMARY}" data-score="0.4"' in html
    assert 'href="/airflow/dags/regional_failover/runs/r9/tasks/await_approval/required_actions"' in html
    assert html.count('<svg class="bars"') == 2 and html.count('<svg class="spark"') == 3
    # the drill's charts: each figure labelled, the one over its objective red, the failed scenario named
    assert ">1.5 min</text>" in html and ">75 min</text>" in html and 'data-measured="75"' in html
    assert html.count(f'fill="{OVER}" data-measured=') == 2  # database_failure's RTO 75 > 60, RPO 7 > 5
    assert '<span class="bad drill-failed">failed: database_failure</span>' in html
    assert "http-equiv='refresh'" in html


def test_dns_disagreement_and_unreachable_sources_show_as_such_without_blanking_the_board(
    estate, aws, clean_buckets
):
    answers = {"1.1.1.1": [estate.regions[PRIMARY].address], "8.8.8.8": [estate.regions[SECONDARY].address]}

    class Down:
        def scores(self, **_: Any):
            raise RuntimeError("health history database error: connection refused")

    def route53_down():
        raise ConnectionError("route53 unreachable")

    snap = status_snapshot(
        estate, history=Down(), resolve=lambda name, ns: answers[ns], route53=route53_down, now=NOW
    )
    assert snap["serving"]["region"] is None
    assert snap["serving"]["dns"]["regions"] == [PRIMARY, SECONDARY]
    assert snap["serving"]["route53"] == {"error": "ConnectionError: route53 unreachable"}
    assert snap["regions"]["error"].startswith("RuntimeError: health history database error")
    assert [t["tier"] for t in snap["tiers"]] == list(estate.tiers)  # the rest still shows
    html = render_page(snap)
    assert "no single answer" in html and "unavailable: RuntimeError" in html


def test_resolver_that_does_not_answer_gives_no_serving_region(estate, aws, clean_buckets, history):
    def resolve(name: str, ns: str) -> list[str]:
        if ns == "8.8.8.8":
            raise TimeoutError("no answer")
        return [estate.regions[PRIMARY].address]

    snap = status_snapshot(estate, history=history, resolve=resolve, route53=_view(PRIMARY), now=NOW)
    assert snap["serving"]["region"] is None
    assert snap["serving"]["dns"]["answers"]["8.8.8.8"] == {"error": "TimeoutError: no answer"}


@pytest.mark.parametrize(
    "field,value", [("history_minutes", 0), ("failover_limit", True), ("drill_limit", "5")]
)
def test_bad_limits_are_refused_naming_the_field(estate, field, value):
    with pytest.raises(ValueError, match=f"^{field}: must be an integer from 1 to 1440"):
        status_snapshot(estate, history=object(), **{field: value})


def test_a_drill_under_way_is_shown_with_its_run_until_its_cleanup_unregisters_it(
    estate, aws, clean_buckets, history
):
    from dr_automation.drills import registry
    from dr_automation.drills.scenario import DrillContext

    ctx = DrillContext(
        estate=estate, scenario="region_outage", run_id="manual__board", dag_id="dr_test_region_outage"
    )
    registry.register(ctx)
    snap = status_snapshot(
        estate, history=history, resolve=_answer(estate, PRIMARY), route53=_view(PRIMARY), now=NOW
    )
    [shown] = snap["drills"]["under_way"]
    assert (shown["drill_id"], shown["scenario"], shown["run_id"]) == (
        ctx.drill_id,
        "region_outage",
        "manual__board",
    )
    assert shown["run_link"].endswith("/dags/dr_test_region_outage/runs/manual__board")
    html = render_page(snap)
    assert f'id="drill-under-way" data-drill="{ctx.drill_id}"' in html and 'id="drills-none"' in html
    registry.finish(ctx)
    snap = status_snapshot(
        estate, history=history, resolve=_answer(estate, PRIMARY), route53=_view(PRIMARY), now=NOW
    )
    assert snap["drills"]["under_way"] == [] and "drill-under-way" not in render_page(snap)
