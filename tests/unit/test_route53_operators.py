"""Route 53 operators and the switch planner against moto, with the bundled estate."""

from __future__ import annotations

import pytest

from dr_automation.estate import load_estate
from dr_automation.hooks.route53 import Route53Hook, record_key
from dr_automation.operators.route53 import (
    Route53EnsureFailoverRoutingOperator,
    Route53EnsureHealthChecksOperator,
    Route53RollbackOperator,
    Route53SwitchTrafficOperator,
)
from dr_automation.route53_plan import TrafficSwitchError, plan_switch, routing_state


class _TI:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


@pytest.fixture
def estate():
    return load_estate()


@pytest.fixture
def aws(mocked_aws, estate):
    hook = Route53Hook(aws_conn_id=None)
    hook.conn.create_hosted_zone(Name=estate.route53["hosted_zone"], CallerReference="z")
    return hook


def _run(op):
    ctx = {"ti": _TI()}
    return op.execute(ctx), ctx["ti"]


def _setup(aws):
    _run(Route53EnsureHealthChecksOperator(task_id="hc", aws_conn_id=None))
    return _run(Route53EnsureFailoverRoutingOperator(task_id="records", aws_conn_id=None))


def _records(aws, estate):
    zone_id = aws.get_hosted_zone_id(estate.route53["hosted_zone"])
    return sorted(aws.list_record_sets(zone_id), key=record_key)


def _state(aws, estate):
    return routing_state(estate, _records(aws, estate))


def test_setup_is_idempotent_and_ties_records_to_checks(aws, estate):
    first, _ = _run(Route53EnsureHealthChecksOperator(task_id="hc", aws_conn_id=None))
    assert set(first) == set(estate.regions) and all(v["changed"] for v in first.values())
    again, _ = _run(Route53EnsureHealthChecksOperator(task_id="hc", aws_conn_id=None))
    assert {r: v["id"] for r, v in again.items()} == {r: v["id"] for r, v in first.items()}
    assert not any(v["changed"] for v in again.values())
    check = aws.get_health_check(first["us-east-1"]["id"])["HealthCheckConfig"]
    assert (
        check["Type"],
        check["ResourcePath"],
        check["Port"],
        check["RequestInterval"],
        check["FailureThreshold"],
    ) == (
        "HTTPS",
        "/health",
        443,
        30,
        3,
    )

    records, ti = _run(Route53EnsureFailoverRoutingOperator(task_id="records", aws_conn_id=None))
    assert records["change_id"] and len(records["applied"]) == 2
    assert ti.pushed["route53_hosted_zone"]["zone_id"] == records["zone_id"]
    state = _state(aws, estate)
    assert (state.mode, state.primary_region, state.secondary_region) == (
        "failover",
        "us-east-1",
        "us-west-2",
    )
    assert state.primary_record["HealthCheckId"] == first["us-east-1"]["id"]
    assert state.primary_record["TTL"] == 60
    second, _ = _run(Route53EnsureFailoverRoutingOperator(task_id="records", aws_conn_id=None))
    assert second["change_id"] is None and second["applied"] == []


def test_health_check_mode_inverts_the_primary_check_and_rolls_back(aws, estate):
    _setup(aws)
    result, _ = _run(
        Route53SwitchTrafficOperator(
            task_id="s", target_region="us-west-2", mode="health_check", aws_conn_id=None
        )
    )
    primary_check = _state(aws, estate).primary_record["HealthCheckId"]
    assert result["previous_flags"] == {primary_check: {"Inverted": False, "Disabled": False}}
    assert aws.get_health_check(primary_check)["HealthCheckConfig"]["Inverted"] is True
    # already failed over: a second run is a successful no-op
    again, _ = _run(
        Route53SwitchTrafficOperator(
            task_id="s", target_region="us-west-2", mode="health_check", aws_conn_id=None
        )
    )
    assert again["plan"]["noop"] and again["previous_flags"] == {}
    _run(Route53RollbackOperator(task_id="rb", switch_result=result, aws_conn_id=None))
    assert aws.get_health_check(primary_check)["HealthCheckConfig"]["Inverted"] is False


