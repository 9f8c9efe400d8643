"""regional_failover's approval gate and one-switch-at-a-time guarantee, and regional_failback, through
the REST API on the sandbox (real scheduler and triggerer, real DNS answers, real HTTP probes).

Tests run in file order on one sandbox; each leaves DNS where the next one expects it.
"""

from __future__ import annotations

import json
import time

import psycopg2
import pytest

from dr_sandbox.regional_app import set_app_mode
from dr_sandbox.webhook_sink import fetch_messages
from tests.e2e.conftest import running_sandbox
from tests.e2e.failover_helpers import (
    FAILBACK,
    FAILOVER,
    address,
    answer,
    aws_client,
    control_plane,
    regions_state,
    states,
    tis,
    wait_task_state,
    xcom,
)

# Each test: at most one sandbox start (~30 s) plus its runs, each bounded by RUN_TIMEOUT.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

HUMAN_L2 = {
    "target_region": "us-west-2",
    "reason": "us-east-1 API error rate above 20 percent",
    "requested_by": "sre-oncall",
    "incident_level": 2,
    "mode": "health_check",
    "dry_run": False,
}
FAILBACK_CONF = {
    "reason": "us-east-1 recovered after the database fix",
    "requested_by": "sre-oncall",
    "incident_level": 3,
    "dry_run": False,
    "stable_seconds": 3,
}
RUN_TIMEOUT = 240


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox(tmp_path_factory, "failback", ("dns_failover_setup", FAILOVER, FAILBACK)) as (
        layout,
        endpoints,
        creds,
        client,
    ):
        yield layout, endpoints, creds, client


@pytest.fixture(scope="module")
def route53(sandbox):
    layout, _, creds, _ = sandbox
    return aws_client(layout, creds, "route53")


def _run(client, dag_id, conf, run_id, timeout=RUN_TIMEOUT):
    client.trigger(dag_id, conf, run_id=run_id)
    return _finished(client, dag_id, run_id, timeout)


def _finished(client, dag_id, run_id, timeout=RUN_TIMEOUT):
    run = client.wait_for_run(dag_id, run_id, timeout=timeout)
    return run, tis(client, dag_id, run_id)


def _wait_answer(layout, endpoints, region, timeout=30.0):
    """The DNS stand-in's checkers need a few intervals to see a changed app."""
    want = [address(endpoints, region)]
    deadline = time.monotonic() + timeout
    while answer(layout, endpoints) != want:
        assert time.monotonic() < deadline, f"DNS still answers {answer(layout, endpoints)}, want {want}"
        time.sleep(0.5)


def _answer_approval(client, run_id, option, sandbox_layout, endpoints):
    """Wait for the HITL prompt, prove nothing moved meanwhile, then answer as an approver would."""
    current = wait_task_state(client, FAILOVER, run_id, "await_approval", "awaiting_input")
    reached = time.monotonic()
    assert current["switch_dns"]["state"] in (None, "scheduled", "queued"), states(current)
    assert current["check_target_healthy"]["state"] in (None, "scheduled", "queued"), states(current)
    assert answer(sandbox_layout, endpoints) == [address(endpoints, "us-east-1")]
    time.sleep(max(0.0, 2.5 - (time.monotonic() - reached)))  # FACTS.md: an earlier answer fails the task
    assert tis(client, FAILOVER, run_id)["switch_dns"]["state"] in (None, "scheduled", "queued")
    assert answer(sandbox_layout, endpoints) == [address(endpoints, "us-east-1")]
    client.request(
        "PATCH",
        f"/dags/{FAILOVER}/dagRuns/{run_id}/taskInstances/await_approval/-1/hitlDetails",
        json={"chosen_options": [option], "params_input": {}},
    )


def _record(layout, creds, location):
    bucket, key = location.removeprefix("s3://").split("/", 1)
    body = aws_client(layout, creds, "s3", "us-west-2").get_object(Bucket=bucket, Key=key)["Body"]
    return json.loads(body.read())


def _failover_runs(client):
    return {r["dag_run_id"] for r in client.request("GET", f"/dags/{FAILOVER}/dagRuns?limit=100")["dag_runs"]}


