"""A fault injected at each step of regional_failover in turn, through the REST API on the sandbox.

Every case must end with the run failed at the faulted step, and the estate exactly as before: the
DNS answer, Route 53's records and health-check flags, every region's Auto Scaling group and write
gate. A fault after the switch must also reach the stakeholders (the FAILED notice); one before it
pages on-call. Faults are real where they can be: a region's app switched down, a resolver answering
SERVFAIL, a paused Redis; AWS API errors come from the emulator's fault injection.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from dr_sandbox import sessions
from dr_sandbox.regional_app import set_app_mode
from dr_sandbox.webhook_sink import fetch_messages
from tests.e2e.conftest import running_sandbox
from tests.e2e.failover_helpers import (
    FAILOVER,
    address,
    answer,
    aws_client,
    control_plane,
    regions_state,
    run,
    states,
    wait_task_state,
    xcom,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CONF = {
    "target_region": "us-west-2",
    "reason": "us-east-1 API failing health checks (fault drill)",
    "requested_by": "sre-oncall",
    "incident_level": 3,
    "mode": "health_check",
    "dry_run": False,
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox(tmp_path_factory, "faults", ("dns_failover_setup", FAILOVER)) as ctx:
        _, _, _, client = ctx
        finished, _ = run(client, "dns_failover_setup", {}, "setup")
        assert finished["state"] == "success"
        yield ctx


def _aws_fault(layout, service: str, action: str) -> Callable[[], contextlib.AbstractContextManager]:
    @contextlib.contextmanager
    def inject(**_: object) -> Iterator[None]:
        spec = {"service": service, "action": action, "mode": "error", "count": 100}
        httpx.post(f"{layout.aws_url}/_sandbox/faults", json=spec).raise_for_status()
        try:
            yield
        finally:
            httpx.delete(f"{layout.aws_url}/_sandbox/faults").raise_for_status()

    return inject


def _app_mode(layout, region: str, mode: str) -> None:
    set_app_mode(layout.app_url(region), mode)


@contextlib.contextmanager
def _target_down(layout, **_: object) -> Iterator[None]:
    _app_mode(layout, "us-west-2", "down")
    try:
        yield
    finally:
        _app_mode(layout, "us-west-2", "healthy")


@contextlib.contextmanager
def _resolver_outage(layout, endpoints, **_: object) -> Iterator[None]:
    """SERVFAIL for longer than the sandbox's propagation timeout (15 s); it ends by itself."""
    status = endpoints["dns"]["status"].rsplit("/", 1)[0]
    httpx.post(f"{status}/_sandbox/faults", json={"servfail_seconds": 40}).raise_for_status()
    try:
        yield
    finally:
        httpx.post(f"{status}/_sandbox/faults", json={"servfail_seconds": 0}).raise_for_status()


@contextlib.contextmanager
def _sessions_paused(endpoints, **_: object) -> Iterator[None]:
    """The target's session store refuses writes (its Redis user's writes denied, then allowed again;
    the machine's Redis and every other sandbox on it go on as before)."""
    with sessions.writes_refused(endpoints["sessions"]["users"]["us-west-2"]):
        yield


# (case id, failing task, mode, how to inject, does the fault come after the switch?)
CASES = [
    ("target_unhealthy", "check_target_healthy", "health_check", "target_down", False),
    ("preflight_api_error", "preflight", "health_check", ("route53", "ListResourceRecordSets"), False),
    ("switch_api_error", "switch_dns", "health_check", ("route53", "UpdateHealthCheck"), True),
    ("insync_api_error", "wait_insync", "record_swap", ("route53", "GetChange"), True),
    ("resolvers_servfail", "dns_answers_target", "health_check", "resolver_outage", True),
    ("scaling_api_error", "scale_target", "health_check", ("autoscaling", "UpdateAutoScalingGroup"), True),
    ("session_store_paused", "migrate_sessions", "health_check", "sessions_paused", True),
    (
        "load_balancer_api_error",
        "update_load_balancers",
        "health_check",
        ("elasticloadbalancing", "ModifyRule"),
        True,
    ),
    ("target_dies_after_dns_moved", "verify_traffic", "health_check", "target_dies_late", True),
]


@pytest.mark.parametrize(
    ("case", "task_id", "mode", "fault", "after_switch"), CASES, ids=[c[0] for c in CASES]
)
def test_a_fault_at_each_step_leaves_everything_as_before_and_notifies(
    sandbox, case, task_id, mode, fault, after_switch
):
    layout, endpoints, creds, client = sandbox
    route53 = aws_client(layout, creds, "route53")
    primary = [address(endpoints, "us-east-1")]
    assert answer(layout, endpoints) == primary
    dns_before, regions_before = control_plane(route53, endpoints), regions_state(layout, creds, endpoints)
    sink = endpoints["webhook_sink"]["url"]
    chat_before = len(fetch_messages(sink, "/chat"))
    run_id = f"fault_{case}"
    conf = {**CONF, "mode": mode, "reason": f"{CONF['reason']}: {case}"}

    injectors = {
        "target_down": lambda: _target_down(layout),
        "target_dies_late": lambda: _target_down(layout),
        "resolver_outage": lambda: _resolver_outage(layout, endpoints),
        "sessions_paused": lambda: _sessions_paused(endpoints),
    }
    inject = injectors[fault] if isinstance(fault, str) else _aws_fault(layout, *fault)
    # Faults on what the run itself needs before the switch start once the switch has happened.
    late = {"target_dies_late": "dns_answers_target", "resolver_outage": "switch_dns"}.get(fault)
    if late:
        client.trigger(FAILOVER, conf, run_id=run_id)
        wait_task_state(client, FAILOVER, run_id, late, "success", poll=0.1)
        with inject():
            finished = client.wait_for_run(FAILOVER, run_id, timeout=300)
            tis = {ti["task_id"]: ti for ti in client.task_instances(FAILOVER, run_id)}
    else:
        with inject():
            finished, tis = run(client, FAILOVER, conf, run_id)

    assert finished["state"] == "failed", states(tis)
    assert tis[task_id]["state"] == "failed", states(tis)
    time.sleep(3)  # > the DNS stand-in's health interval x threshold: a moved answer would show by now
    assert answer(layout, endpoints) == primary
    assert control_plane(route53, endpoints) == dns_before
    assert regions_state(layout, creds, endpoints) == regions_before
    recorded = xcom(client, FAILOVER, run_id, "record_failover")
    chat = fetch_messages(sink, "/chat")[chat_before:]
    if after_switch:
        assert tis["rollback_dns"]["state"] == "success" and tis["restore_target"]["state"] == "success"
        assert tis["notify_failure"]["state"] == "success", states(tis)
        assert any("FAILED" in json.dumps(m) for m in chat), chat[-3:]
        assert recorded["outcome"] == "failed_rolled_back", recorded
        assert recorded["detail"].startswith(f"{task_id} failed"), recorded
    else:
        assert tis["switch_dns"]["state"] == "upstream_failed", states(tis)
        assert tis["notify_failure"]["state"] in ("skipped", "upstream_failed"), states(tis)
        assert any(run_id in json.dumps(m) for m in chat), chat[-3:]  # on-call paged with the run
        assert recorded["outcome"].startswith("refused"), recorded