def test_record_swap_and_manual_override_roll_back_to_exactly_the_previous_records(aws, estate):
    _setup(aws)
    before = _records(aws, estate)
    swap, _ = _run(
        Route53SwitchTrafficOperator(
            task_id="s", target_region="eu-west-1", mode="record_swap", aws_conn_id=None
        )
    )
    state = _state(aws, estate)
    assert (state.primary_region, state.secondary_region) == ("eu-west-1", "us-east-1")
    _run(Route53RollbackOperator(task_id="rb", switch_result=swap, aws_conn_id=None))
    assert _records(aws, estate) == before

    manual, _ = _run(
        Route53SwitchTrafficOperator(
            task_id="m", target_region="us-west-2", mode="manual_override", aws_conn_id=None
        )
    )
    state = _state(aws, estate)
    assert state.mode == "manual_override" and state.primary_region == "us-west-2"
    assert state.plain_record["TTL"] == 30
    _run(Route53RollbackOperator(task_id="rb", switch_result=manual, aws_conn_id=None))
    assert _records(aws, estate) == before


class _TIWithXCom(_TI):
    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value

    def xcom_pull(self, task_ids: str) -> object:
        assert task_ids == "switch_dns"
        return self.value


def test_rollback_reads_the_switch_result_from_xcom_and_refuses_a_string(aws, estate):
    _setup(aws)
    before = _records(aws, estate)
    swap, _ = _run(
        Route53SwitchTrafficOperator(
            task_id="s", target_region="eu-west-1", mode="record_swap", aws_conn_id=None
        )
    )
    rollback = Route53RollbackOperator(task_id="rb", switch_task_id="switch_dns", aws_conn_id=None)
    with pytest.raises(TypeError, match="switch_result: expected the switch task's result dict, got str"):
        rollback.execute({"ti": _TIWithXCom(str(swap))})  # what a Jinja-rendered XCom would give
    assert _state(aws, estate).primary_region == "eu-west-1"  # nothing was touched
    assert rollback.execute({"ti": _TIWithXCom(None)}) == {"records": None, "flags": {}}
    rollback.execute({"ti": _TIWithXCom(swap)})
    assert _records(aws, estate) == before
    with pytest.raises(ValueError, match="give exactly one"):
        Route53RollbackOperator(task_id="rb2", aws_conn_id=None)


def test_dry_run_changes_nothing_and_reports_the_plan(aws, estate):
    _setup(aws)
    before = _records(aws, estate)
    result, _ = _run(
        Route53SwitchTrafficOperator(
            task_id="d", target_region="eu-west-1", mode="record_swap", dry_run="true", aws_conn_id=None
        )
    )
    assert result["change"] is None and not result["plan"]["noop"]
    assert "PRIMARY us-east-1 -> eu-west-1" in result["plan"]["summary"]
    assert _records(aws, estate) == before


def test_a_failing_switch_undoes_its_own_partial_work(aws, estate, monkeypatch):
    _setup(aws)
    primary_check = _state(aws, estate).primary_record["HealthCheckId"]

    def boom(*args, **kwargs):
        raise RuntimeError("injected: change batch refused")

    op = Route53SwitchTrafficOperator(
        task_id="s", target_region="us-west-2", mode="health_check", aws_conn_id=None
    )
    original = Route53Hook.set_health_check_flags
    calls = []

    def flaky(self, check_id, **kwargs):
        calls.append(kwargs)
        before = original(self, check_id, **kwargs)
        if len(calls) == 1:
            boom()
        return before

    monkeypatch.setattr(Route53Hook, "set_health_check_flags", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        _run(op)
    assert aws.get_health_check(primary_check)["HealthCheckConfig"]["Inverted"] is False


@pytest.mark.parametrize(
    ("target", "mode", "field"),
    [
        ("eu-west-1", "health_check", "target_region"),
        ("us-west-2", "swap", "mode"),
        ("ap-south-1", "record_swap", "target_region"),
    ],
)
def test_plan_refuses_impossible_switches_naming_the_field(aws, estate, target, mode, field):
    _setup(aws)
    records = _records(aws, estate)
    with pytest.raises(TrafficSwitchError) as exc:
        plan_switch(estate, target_region=target, mode=mode, records=records, health_checks={})
    assert exc.value.field == field, str(exc.value)


def test_record_modes_need_the_failover_pair(aws, estate):
    with pytest.raises(TrafficSwitchError, match="dns_failover_setup"):
        plan_switch(estate, target_region="us-west-2", mode="record_swap", records=[], health_checks={})
