"""The quarterly drill's plan, report storage under Object Lock and the drill framework's pure parts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from backup_moto import client, mocked_estate_aws

from dr_automation.drills import quarterly
from dr_automation.drills.report import SCENARIOS
from dr_automation.drills.scenario import (
    DrillContext,
    drill_id,
    production_problems,
    read_result,
    result_key,
    write_result,
)
from dr_automation.incidents import IncidentInputError, named


def test_plan_runs_every_scenario_in_order_with_derived_run_ids() -> None:
    runs = quarterly.plan_runs({}, "scheduled__2026-10-01T06:00:00+00:00")
    assert [r["trigger_dag_id"] for r in runs] == [f"dr_test_{s}" for s in SCENARIOS]
    assert runs[0]["trigger_run_id"] == "scheduled__2026-10-01T06:00:00+00:00__database_failure"
    assert all(r["conf"] == {"fault": "none"} for r in runs)


def test_plan_runs_forces_a_fault_on_one_scenario_only() -> None:
    runs = quarterly.plan_runs(
        {
            "scenarios": ["database_failure", "data_corruption"],
            "faults": {"database_failure": "remove_backup"},
        },
        "manual__1",
    )
    assert [r["conf"]["fault"] for r in runs] == ["remove_backup", "none"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"scenarios": ["database_failure", "meteor_strike"]}, "scenarios[1]"),
        ({"scenarios": ["region_outage", "region_outage"]}, "scenarios"),
        (
            {"scenarios": ["region_outage"], "faults": {"database_failure": "remove_backup"}},
            "faults.database_failure",
        ),
        ({"faults": {"region_outage": "unplug"}}, "faults.region_outage"),
    ],
)
def test_bad_params_name_the_field(params: dict, field: str) -> None:
    with pytest.raises(quarterly.QuarterlyInputError) as err:
        quarterly.plan_runs(params, "manual__1")
    assert err.value.field == field


def test_drill_ids_are_stable_per_run_and_safe_as_names() -> None:
    one = drill_id("database_failure", "manual__2026-11-25T06:00:00+00:00")
    assert one == drill_id("database_failure", "manual__2026-11-25T06:00:00+00:00")
    assert one != drill_id("database_failure", "manual__2026-11-25T06:00:01+00:00")
    assert one.startswith("dr-drill-database-failure-") and len(one) <= 63
    assert all(c.isalnum() or c == "-" for c in one)
    assert (
        quarterly.drill_id_of("scheduled__2026-10-01T06:00:00+00:00")
        == "drill-scheduled__2026-10-01T06-00-00-00-00"
    )
    assert result_key("dr_test_x", "manual__a:b+c") == "drills/results/dr_test_x/manual__a_b_c.json"


def test_context_names_everything_after_the_drill(estate) -> None:
    ctx = DrillContext(estate=estate, scenario="region_outage", run_id="manual__1")
    assert ctx.prefix == f"drills/{ctx.drill_id}/"
    assert ctx.record_name == f"{ctx.drill_id}.drill.leanvibe.ai"
    assert ctx.database_name == ctx.drill_id.replace("-", "_")
    assert ctx.tags == {"leanvibe:drill": ctx.drill_id, "leanvibe:managed-by": "dr"}
    assert ctx.objectives["success_rate"] == 0.95
    ctx.mark("a", at=10.0)
    ctx.mark("b", at=12.5)
    assert ctx.since("a", "b") == 2.5 and ctx.since("a", "zzz") is None


def test_the_stop_condition_fires_only_on_what_was_healthy_at_setup(estate, monkeypatch) -> None:
    from dr_automation.drills import scenario

    now = {
        "region us-east-1": {"ok": False, "detail": {"status": 503}},
        "region us-west-2": {"ok": False, "detail": {"error": "refused"}},
        "primary database": {"ok": True},
    }
    monkeypatch.setattr(scenario, "production_health", lambda _estate: now)
    monkeypatch.setattr(scenario, "STOP_RECHECK_SECONDS", 0.0)
    baseline = {
        "region us-east-1": {"ok": True},
        "region us-west-2": {"ok": False},
        "primary database": {"ok": True},
    }
    assert production_problems(estate, baseline) == ["production region us-east-1 became unhealthy (503)"]
    assert production_problems(estate, {}) == []
    ctx = DrillContext(estate=estate, scenario="database_failure", run_id="r", state={"baseline": baseline})
    with pytest.raises(scenario.DrillAborted, match="stop condition: production region us-east-1"):
        ctx.check_stop()


def test_named_stakeholders_come_from_the_matrix_whatever_their_level(estate) -> None:
    people = named(estate, ["CTO", "Platform Team Lead"])
    assert [p.name for p in people] == ["CTO", "Platform Team Lead"]
    with pytest.raises(IncidentInputError, match="'Janitor' is not in the stakeholder matrix"):
        named(estate, ["Janitor"])


def _result(scenario: str, run_id: str, passed: bool, rto: float) -> dict:
    return {
        "scenario": scenario,
        "dag_id": f"dr_test_{scenario}",
        "run_id": run_id,
        "passed": passed,
        "reason": None if passed else "recover: backup gone",
        "rto_seconds": rto,
        "rpo_seconds": 40.0,
        "integrity_score": 1.0,
        "rto_objective_minutes": 60,
        "rpo_objective_minutes": 5,
        "integrity_objective": 1.0,
        "phases": {"restore": rto / 2, "verify": rto / 4},
        "simulated": [f"{scenario} stand-in"],
    }


def test_report_reads_results_counts_a_missing_one_as_failed_and_is_kept_under_object_lock(estate) -> None:
    with mocked_estate_aws(estate):
        run_id = "manual__2026-11-25"
        runs = quarterly.plan_runs(
            {"scenarios": ["database_failure", "region_outage", "data_corruption"]}, run_id
        )
        write_result(estate, _result("database_failure", runs[0]["trigger_run_id"], True, 30.0))
        write_result(estate, _result("region_outage", runs[1]["trigger_run_id"], False, 12.0))
        # data_corruption stored nothing (its run died before measure)
        assert read_result(estate, "dr_test_region_outage", runs[1]["trigger_run_id"])["passed"] is False

        report = quarterly.build_report(estate, runs, run_id=run_id)
        assert report["passed"] == 1 and report["total"] == 3
        assert report["readiness"] == "LOW" and report["overall_success"] is False
        missing = report["scenarios"][2]
        assert missing["passed"] is False and "stored no result" in missing["reason"]
        assert any(
            r.startswith("region_outage: the scenario did not complete") for r in report["recommendations"]
        )
        assert report["simulated"] == ["database_failure stand-in", "region_outage stand-in"]

        where = quarterly.store_report(estate, report)
        bucket = estate.section("drills")["report_bucket"]
        s3 = client("s3")
        head = s3.head_object(Bucket=bucket, Key=f"reports/drills/{report['drill_id']}.json")
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=365 * 7 - 2)
        page = (
            s3.get_object(Bucket=bucket, Key=f"reports/drills/{report['drill_id']}.html")["Body"]
            .read()
            .decode()
        )
        assert "<svg" in page and "region_outage" in page
        board = estate.primary_region.backup_bucket
        stored = json.loads(
            s3.get_object(Bucket=board, Key=f"reports/drills/{report['drill_id']}.json")["Body"].read()
        )
        assert stored["success_rate"] == pytest.approx(1 / 3, abs=1e-3)
        with pytest.raises(s3.exceptions.ClientError):  # COMPLIANCE: nobody deletes a report version
            version = head["VersionId"]
            s3.delete_object(
                Bucket=bucket, Key=f"reports/drills/{report['drill_id']}.json", VersionId=version
            )
        assert where["html"].endswith(".html")

        # the next drill's trend includes this one
        later = quarterly.build_report(estate, runs[:1], run_id="manual__2026-12-01")
        assert [p["drill_id"] for p in later["trend"]] == [report["drill_id"], later["drill_id"]]
        text = quarterly.summary_text(later, where)
        assert "1/1 scenarios passed (100%)" in text and "readiness HIGH" in text


def test_production_health_reads_the_failover_probe_and_the_database(estate, monkeypatch) -> None:
    from dr_automation import failover
    from dr_automation.drills import scenario

    def probe(_estate, region, timeout=5.0):
        return {
            "region": region,
            "healthy": region != "us-east-1",
            "status": 503 if region == "us-east-1" else 200,
        }

    monkeypatch.setattr(failover, "probe_region", probe)
    monkeypatch.setattr(scenario, "_database_health", lambda _estate: {"ok": True})
    seen = scenario.production_health(estate)
    assert {k: v["ok"] for k, v in seen.items()} == {
        "region us-east-1": False,
        "region us-west-2": True,
        "region eu-west-1": True,
        "primary database": True,
    }


def test_one_slow_answer_does_not_stop_a_drill(estate, monkeypatch) -> None:
    from dr_automation.drills import scenario

    answers = iter(
        [{"region us-east-1": {"ok": False, "detail": "ReadTimeout"}}, {"region us-east-1": {"ok": True}}]
    )
    monkeypatch.setattr(scenario, "production_health", lambda _estate: next(answers))
    monkeypatch.setattr(scenario, "STOP_RECHECK_SECONDS", 0.0)
    ctx = DrillContext(
        estate=estate,
        scenario="database_failure",
        run_id="r",
        state={"baseline": {"region us-east-1": {"ok": True}}},
    )
    ctx.check_stop()  # the second look found it healthy: the drill goes on


def test_a_scheduled_drill_that_starts_a_day_late_is_skipped_with_the_reason() -> None:
    cron = datetime(2026, 10, 1, 6, tzinfo=UTC)
    assert quarterly.late_start("scheduled", cron, cron + timedelta(minutes=3)) is None
    why = quarterly.late_start("scheduled", cron, datetime(2026, 11, 25, 7, 30, tzinfo=UTC))
    assert why.startswith("scheduled for 2026-10-01T06:00+00:00, starting 55 d 1 h late")
    # by hand or by REST, a drill runs whenever it is asked for
    assert quarterly.late_start("manual", cron, datetime(2026, 11, 25, tzinfo=UTC)) is None


def test_step_seconds_run_to_each_step_end_or_its_failure(estate) -> None:
    from dr_automation.drills.dag import step_seconds

    ctx = DrillContext(estate=estate, scenario="database_failure", run_id="manual__steps")
    for name, at in (
        ("setup_started", 100.0),
        ("setup_finished", 112.5),
        ("inject_started", 113.0),
        ("inject_finished", 114.0),
        ("recover_started", 114.5),
        ("recover_failed", 120.25),
    ):
        ctx.mark(name, at)
    assert step_seconds(ctx) == {"setup": 12.5, "inject": 1.0, "recover": 5.75}
