"""region_health_monitor on the sandbox: real scheduler and triggerer, real HTTP probes of the
regional apps, CloudWatch metrics they publish, real DNS answers. Check interval 1 s, threshold 3,
no cool-down (so each scenario may fail over again). Tests run in file order on one sandbox."""

from __future__ import annotations

import json
import time

import psycopg2
import pytest

from dr_sandbox.load import traffic
from dr_sandbox.regional_app import set_app_mode
from dr_sandbox.webhook_sink import fetch_messages
from tests.e2e.conftest import running_sandbox
from tests.e2e.failover_helpers import FAILBACK, FAILOVER, address, answer, failed_logs, run, states, xcom

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MONITOR = "region_health_monitor"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")
FAILBACK_CONF = {
    "reason": "us-east-1 recovered; back to the primary",
    "requested_by": "sre-oncall",
    "incident_level": 3,
    "dry_run": False,
    "stable_seconds": 3,
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    overrides = {"health": {"failover_cooldown_minutes": 0}}
    with running_sandbox(
        tmp_path_factory, "monitor", ("dns_failover_setup", FAILOVER, FAILBACK), overrides
    ) as ctx:
        _, _, _, client = ctx
        finished, _ = run(client, "dns_failover_setup", {}, "setup")
        assert finished["state"] == "success"
        client.wait_for_dag(MONITOR)
        client.unpause(MONITOR)
        yield ctx
        client.pause(MONITOR)


def _mode(endpoints, region: str, mode: str, **extra: float) -> None:
    set_app_mode(endpoints["regions"][region]["url"], mode, **extra)


def _primary_counts(creds) -> list[tuple[str, int, int]]:
    """(monitor_id, cycle, consecutive_failures) of the serving region, newest first."""
    with psycopg2.connect(creds["audit_database_dsn"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('dr_region_health') IS NOT NULL",
        )
        if not cur.fetchone()[0]:
            return []
        cur.execute(
            "SELECT monitor_id, cycle, consecutive_failures FROM dr_region_health "
            "WHERE serving ORDER BY id DESC LIMIT 50"
        )
        rows = cur.fetchall()
    conn.close()
    return rows


def _failover_runs(client) -> list[dict]:
    return client.runs(FAILOVER)


def _wait_for_new_failover(client, known: set[str], timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [r for r in _failover_runs(client) if r["dag_run_id"] not in known]
        if new:
            return new[0]
        time.sleep(0.5)
    runs = [(r["dag_run_id"], r["state"]) for r in _failover_runs(client)]
    raise AssertionError(
        f"no regional_failover run within {timeout}s (known {sorted(known)}, now {runs}): {_monitor_story(client)}"
    )


def _monitor_story(client) -> list[dict]:
    """The last monitor runs, their task states and decisions: what a failing test needs to show."""
    story = []
    for r in client.runs(MONITOR, limit=4):
        tis = {t["task_id"]: t["state"] for t in client.task_instances(MONITOR, r["dag_run_id"])}
        try:
            decision = client.request(
                "GET",
                f"/dags/{MONITOR}/dagRuns/{r['dag_run_id']}/taskInstances/decide_and_act/xcomEntries/decision",
            )["value"]
        except Exception as exc:
            decision = repr(exc)[:200]
        story.append({"run": r["dag_run_id"], "state": r["state"], "tasks": tis, "decision": decision})
    story.append({"import_errors": client.request("GET", "/importErrors")["import_errors"]})
    return story


def _settle_on_primary(sandbox) -> None:
    """All regions healthy and traffic back on us-east-1 (failback when needed)."""
    layout, endpoints, _, client = sandbox
    for region in REGIONS:
        _mode(endpoints, region, "healthy")
    if answer(layout, endpoints) != [address(endpoints, "us-east-1")]:
        run_id = f"failback_{int(time.time())}"
        finished, tis = run(client, FAILBACK, FAILBACK_CONF, run_id, timeout=300)
        assert finished["state"] == "success", states(tis)
    deadline = time.monotonic() + 30
    while answer(layout, endpoints) != [address(endpoints, "us-east-1")]:
        assert time.monotonic() < deadline
        time.sleep(0.5)


def _assert_one_failover_to_secondary(sandbox, known: set[str]) -> dict:
    layout, endpoints, _, client = sandbox
    failover = _wait_for_new_failover(client, known)
    assert failover["dag_run_id"].startswith(f"{MONITOR}__"), failover
    conf = failover["conf"]
    assert conf["requested_by"] == MONITOR and conf["target_region"] == "us-west-2"
    assert conf["mode"] == "record_swap" and conf["incident_level"] >= 2
    evidence = conf["evidence"]
    assert evidence["serving_region"] == "us-east-1" and evidence["unhealthy_regions"] == ["us-east-1"]
    primary = evidence["regions"]["us-east-1"]
    assert primary["consecutive_failures"] >= 3 and len(primary["cycles"]) >= 3
    assert all(c["checks"] for c in primary["cycles"]), primary
    finished = client.wait_for_run(FAILOVER, failover["dag_run_id"], timeout=300)
    finished = client.wait_for_run(FAILOVER, failover["dag_run_id"], timeout=300)
    assert finished["state"] == "success", failed_logs(client, FAILOVER, failover["dag_run_id"])

    assert answer(layout, endpoints) == [address(endpoints, "us-west-2")]
    time.sleep(5)  # the next monitor run watches the new serving region: no second failover
    assert [r["dag_run_id"] for r in _failover_runs(client) if r["dag_run_id"] not in known] == [
        failover["dag_run_id"]
    ]
    record = xcom(client, FAILOVER, failover["dag_run_id"], "record_failover")
    assert record["outcome"] == "success"
    return failover


def test_two_failures_then_recovery_never_fails_over(sandbox):
    layout, endpoints, creds, client = sandbox
    known = {r["dag_run_id"] for r in _failover_runs(client)}
    _mode(endpoints, "us-east-1", "down")
    try:
        deadline = time.monotonic() + 60
        while not any(c == 2 for _, _, c in _primary_counts(creds)[:1]):
            assert time.monotonic() < deadline, _primary_counts(creds)[:5]
            time.sleep(0.05)
    finally:
        _mode(endpoints, "us-east-1", "healthy")
    time.sleep(6)
    counts = [c for _, _, c in _primary_counts(creds)[:4]]
    assert counts[0] == 0 and max(counts) <= 2, counts
    assert {r["dag_run_id"] for r in _failover_runs(client)} == known
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_every_region_down_alerts_level_4_and_never_fails_over(sandbox):
    _, endpoints, _, client = sandbox
    known = {r["dag_run_id"] for r in _failover_runs(client)}
    sink = endpoints["webhook_sink"]["url"]
    before = len(fetch_messages(sink, "/chat"))
    for region in REGIONS:
        _mode(endpoints, region, "down")
    try:
        deadline = time.monotonic() + 60
        while not any(
            "All regions unhealthy" in json.dumps(m) for m in fetch_messages(sink, "/chat")[before:]
        ):
            assert time.monotonic() < deadline, "no all-regions-down alert"
            time.sleep(0.5)
    finally:
        for region in REGIONS:
            _mode(endpoints, region, "healthy")
    alerts = [m for m in fetch_messages(sink, "/chat")[before:] if "All regions unhealthy" in json.dumps(m)]
    assert any(
        "catastrophic" in json.dumps(m).lower() or "level 4" in json.dumps(m).lower() for m in alerts
    ), alerts
    assert {r["dag_run_id"] for r in _failover_runs(client)} == known
    _settle_on_primary(sandbox)


def test_primary_down_fails_over_exactly_once_with_evidence(sandbox):
    _, endpoints, _, client = sandbox
    known = {r["dag_run_id"] for r in _failover_runs(client)}
    _mode(endpoints, "us-east-1", "down")
    try:
        failover = _assert_one_failover_to_secondary(sandbox, known)
        cycles = failover["conf"]["evidence"]["regions"]["us-east-1"]["cycles"]
        api = [next(c for c in cycle["checks"] if c["name"] == "api") for cycle in cycles[-3:]]
        assert all(not c["passed"] for c in api), api
    finally:
        _settle_on_primary(sandbox)


def test_slow_primary_fails_over(sandbox):
    _, endpoints, _, client = sandbox
    known = {r["dag_run_id"] for r in _failover_runs(client)}
    _mode(endpoints, "us-east-1", "slow", latency_ms=6000)  # threshold 5 s
    try:
        failover = _assert_one_failover_to_secondary(sandbox, known)
        cycles = failover["conf"]["evidence"]["regions"]["us-east-1"]["cycles"]
        api = next(c for c in cycles[-1]["checks"] if c["name"] == "api")
        assert not api["passed"], api
    finally:
        _settle_on_primary(sandbox)


def test_erroring_primary_fails_over_on_its_error_rate(sandbox):
    _, endpoints, _, client = sandbox
    known = {r["dag_run_id"] for r in _failover_runs(client)}
    with traffic(f"{endpoints['regions']['us-east-1']['url']}/api/whoami"):
        _mode(endpoints, "us-east-1", "erroring", error_rate=0.3)  # threshold 5 %
        try:
            failover = _assert_one_failover_to_secondary(sandbox, known)
        finally:
            _settle_on_primary(sandbox)
    cycles = failover["conf"]["evidence"]["regions"]["us-east-1"]["cycles"]
    infra = [next(c for c in cycle["checks"] if c["name"] == "infrastructure") for cycle in cycles[-3:]]
    assert any(not c["passed"] and "error_rate" in c["detail"] for c in infra), infra
