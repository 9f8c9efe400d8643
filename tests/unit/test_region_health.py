"""Region health monitor: scoring, counters, metric windows, the fire rule, the decision, the trigger's
serialization, the payload, the estate-derived settings and the DAG's shape (no network)."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dr_automation.estate import Estate
from dr_automation.failover import CONF_KEYS, authorize, failover_params, region_health_url
from dr_automation.health import ALL_REGIONS_DOWN, FAILOVER_NEEDED, ROTATE
from dr_automation.health.checks import (
    ERROR,
    FAILED,
    NO_DATA,
    NOT_CONFIGURED,
    PASSED,
    CheckResult,
    _cloudwatch_period,
    api_timeout,
    api_unreachable,
    evaluate_metrics,
    metric_window,
)
from dr_automation.health.decision import (
    ALERT_ALL_DOWN,
    NOTHING_TO_DO,
    TRIGGER_FAILOVER,
    choose_target,
    decide,
    failover_reason,
    monitor_kwargs,
    switch_mode,
)
from dr_automation.health.monitor import MonitorSettings, RegionHealthMonitor
from dr_automation.health.scoring import RegionState, apply_cycle, fire_kind, is_healthy, score
from dr_automation.triggers.region_health import RegionHealthTrigger

THRESHOLDS = {"error_rate": 0.05, "response_time_seconds": 5.0, "availability": 0.95}
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
ROLES = {"us-east-1": "primary", "us-west-2": "secondary", "eu-west-1": "dr"}


# -- building blocks -----------------------------------------------------------------------------
def api(ok: bool = True, *, status: int | None = 200, latency: float = 0.05) -> CheckResult:
    value = {"status_code": status if ok or status is not None else None, "latency_seconds": latency}
    threshold = {"status_code": 200, "latency_seconds": 5.0}
    return CheckResult("api", PASSED if ok else FAILED, value, threshold, "")


def db(status: str = PASSED) -> CheckResult:
    return CheckResult("database", status, None, None, "")


def infra(status: str = PASSED) -> CheckResult:
    return CheckResult("infrastructure", status, {"error_rate": 0.0}, None, "")


def healthy_checks() -> list[CheckResult]:
    return [api(), db(), infra()]


def down_checks() -> list[CheckResult]:
    return [api(False, status=None, latency=0.01), db(), infra()]


def run(state: RegionState, checks: list[CheckResult], cycle: int, at: float = 1000.0) -> dict[str, Any]:
    return apply_cycle(state, cycle=cycle, at=at + cycle, checks=checks, healthy_score=0.8, keep=3)


# -- scoring -------------------------------------------------------------------------------------
def test_score_counts_only_applicable_checks() -> None:
    assert score([api(), db(), infra()]) == 1.0
    assert score([api(False), db(), infra()]) == pytest.approx(2 / 3)
    assert score([api(), db(NOT_CONFIGURED), infra(NO_DATA)]) == 1.0
    assert score([api(False), db(NOT_CONFIGURED), infra(ERROR)]) == 0.0
    assert score([db(NOT_CONFIGURED)]) is None


def test_healthy_at_exactly_the_configured_score() -> None:
    assert is_healthy(4 / 5, 0.8)  # 0.8000000000000002 or 0.7999999999999999 must not decide
    assert is_healthy(0.8 - 1e-12, 0.8)
    assert not is_healthy(2 / 3, 0.8)
    assert not is_healthy(None, 0.8)
    # With the seed's three checks, any single failed check makes a region unhealthy.
    for failing in range(3):
        checks = healthy_checks()
        checks[failing] = CheckResult(checks[failing].name, FAILED)
        assert not is_healthy(score(checks), 0.8)


def test_check_result_round_trips_and_refuses_unknown_status() -> None:
    result = CheckResult("api", FAILED, {"status_code": 500}, {"status_code": 200}, "HTTP 500")
    assert CheckResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert result.to_dict()["passed"] is False and CheckResult("x", NO_DATA).passed is None
    with pytest.raises(ValueError, match="status: must be one of"):
        CheckResult("api", "broken")


def test_api_unreachable_tells_no_answer_from_an_error_answer() -> None:
    assert api_unreachable(api(False, status=None))  # dropped / refused / timed out
    assert api_unreachable(api(False, status=200, latency=6.0))  # answered, but too slow
    assert not api_unreachable(api(False, status=500, latency=0.01))  # a fast 5xx: erroring
    assert not api_unreachable(api())
    assert api_timeout(5.0) == 6.0 and api_timeout(0.5) == 1.0


# -- counters and flapping -----------------------------------------------------------------------
def test_counter_climbs_on_unhealthy_cycles_and_one_success_resets_it() -> None:
    state = RegionState("us-east-1")
    counts = [
        run(state, checks, cycle)["consecutive_failures"]
        for cycle, checks in enumerate(
            [down_checks(), down_checks(), healthy_checks(), down_checks(), down_checks(), healthy_checks()],
            start=1,
        )
    ]
    assert counts == [1, 2, 0, 1, 2, 0]
    states = {"us-east-1": state, "us-west-2": RegionState("us-west-2", healthy=True)}
    assert fire_kind(states, "us-east-1", 3) is None  # flapping never adds up to a failover
    assert [r["cycle"] for r in state.recent] == [4, 5, 6]  # evidence: the last `keep` cycles


def test_failing_since_marks_the_start_of_the_streak() -> None:
    state = RegionState("us-east-1")
    run(state, down_checks(), 1)
    run(state, down_checks(), 2)
    assert state.failing_since == 1001.0
    run(state, healthy_checks(), 3)
    assert state.failing_since is None


def test_metrics_of_an_outage_are_left_out_once_the_api_answers_again() -> None:
    state = RegionState("us-east-1")
    run(state, down_checks(), 1)
    assert state.api_unreachable and state.api_ok_since is None
    record = run(state, [api(), db(), infra(FAILED)], 2)  # availability still shows the outage
    assert record["healthy"] is True and record["consecutive_failures"] == 0
    left_out = next(c for c in record["checks"] if c["name"] == "infrastructure")
    assert left_out["status"] == NO_DATA and "recovered" in left_out["detail"]
    assert state.api_ok_since == 1002.0
    assert state.metrics_not_before(60.0) == 1062.0
    # The next cycle judges metrics again (the monitor queries only data after the gate).
    assert run(state, [api(), db(), infra(FAILED)], 3)["healthy"] is False


def test_an_erroring_region_keeps_its_metrics_as_evidence() -> None:
    state = RegionState("us-east-1")
    run(state, [api(False, status=500, latency=0.01), db(), infra(FAILED)], 1)
    record = run(state, [api(), db(), infra(FAILED)], 2)
    assert record["healthy"] is False and record["consecutive_failures"] == 2
    assert state.api_ok_since is None


def test_state_survives_a_round_trip() -> None:
    state = RegionState("us-east-1")
    run(state, down_checks(), 1)
    run(state, down_checks(), 2)
    rebuilt = RegionState.from_state("us-east-1", json.loads(json.dumps(state.to_state())), state.recent)
    assert rebuilt == state


# -- the fire rule -------------------------------------------------------------------------------
def _states(**health: tuple[bool, int]) -> dict[str, RegionState]:
    return {
        name.replace("_", "-"): RegionState(name.replace("_", "-"), consecutive_failures=n, healthy=ok)
        for name, (ok, n) in health.items()
    }


def test_fire_rule() -> None:
    serving = "us-east-1"
    ok, bad3, bad2 = (True, 0), (False, 3), (False, 2)
    assert fire_kind(_states(us_east_1=bad3, us_west_2=ok, eu_west_1=ok), serving, 3) == FAILOVER_NEEDED
    assert fire_kind(_states(us_east_1=bad3, us_west_2=(False, 9), eu_west_1=ok), serving, 3) == (
        FAILOVER_NEEDED
    )
    assert fire_kind(_states(us_east_1=bad3, us_west_2=(False, 1), eu_west_1=bad2), serving, 3) == (
        ALL_REGIONS_DOWN
    )
    assert fire_kind(_states(us_east_1=bad2, us_west_2=ok, eu_west_1=ok), serving, 3) is None
    # Only the serving region matters: a failing standby is not a reason to move traffic.
    assert fire_kind(_states(us_east_1=ok, us_west_2=bad3, eu_west_1=ok), serving, 3) is None
    assert fire_kind(_states(us_east_1=(False, 4), us_west_2=ok), serving, 3) == FAILOVER_NEEDED


# -- metrics -------------------------------------------------------------------------------------
def test_evaluate_metrics_against_the_seed_thresholds() -> None:
    fine = evaluate_metrics(
        {"error_rate": 0.01, "latency_ms": 120.0, "availability": 1.0, "request_count": 40}, THRESHOLDS
    )
    assert fine.status == PASSED and fine.value["request_count"] == 40
    assert fine.threshold == {"error_rate": "<= 0.05", "latency_ms": "<= 5000", "availability": ">= 0.95"}
    erroring = evaluate_metrics({"error_rate": 0.06, "latency_ms": 120.0, "availability": 1.0}, THRESHOLDS)
    assert erroring.status == FAILED and erroring.detail == "error_rate 0.06 > 0.05"
    slow = evaluate_metrics({"latency_ms": 5200.0}, THRESHOLDS)
    assert slow.status == FAILED and "latency_ms 5200 > 5000" in slow.detail
    assert "no data: error_rate, availability" in slow.detail
    down = evaluate_metrics({"error_rate": 1.0, "latency_ms": None, "availability": 0.2}, THRESHOLDS)
    assert down.status == FAILED and "availability 0.2 < 0.95" in down.detail
    edge = evaluate_metrics({"error_rate": 0.05, "latency_ms": 5000.0, "availability": 0.95}, THRESHOLDS)
    assert edge.status == PASSED  # thresholds are inclusive, like the seed's
    assert evaluate_metrics({"request_count": 3}, THRESHOLDS).status == NO_DATA


def test_metric_window_alignment_and_recovery_gate() -> None:
    now = 1_000_000.4
    window = metric_window(now, window_seconds=120, metrics_period=60)
    assert window is not None
    assert (window.start, window.end) == (999_840.0, 1_000_020.0)  # whole minutes around [now-120, now]
    assert window.period == 180 and window.period % 60 == 0
    fast = metric_window(now, window_seconds=0.5, metrics_period=0.25)
    assert fast is not None and (fast.start, fast.end, fast.period) == (999_999.0, 1_000_001.0, 5)
    gated = metric_window(now, window_seconds=120, metrics_period=60, not_before=999_900.5)
    assert gated is not None and gated.start == 999_960.0  # rounded UP: nothing older slips in
    assert metric_window(now, window_seconds=120, metrics_period=60, not_before=now + 5) is None
    assert [_cloudwatch_period(s) for s in (0.5, 1, 3, 10, 29, 59, 61, 180)] == [
        1,
        1,
        5,
        10,
        30,
        60,
        120,
        180,
    ]


# -- settings and the trigger ---------------------------------------------------------------------
def _kwargs(**over: Any) -> dict[str, Any]:
    kwargs = {
        "monitor_id": "region_health_monitor/run/wait",
        "serving_region": "us-east-1",
        "regions": {
            r: {"role": ROLES[r], "url": f"http://127.0.9.{i}:8000/health", "database_conn_id": None}
            for i, r in enumerate(REGIONS, start=1)
        },
        "thresholds": THRESHOLDS,
        "check_interval": 30.0,
        "consecutive_failures": 3,
        "healthy_score": 0.8,
        "aws_conn_id": "aws_dr",
        "history_conn_id": "dr_audit",
        "routing": {"mode": "failover", "serving_region": "us-east-1", "pair": ["us-east-1", "us-west-2"]},
    }
    kwargs.update(over)
    return kwargs


def _settings(**over: Any) -> MonitorSettings:
    kwargs = _kwargs(**over)
    kwargs.pop("routing")
    return MonitorSettings.from_kwargs(**kwargs)


def test_trigger_serializes_to_plain_values_and_round_trips() -> None:
    trigger = RegionHealthTrigger(**_kwargs(initial_state={"cycle": 1, "checked_at": 5.0, "regions": {}}))
    classpath, kwargs = trigger.serialize()
    assert classpath == "dr_automation.triggers.region_health.RegionHealthTrigger"
    stored = json.loads(json.dumps(kwargs))  # what the metadata database keeps
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**stored)
    assert rebuilt.serialize() == (classpath, stored)
    assert stored["started_at"] == trigger.started_at  # the run's age survives a restart
    assert rebuilt.settings() == trigger.settings()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"serving_region": "ap-south-1"}, "serving_region"),
        ({"check_interval": 0}, "check_interval"),
        ({"consecutive_failures": 0}, "consecutive_failures"),
        ({"healthy_score": 1.5}, "healthy_score"),
        ({"thresholds": {"error_rate": 0.05}}, "thresholds"),
        ({"monitor_id": ""}, "monitor_id"),
        ({"metrics_period_seconds": 0}, "metrics_period_seconds"),
    ],
)
def test_trigger_refuses_bad_settings_naming_the_field(override: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        RegionHealthTrigger(**_kwargs(**override))


def test_monitor_kwargs_from_the_estate(estate: Estate) -> None:
    kwargs = monitor_kwargs(estate, monitor_id="m", serving_region="us-east-1", max_run_seconds=60)
    assert set(kwargs["regions"]) == set(estate.regions)
    primary_db_region = estate.databases["primary"]["region"]
    for name, spec in kwargs["regions"].items():
        assert spec["url"] == region_health_url(estate, name)
        assert spec["role"] == estate.regions[name].role
        expected = estate.connections["primary_database"] if name == primary_db_region else None
        assert spec["database_conn_id"] == expected
    assert kwargs["thresholds"] == dict(estate.health["thresholds"])
    assert kwargs["check_interval"] == estate.health["check_interval_seconds"]
    assert kwargs["consecutive_failures"] == estate.health["consecutive_failures"]
    assert kwargs["history_conn_id"] == estate.connections["audit_database"]
    assert kwargs["aws_conn_id"] == estate.connections["aws"]
    RegionHealthTrigger(**kwargs)  # a valid trigger
    json.dumps(kwargs)


def test_payload_carries_every_region_s_evidence() -> None:
    monitor = RegionHealthMonitor(_settings())
    assert monitor.history is not None  # history_conn_id given: a HealthHistory (not opened yet)
    monitor.history = None
    for cycle in (1, 2, 3):
        run(monitor.states["us-east-1"], down_checks(), cycle)
        run(monitor.states["us-west-2"], healthy_checks(), cycle)
        run(monitor.states["eu-west-1"], [api(), db(NOT_CONFIGURED), infra(NO_DATA)], cycle)
    monitor.cycle, monitor.last_cycle_at = 3, 1003.0
    assert monitor.fire_kind() == FAILOVER_NEEDED
    payload = monitor.payload(FAILOVER_NEEDED, routing={"mode": "failover"})
    assert payload["kind"] == FAILOVER_NEEDED and payload["cycle"] == 3
    assert payload["healthy_regions"] == ["eu-west-1", "us-west-2"]
    assert payload["unhealthy_regions"] == ["us-east-1"]
    assert payload["routing"] == {"mode": "failover"}
    assert payload["consecutive_failures_threshold"] == 3 and payload["thresholds"] == THRESHOLDS
    primary = payload["regions"]["us-east-1"]
    assert primary["consecutive_failures"] == 3 and primary["score"] == pytest.approx(0.6667, abs=1e-4)
    assert primary["failing_since"].startswith("1970-01-01T00:16:41")
    assert [c["cycle"] for c in primary["cycles"]] == [1, 2, 3]
    for region in payload["regions"].values():
        for cycle in region["cycles"]:
            assert [c["name"] for c in cycle["checks"]] == ["api", "database", "infrastructure"]
            assert {"status", "passed", "value", "threshold", "detail"} <= set(cycle["checks"][0])
    json.dumps(payload)


def test_monitor_continues_from_the_handed_over_state() -> None:
    first = RegionHealthMonitor(_settings(history_conn_id=None))
    for cycle in (1, 2):
        run(first.states["us-east-1"], down_checks(), cycle)
        run(first.states["us-west-2"], healthy_checks(), cycle)
    first.cycle, first.last_cycle_at = 2, 2000.0
    snapshot = json.loads(json.dumps(first.snapshot()))

    second = RegionHealthMonitor(_settings(history_conn_id=None))
    asyncio.run(second.restore(snapshot))
    assert second.restored_from == "handover" and second.cycle == 2
    assert second.states["us-east-1"].consecutive_failures == 2
    assert second.states["us-west-2"].healthy is True
    assert [r["cycle"] for r in second.states["us-east-1"].recent] == [1, 2]
    assert second.seconds_until_due(now=2010.0) == 20.0  # a restart never checks early
    assert second.seconds_until_due(now=2100.0) == 0.0
    run(second.states["us-east-1"], down_checks(), 3)
    assert second.fire_kind() == FAILOVER_NEEDED


# -- the decision ----------------------------------------------------------------------------------
def _event(kind: str = FAILOVER_NEEDED, *, healthy: tuple[str, ...] = ("us-west-2", "eu-west-1")) -> dict:
    regions = {}
    for name in REGIONS:
        ok = name in healthy
        checks = healthy_checks() if ok else down_checks()
        if not ok:
            checks[0] = CheckResult("api", FAILED, {"status_code": None}, None, "ConnectError: refused")
        regions[name] = {
            "role": ROLES[name],
            "healthy": ok,
            "score": 1.0 if ok else 0.6667,
            "consecutive_failures": 0 if ok else 3,
            "failing_since": None if ok else "2026-11-24T10:00:00.000+00:00",
            "cycles": [
                {
                    "cycle": 3,
                    "at": "2026-11-24T10:01:00.000+00:00",
                    "score": 1.0 if ok else 0.6667,
                    "healthy": ok,
                    "consecutive_failures": 0 if ok else 3,
                    "checks": [c.to_dict() for c in checks],
                }
            ],
        }
    return {
        "kind": kind,
        "monitor_id": "region_health_monitor/scheduled__x/wait_for_unhealthy_primary",
        "serving_region": "us-east-1",
        "cycle": 3,
        "detected_at": "2026-11-24T10:01:00.000+00:00",
        "check_interval": 30.0,
        "consecutive_failures_threshold": 3,
        "healthy_score": 0.8,
        "thresholds": THRESHOLDS,
        "healthy_regions": sorted(healthy),
        "unhealthy_regions": sorted(set(REGIONS) - set(healthy)),
        "regions": regions,
        "routing": {"mode": "failover", "serving_region": "us-east-1", "pair": ["us-east-1", "us-west-2"]},
    }


def test_target_is_the_healthy_secondary_then_the_home_region_then_dr(estate: Estate) -> None:
    assert choose_target(estate, _event()) == "us-west-2"
    assert choose_target(estate, _event(healthy=("eu-west-1",))) == "eu-west-1"
    assert choose_target(estate, _event(healthy=())) is None
    after = {**_event(healthy=("us-east-1", "eu-west-1")), "serving_region": "us-west-2"}
    assert choose_target(estate, after) == "us-east-1"


def test_switch_mode_follows_the_routing() -> None:
    pair = {"mode": "failover", "pair": ["us-east-1", "us-west-2"]}
    assert switch_mode(pair, "us-west-2") == "record_swap"  # never invert a failing region's check
    assert switch_mode(pair, "eu-west-1") == "record_swap"
    assert switch_mode({"mode": "manual_override"}, "us-west-2") == "manual_override"


def test_failover_decision_builds_a_conf_regional_failover_accepts(estate: Estate) -> None:
    decision = decide(estate, _event(), conf_keys=CONF_KEYS)
    assert decision["action"] == TRIGGER_FAILOVER and decision["target_region"] == "us-west-2"
    assert decision["incident"]["level"] == 3 and decision["incident"]["regions_affected"] == ["us-east-1"]
    assert decision["impact"]["outage_so_far"]["outage_hours"] == pytest.approx(1 / 60)
    assert decision["impact"]["if_down_for_rto"]["rto_minutes"] == 240
    conf = decision["conf"]
    assert conf["requested_by"] == "region_health_monitor" and conf["dry_run"] is False
    assert conf["mode"] == "record_swap" and conf["incident_level"] == 3
    assert "us-east-1 failed 3 consecutive health checks" in conf["reason"]
    assert "ConnectError" in conf["reason"]
    params = failover_params(estate)
    resolved = {name: p.resolve(conf.get(name, p.value)) for name, p in params.items()}  # Param schema
    accepted = authorize(estate, {k: v for k, v in conf.items() if k in CONF_KEYS}, resolved)
    assert accepted["needs_approval"] is False  # the monitor is not a human: no approval wait
    with_key = decide(estate, _event(), conf_keys=CONF_KEYS | {"evidence"})
    assert with_key["conf"]["evidence"]["regions"]["us-east-1"]["consecutive_failures"] == 3
    assert "routing" not in with_key["conf"]["evidence"]
    if "evidence" not in CONF_KEYS:
        assert "evidence" not in conf and decision["notes"]


def test_reason_is_clipped_to_the_param_limit_and_matches_its_pattern(estate: Estate) -> None:
    event = _event()
    long_detail = "x" * 2000
    event["regions"]["us-east-1"]["cycles"][-1]["checks"][0]["detail"] = long_detail
    reason = failover_reason(event, "us-west-2")
    assert len(reason) == 500 and reason.endswith("...")
    pattern = failover_params(estate)["reason"].schema["pattern"]
    assert re.match(pattern, reason)


def test_decision_refuses_while_a_failover_runs_or_in_the_cool_down(estate: Estate) -> None:
    running = decide(estate, _event(), running_failovers=1, conf_keys=CONF_KEYS)
    assert running["action"] == NOTHING_TO_DO and "already queued or running" in running["why"]
    switched = [{"recorded_at": datetime(2026, 11, 24, 9, 50, tzinfo=UTC), "status": "succeeded"}]
    cooling = decide(estate, _event(), recent_switches=switched, conf_keys=CONF_KEYS)
    assert cooling["action"] == NOTHING_TO_DO and "cool-down" in cooling["why"]
    assert "2026-11-24T09:50:00+00:00" in cooling["why"]
    requested = [{"recorded_at": "2026-11-24T09:55:00+00:00", "status": "failover_requested", "run_id": "r0"}]
    again = decide(estate, _event(), recent_requests=requested, conf_keys=CONF_KEYS)
    assert again["action"] == NOTHING_TO_DO and "already requested a failover" in again["why"]
    assert "r0" in again["why"]
    unreadable = decide(estate, _event(), recent_switches=None, conf_keys=CONF_KEYS)
    assert unreadable["action"] == TRIGGER_FAILOVER  # an outage costs more than a second switch
    assert "cool-down not checked" in " ".join(unreadable["notes"])
    moved = decide(estate, _event(), current_serving="us-west-2", conf_keys=CONF_KEYS)
    assert moved["action"] == NOTHING_TO_DO and "already moved" in moved["why"]


def test_every_region_down_alerts_level_4_once_and_never_fails_over(estate: Estate) -> None:
    decision = decide(estate, _event(ALL_REGIONS_DOWN, healthy=()), conf_keys=CONF_KEYS)
    assert decision["action"] == ALERT_ALL_DOWN and decision["conf"] == {}
    assert decision["incident"]["level"] == 4 and decision["alert"]["level"] == 4
    assert "No failover" in decision["alert"]["summary"]
    for region in REGIONS:
        assert f"- {region}: score" in decision["alert"]["summary"]
    already = decide(
        estate,
        _event(ALL_REGIONS_DOWN, healthy=()),
        recent_alerts=[{"recorded_at": "earlier", "status": "alerted"}],
        running_failovers=0,
    )
    assert already["action"] == NOTHING_TO_DO and "already went out" in already["why"]


def test_rotation_and_unknown_events(estate: Estate) -> None:
    assert decide(estate, {"kind": ROTATE})["action"] == NOTHING_TO_DO
    with pytest.raises(ValueError, match=r"^event\.kind: "):
        decide(estate, {"kind": "error"})


# -- which region serves -----------------------------------------------------------------------------
def test_routing_view_follows_the_control_plane(monkeypatch: pytest.MonkeyPatch, estate: Estate) -> None:
    from moto import mock_aws

    from dr_automation.hooks.route53 import Route53Hook
    from dr_automation.operators.route53 import (
        Route53EnsureFailoverRoutingOperator,
        Route53EnsureHealthChecksOperator,
        Route53SwitchTrafficOperator,
    )
    from dr_automation.route53_plan import routing_view

    class TI:
        def xcom_push(self, key: str, value: object) -> None:
            pass

    def execute(op: Any) -> Any:
        return op.execute({"ti": TI()})

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        hook = Route53Hook(aws_conn_id=None)
        hook.conn.create_hosted_zone(Name=estate.route53["hosted_zone"], CallerReference="z")
        absent = routing_view(estate, hook)
        assert absent["mode"] == "absent" and absent["serving_region"] == "us-east-1" and absent["note"]
        execute(Route53EnsureHealthChecksOperator(task_id="hc", aws_conn_id=None))
        execute(Route53EnsureFailoverRoutingOperator(task_id="records", aws_conn_id=None))
        view = routing_view(estate, hook)
        assert (view["mode"], view["serving_region"], view["pair"]) == (
            "failover",
            "us-east-1",
            ["us-east-1", "us-west-2"],
        )
        execute(
            Route53SwitchTrafficOperator(
                task_id="s", target_region="us-west-2", mode="health_check", aws_conn_id=None
            )
        )
        inverted = routing_view(estate, hook)
        assert inverted["serving_region"] == "us-west-2" and inverted["inverted_checks"] == ["us-east-1"]
        execute(
            Route53SwitchTrafficOperator(
                task_id="m", target_region="eu-west-1", mode="manual_override", aws_conn_id=None
            )
        )
        manual = routing_view(estate, hook)
        assert (manual["mode"], manual["serving_region"]) == ("manual_override", "eu-west-1")


# -- the DAG ---------------------------------------------------------------------------------------
def test_dag_shape(repo_root: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    path = repo_root / "dags" / "region_health_monitor.py"
    bag = DagBag(dag_folder=str(path.parent), collect_dags=False)
    dags = {d.dag_id: d for d in bag.process_file(str(path), only_if_updated=False, safe_mode=True)}
    assert not bag.import_errors, bag.import_errors
    dag = dags["region_health_monitor"]
    assert dag.schedule == "@continuous" and type(dag.timetable).__name__ == "ContinuousTimetable"
    assert dag.max_active_runs == 1 and not dag.catchup
    assert set(dag.task_ids) == {"wait_for_unhealthy_primary", "decide_and_act"}
    assert dag.get_task("wait_for_unhealthy_primary").downstream_task_ids == {"decide_and_act"}
    trigger = dag.get_task("decide_and_act")
    assert trigger.trigger_dag_id == "regional_failover"
    assert trigger.skip_when_already_exists and trigger.fail_when_dag_is_paused
    assert dag.get_task("wait_for_unhealthy_primary").deferrable