def _switch_audit(creds, run_ids):
    with psycopg2.connect(creds["audit_database_dsn"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT run_id, status, detail FROM dr_audit_events "
            "WHERE event_type = 'failover.dns_switch' AND run_id = ANY(%s) ORDER BY id",
            (list(run_ids),),
        )
        rows = cur.fetchall()
    conn.close()
    return rows


def _steady(route53, endpoints, creds):
    """The configured pair (PRIMARY us-east-1, SECONDARY us-west-2) and no check inverted."""
    state = control_plane(route53, endpoints)
    by_role = {r.get("Failover", "plain"): r["ResourceRecords"][0]["Value"] for r in state["records"]}
    assert by_role == {
        "PRIMARY": address(endpoints, "us-east-1"),
        "SECONDARY": address(endpoints, "us-west-2"),
    }, state["records"]
    assert not any(f["Inverted"] for f in state["checks"].values()), state["checks"]


# ------------------------------------------------------------------------------------------------
def test_setup_puts_traffic_on_the_primary(sandbox):
    layout, endpoints, _, client = sandbox
    run, tis = _run(client, "dns_failover_setup", {}, "setup")
    assert run["state"] == "success", states(tis)
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_a_rejected_failover_stops_cleanly_and_says_not_approved(sandbox, route53):
    layout, endpoints, creds, client = sandbox
    before = control_plane(route53, endpoints)
    client.trigger(FAILOVER, HUMAN_L2, run_id="reject_l2")
    _answer_approval(client, "reject_l2", "Reject", layout, endpoints)
    run, tis = _finished(client, FAILOVER, "reject_l2")
    # A rejection is a decision, not a failure: the run succeeds and nothing moved.
    assert run["state"] == "success", states(tis)
    assert tis["await_approval"]["state"] == "success"
    for task_id in ("check_target_healthy", "switch_dns", "rollback_dns", "watcher", "notify_failure"):
        assert tis[task_id]["state"] == "skipped", states(tis)
    recorded = xcom(client, FAILOVER, "reject_l2", "record_failover")
    assert recorded["outcome"] == "not_approved" and recorded["detail"].startswith("rejected by "), recorded
    assert tis["notify_completion"]["state"] == "success"
    chat = fetch_messages(endpoints["webhook_sink"]["url"], "/chat")
    assert any("was not approved" in json.dumps(m) for m in chat), chat[-3:]
    assert _switch_audit(creds, ["reject_l2"]) == []
    assert control_plane(route53, endpoints) == before
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_an_approved_failover_waits_for_the_human_then_moves_dns(sandbox):
    layout, endpoints, creds, client = sandbox
    client.trigger(FAILOVER, HUMAN_L2, run_id="approve_l2")
    _answer_approval(client, "approve_l2", "Approve", layout, endpoints)
    run, tis = _finished(client, FAILOVER, "approve_l2")
    assert run["state"] == "success", states(tis)
    assert tis["switch_dns"]["state"] == "success"
    assert xcom(client, FAILOVER, "approve_l2", "record_failover")["outcome"] == "success"
    assert answer(layout, endpoints) == [address(endpoints, "us-west-2")]
    record = _record(layout, creds, xcom(client, FAILOVER, "approve_l2", "record_failover")["location"])
    assert record["approval"]["answer"] == "Approve" and record["approval"]["by"] == creds["username"]


def test_an_unanswered_approval_times_out_moves_nothing_and_is_recorded(sandbox, route53):
    """The sandbox's approval timeout is 1 minute (30 in the bundled estate)."""
    layout, endpoints, creds, client = sandbox
    before = control_plane(route53, endpoints)
    serving = answer(layout, endpoints)
    conf = {**HUMAN_L2, "reason": "us-east-1 latency alarms; nobody answers the approval"}
    client.trigger(FAILOVER, conf, run_id="approval_timeout")
    wait_task_state(client, FAILOVER, "approval_timeout", "await_approval", "awaiting_input")
    run, task_instances = _finished(client, FAILOVER, "approval_timeout")
    assert run["state"] == "failed", states(task_instances)
    assert task_instances["await_approval"]["state"] == "failed"
    assert task_instances["switch_dns"]["state"] == "upstream_failed"
    recorded = xcom(client, FAILOVER, "approval_timeout", "record_failover")
    assert recorded["outcome"] == "approval_timed_out", recorded
    assert _record(layout, creds, recorded["location"])["outcome"] == "approval_timed_out"
    chat = fetch_messages(endpoints["webhook_sink"]["url"], "/chat")
    assert any("approval timed out" in json.dumps(m) for m in chat), chat[-3:]
    assert control_plane(route53, endpoints) == before
    assert answer(layout, endpoints) == serving


def test_failback_is_refused_while_the_primary_is_down_and_nothing_moves(sandbox, route53):
    _, endpoints, _, client = sandbox
    before, runs_before = control_plane(route53, endpoints), _failover_runs(client)
    app = endpoints["regions"]["us-east-1"]["url"]
    set_app_mode(app, "down")
    try:
        run, tis = _run(client, FAILBACK, FAILBACK_CONF, "failback_down")
    finally:
        set_app_mode(app, "healthy")
    assert run["state"] == "failed", states(tis)
    assert tis["primary_stably_healthy"]["state"] == "failed"
    for task_id in ("prepare_failover", "trigger_failover", "restore_steady_state", "dns_answers_primary"):
        assert tis[task_id]["state"] == "upstream_failed", states(tis)
    log = client.request(
        "GET", f"/dags/{FAILBACK}/dagRuns/failback_down/taskInstances/primary_stably_healthy/logs/1"
    )
    text = json.dumps(log)
    assert "us-east-1 is not stably healthy" in text and "/health" in text, text[-2000:]
    assert _failover_runs(client) == runs_before
    assert control_plane(route53, endpoints) == before


def test_failback_after_a_health_check_failover_restores_the_primary(sandbox, route53):
    layout, endpoints, creds, client = sandbox
    _wait_answer(layout, endpoints, "us-west-2")  # the primary is back up, its check still inverted
    run, tis = _run(client, FAILBACK, FAILBACK_CONF, "failback_1")
    assert run["state"] == "success", states(tis)
    assessment = xcom(client, FAILBACK, "failback_1", "assess_routing")
    assert assessment["serving"] == "us-west-2" and assessment["mode"] == "health_check"
    healthy = xcom(client, FAILBACK, "failback_1", "primary_stably_healthy")
    assert healthy["probes"] >= 2 and healthy["region"] == "us-east-1"
    child = client.request("GET", f"/dags/{FAILOVER}/dagRuns/failback__failback_1")
    assert child["state"] == "success"
    assert child["conf"]["target_region"] == "us-east-1" and child["conf"]["mode"] == "health_check"
    assert xcom(client, FAILOVER, "failback__failback_1", "record_failover")["outcome"] == "success"
    _steady(route53, endpoints, creds)
    gates = {r: v["writes"] for r, v in regions_state(layout, creds, endpoints).items()}
    assert gates == {"us-east-1": "forward", "us-west-2": "fixed-response", "eu-west-1": "fixed-response"}
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_failback_when_already_on_the_primary_is_a_successful_noop(sandbox, route53):
    layout, endpoints, _, client = sandbox
    before, runs_before = control_plane(route53, endpoints), _failover_runs(client)
    run, tis = _run(client, FAILBACK, FAILBACK_CONF, "failback_noop")
    assert run["state"] == "success", states(tis)
    for task_id in ("primary_stably_healthy", "prepare_failover", "trigger_failover"):
        assert tis[task_id]["state"] == "skipped", states(tis)
    assert xcom(client, FAILBACK, "failback_noop", "restore_steady_state")["changed"] is False
    assert _failover_runs(client) == runs_before
    assert control_plane(route53, endpoints) == before
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_two_simultaneous_failovers_switch_exactly_once(sandbox):
    layout, endpoints, creds, client = sandbox
    conf = {**HUMAN_L2, "incident_level": 3, "reason": "us-east-1 down: two responders at once"}
    pair = ("race_a", "race_b")
    for run_id in pair:
        client.trigger(FAILOVER, conf, run_id=run_id)
    results = {run_id: _finished(client, FAILOVER, run_id) for run_id in pair}
    for run_id, (run, task_instances) in results.items():
        assert run["state"] == "success", (run_id, states(task_instances))
    noops = sorted(xcom(client, FAILOVER, r, "switch_dns")["plan"]["noop"] for r in pair)
    assert noops == [False, True]
    switched = [
        (run_id, detail)
        for run_id, status, detail in _switch_audit(creds, pair)
        if status == "succeeded" and not detail["plan"]["noop"]
    ]
    assert len(switched) == 1, switched
    assert xcom(client, FAILOVER, switched[0][0], "switch_dns")["plan"]["noop"] is False
    assert answer(layout, endpoints) == [address(endpoints, "us-west-2")]


def test_the_monitor_never_waits_for_approval(sandbox):
    layout, endpoints, _, client = sandbox
    conf = {
        **HUMAN_L2,
        "requested_by": "region_health_monitor",
        "target_region": "eu-west-1",
        "mode": "record_swap",
        "reason": "3 consecutive failed health checks in us-west-2",
    }
    run, tis = _run(client, FAILOVER, conf, "monitor_l2", timeout=120)
    assert run["state"] == "success", states(tis)
    assert tis["await_approval"]["state"] == "skipped"
    decision = client.request(
        "GET", f"/dags/{FAILOVER}/dagRuns/monitor_l2/taskInstances/authorize/xcomEntries/decision"
    )["value"]
    assert decision["needs_approval"] is False
    assert answer(layout, endpoints) == [address(endpoints, "eu-west-1")]


def test_failback_after_a_record_swap_restores_the_configured_pair(sandbox, route53):
    layout, endpoints, creds, client = sandbox
    run, tis = _run(client, FAILBACK, FAILBACK_CONF, "failback_2")
    assert run["state"] == "success", states(tis)
    child = client.request("GET", f"/dags/{FAILOVER}/dagRuns/failback__failback_2")
    assert child["conf"]["mode"] == "record_swap" and child["state"] == "success"
    _steady(route53, endpoints, creds)
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]
