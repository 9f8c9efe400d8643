"""A failover record's outcome comes from what happened (task states, the HITL answer)."""

from __future__ import annotations

import pytest

from dr_automation.failover import MOVED_STEPS, approver_of, failover_outcome

OK = dict.fromkeys(["authorize", "check_target_healthy", "preflight", *MOVED_STEPS], "success")
APPROVED = {"chosen_options": ["Approve"], "responded_by_user": {"id": "7", "name": "platform-lead"}}
REJECTED = {"chosen_options": ["Reject"], "responded_by_user": {"id": "8", "name": "cto"}}


@pytest.mark.parametrize(
    ("states", "dry_run", "approval", "outcome"),
    [
        (OK, False, None, "success"),
        (OK, False, APPROVED, "success"),
        ({**OK, "verify_traffic": "skipped", "wait_insync": "skipped"}, True, None, "dry_run"),
        ({"authorize": "failed", "switch_dns": "upstream_failed"}, False, None, "refused"),
        ({"authorize": "success", "await_approval": "failed"}, False, None, "approval_timed_out"),
        ({"authorize": "success", "await_approval": "success"}, False, REJECTED, "not_approved"),
        ({**OK, "check_target_healthy": "failed"}, False, None, "refused_unhealthy_target"),
        ({**OK, "preflight": "failed"}, False, None, "refused_preflight"),
        (
            {**OK, "migrate_sessions": "failed", "rollback_dns": "success", "restore_target": "success"},
            False,
            None,
            "failed_rolled_back",
        ),
        (
            {**OK, "wait_insync": "failed", "rollback_dns": "failed", "restore_target": "success"},
            False,
            None,
            "failed_rollback_incomplete",
        ),
        ({"authorize": "success"}, False, None, "incomplete"),
    ],
)
def test_outcome_is_read_from_task_states_and_the_answer(states, dry_run, approval, outcome):
    assert failover_outcome(states, dry_run=dry_run, approval=approval)[0] == outcome


def test_detail_names_the_failed_step_and_the_rejecting_approver():
    _, detail = failover_outcome(
        {**OK, "scale_target": "failed", "rollback_dns": "success", "restore_target": "success"},
        dry_run=False,
        approval=None,
    )
    assert detail.startswith("scale_target failed; rollback completed")
    assert "rejected by cto" in failover_outcome({}, dry_run=False, approval=REJECTED)[1]
    assert approver_of(APPROVED) == {"answer": "Approve", "by": "platform-lead", "at": "None"}
    assert approver_of(None) is None


def _probe(healthy: bool):
    return lambda estate, region: {
        "region": region,
        "healthy": healthy,
        "status": 200 if healthy else "ConnectError",
    }


PAIR = {
    "mode": "failover",
    "serving_region": "us-east-1",
    "pair": ["us-east-1", "us-west-2"],
    "inverted_checks": [],
}


def test_health_check_mode_never_inverts_the_check_of_a_region_that_is_down(estate):
    from dr_automation.failover import effective_switch_mode

    assert effective_switch_mode(estate, "health_check", PAIR, _probe(True))[0] == "health_check"
    mode, why = effective_switch_mode(estate, "health_check", PAIR, _probe(False))
    assert mode == "record_swap" and "us-east-1 is not healthy (ConnectError)" in why
    # other modes, and switching back from an inverted check, are left as asked (no probe needed)
    assert effective_switch_mode(estate, "record_swap", PAIR, None)[0] == "record_swap"
    back = {**PAIR, "serving_region": "us-west-2", "inverted_checks": ["us-east-1"]}
    assert effective_switch_mode(estate, "health_check", back, None)[0] == "health_check"


def test_failover_ids_fit_an_incident_id_even_for_long_monitor_run_ids():
    import re

    from dr_automation.failover import new_failover_id

    long_run = "region_health_monitor__scheduled__2026-11-25T00:46:36.536492+00:00"
    a, b = new_failover_id(long_run), new_failover_id(long_run + "x")
    for fid in (a, b, new_failover_id("manual__1")):
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]{2,63}", fid), fid
    assert a != b and a.split("-")[-2].startswith("region_health_monitor")
