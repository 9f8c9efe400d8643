"""regional_failover and dns_failover_setup through the REST API on the sandbox (real scheduler,
real DNS answers, real HTTP to the regions). Tests run in file order on one sandbox."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from dr_sandbox.airflow_client import AirflowAPIError
from dr_sandbox.webhook_sink import fetch_messages
from tests.e2e.conftest import running_sandbox
from tests.e2e.failover_helpers import address, answer, aws_client, regions_state, xcom
from tests.e2e.failover_helpers import run as run_dag

pytestmark = pytest.mark.e2e

GOOD = {
    "target_region": "us-west-2",
    "reason": "us-east-1 API returning 5xx for 10 minutes",
    "requested_by": "sre-oncall",
    "incident_level": 3,
    "mode": "health_check",
    "dry_run": False,
}

MALFORMED = [
    {**GOOD, "target_region": "us-east-2"},
    {**GOOD, "target_region": ""},
    {**GOOD, "target_region": 3},
    {**GOOD, "reason": ""},
    {**GOOD, "reason": "short"},
    {**GOOD, "reason": "1234567890123"},
    {**GOOD, "reason": "x" * 501},
    {**GOOD, "reason": None},
    {**GOOD, "requested_by": ""},
    {**GOOD, "requested_by": "Robert'); DROP TABLE--"},
    {**GOOD, "requested_by": "a" * 65},
    {**GOOD, "incident_level": 0},
    {**GOOD, "incident_level": 5},
    {**GOOD, "incident_level": "3"},
    {**GOOD, "incident_level": 2.5},
    {**GOOD, "mode": "dns"},
    {**GOOD, "mode": None},
    {**GOOD, "dry_run": "yes"},
    {**GOOD, "dry_run": 1},
    {**GOOD, "target_region": ["us-west-2"]},
    {**GOOD, "requested_by": {"name": "sre"}},
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox(tmp_path_factory, "failover", ("dns_failover_setup", "regional_failover")) as (
        layout,
        endpoints,
        creds,
        client,
    ):
        yield layout, endpoints, creds, client


def test_dns_failover_setup_reconciles_and_a_second_run_changes_nothing(sandbox):
    layout, endpoints, _, client = sandbox
    run, tis = run_dag(client, "dns_failover_setup", {}, "setup_1")
    assert run["state"] == "success", {t: v["state"] for t, v in tis.items()}
    run, tis = run_dag(client, "dns_failover_setup", {}, "setup_2")
    assert run["state"] == "success"
    checks = xcom(client, "dns_failover_setup", "setup_2", "ensure_health_checks")
    routing = xcom(client, "dns_failover_setup", "setup_2", "ensure_failover_routing")
    assert not any(v["changed"] for v in checks.values())
    assert routing["change_id"] is None and routing["applied"] == []
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_malformed_confs_are_refused_with_400_and_change_nothing(sandbox):
    layout, endpoints, _, client = sandbox
    before = client.request("GET", "/dags/regional_failover/dagRuns")["total_entries"]
    refused = []
    for i, conf in enumerate(MALFORMED):
        with pytest.raises(AirflowAPIError) as exc:
            client.trigger("regional_failover", conf, run_id=f"bad_{i}")
        refused.append(exc.value.status_code)
    assert refused == [400] * len(MALFORMED)
    assert client.request("GET", "/dags/regional_failover/dagRuns")["total_entries"] == before
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_an_unknown_requester_or_extra_key_fails_before_anything_moves(sandbox):
    layout, endpoints, _, client = sandbox
    run, tis = run_dag(client, "regional_failover", {**GOOD, "requested_by": "intern"}, "unauthorized")
    assert run["state"] == "failed"
    assert tis["authorize"]["state"] == "failed"
    assert tis["switch_dns"]["state"] == "upstream_failed"
    run, tis = run_dag(client, "regional_failover", {**GOOD, "force": True}, "extra_key")
    assert run["state"] == "failed" and tis["authorize"]["state"] == "failed"
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_dry_run_reports_the_plan_and_changes_nothing(sandbox):
    layout, endpoints, creds, client = sandbox
    run, tis = run_dag(client, "regional_failover", {**GOOD, "dry_run": True}, "dry")
    assert run["state"] == "success", {t: v["state"] for t, v in tis.items()}
    plan = xcom(client, "regional_failover", "dry", "switch_dns")
    assert plan["change"] is None and plan["previous_flags"] == {} and not plan["plan"]["noop"]
    assert tis["wait_insync"]["state"] == "skipped"
    assert xcom(client, "regional_failover", "dry", "record_failover")["outcome"] == "dry_run"
    assert xcom(client, "regional_failover", "dry", "scale_target")["planned"] is True
    assert regions_state(layout, creds, endpoints)["us-west-2"] == {
        "capacity": {"MinSize": 2, "MaxSize": 12, "DesiredCapacity": 2},
        "writes": "fixed-response",
    }
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]


def test_failover_moves_dns_to_the_target_and_http_reaches_it(sandbox):
    layout, endpoints, creds, client = sandbox
    t0 = time.monotonic()
    run, tis = run_dag(client, "regional_failover", GOOD, "failover_1")
    assert run["state"] == "success", {t: v["state"] for t, v in tis.items()}
    target = address(endpoints, "us-west-2")
    assert answer(layout, endpoints) == [target]
    assert httpx.get(f"http://{target}:{layout.app_port}/api/whoami").json()["region"] == "us-west-2"
    recorded = xcom(client, "regional_failover", "failover_1", "record_failover")
    assert recorded["outcome"] == "success"
    bucket, key = recorded["location"].removeprefix("s3://").split("/", 1)
    s3 = aws_client(layout, creds, "s3", "us-west-2")
    record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert record["requested_by"] == "sre-oncall" and record["steps"]["switch_dns"]["previous_flags"]
    assert record["outcome"] == "success" and record["approval"] is None
    assert record["task_states"]["verify_traffic"] == "success"
    # the target region now serves: scaled to serving size, writes open there and closed on the old one
    regions = regions_state(layout, creds, endpoints)
    assert regions["us-west-2"]["capacity"]["DesiredCapacity"] == 6, regions
    assert (regions["us-west-2"]["writes"], regions["us-east-1"]["writes"]) == ("forward", "fixed-response")
    sessions = record["steps"]["migrate_sessions"]
    seeded = endpoints["sessions"]["seeded"]["us-east-1"]
    assert sessions["status"] == "migrated" and sessions["migrated"] == seeded == sessions["target_sessions"]
    serving = json.loads(s3.get_object(Bucket=bucket, Key="state/serving-region.json")["Body"].read())
    assert serving["serving_region"] == "us-west-2" and serving["previous_region"] == "us-east-1"
    assert serving["failover_id"] == record["failover_id"]
    assert time.monotonic() - t0 < 300


def test_failover_to_the_region_already_serving_is_a_successful_noop(sandbox):
    layout, endpoints, _, client = sandbox
    run, _ = run_dag(client, "regional_failover", GOOD, "failover_again")
    assert run["state"] == "success"
    assert xcom(client, "regional_failover", "failover_again", "switch_dns")["plan"]["noop"] is True
    assert answer(layout, endpoints) == [address(endpoints, "us-west-2")]


def test_a_fault_in_the_dns_switch_leaves_dns_as_before_and_notifies_failure(sandbox):
    layout, endpoints, _, client = sandbox
    before = answer(layout, endpoints)
    httpx.post(
        f"{layout.aws_url}/_sandbox/faults",
        json={"service": "route53", "action": "ChangeResourceRecordSets", "mode": "error", "count": 20},
    ).raise_for_status()
    conf = {
        **GOOD,
        "target_region": "eu-west-1",
        "mode": "record_swap",
        "reason": "drill: fault in the DNS switch",
    }
    run, tis = run_dag(client, "regional_failover", conf, "faulted")
    httpx.delete(f"{layout.aws_url}/_sandbox/faults")
    assert run["state"] == "failed"
    assert tis["switch_dns"]["state"] == "failed"
    assert tis["rollback_dns"]["state"] == "success"
    time.sleep(3)  # > interval x threshold of the DNS stand-in: a moved record would show by now
    assert answer(layout, endpoints) == before
    chat = fetch_messages(endpoints["webhook_sink"]["url"], "/chat")
    assert tis["notify_failure"]["state"] == "success", {t: v["state"] for t, v in tis.items()}
    assert any("FAILED" in json.dumps(m) for m in chat), chat[-3:]
