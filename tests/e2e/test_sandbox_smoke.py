"""Smoke test of the whole sandbox with real Airflow components (scheduler, api-server, ...).

One sandbox on free ports for the module; the tests run in file order and the last one stops it.
"""

from __future__ import annotations

import json
import socket
import time

import boto3
import httpx
import pytest

from dr_sandbox import database
from dr_sandbox.airflow_client import AirflowClient
from dr_sandbox.sandbox import down, resolve
from tests.e2e.conftest import running_sandbox
from tests.iam_check import assert_calls_within_policies

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox(tmp_path_factory, "sandbox", ()) as (layout, endpoints, creds, _client):
        yield layout, endpoints, creds


def _roles(endpoints, role):
    return next(r for r, v in endpoints["regions"].items() if v["role"] == role)


def test_every_component_is_healthy_and_files_are_written(sandbox):
    layout, endpoints, creds = sandbox
    assert httpx.get(f"{layout.aws_url}/_sandbox/health").status_code == 200
    assert httpx.get(f"{layout.dns_status_url}/health").status_code == 200
    assert httpx.get(f"{layout.k8s_url}/version").status_code == 200
    for region in endpoints["regions"]:
        assert httpx.get(f"{layout.app_url(region)}/health").json()["status"] == "ok"
    health = httpx.get(f"{layout.airflow_url}/api/v2/monitor/health").json()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", component
    # credentials: private, generated, never admin/admin
    assert layout.credentials_file.stat().st_mode & 0o777 == 0o600
    assert creds["username"] != "admin" and creds["password"] != "admin" and len(creds["password"]) >= 16
    assert set(endpoints["regions"]) == {"us-east-1", "us-west-2", "eu-west-1"}
    assert all(v["address"].startswith("127.") for v in endpoints["regions"].values())


def test_dns_answers_primary_and_http_through_it_reaches_the_primary_app(sandbox):
    layout, endpoints, _ = sandbox
    primary = _roles(endpoints, "primary")
    answer = resolve(layout, endpoints["record_name"])
    assert answer == [endpoints["regions"][primary]["address"]]
    r = httpx.get(f"http://{answer[0]}:{layout.app_port}/api/whoami")
    assert r.json()["region"] == primary


def test_rest_triggered_readiness_run_succeeds_and_retries_an_injected_throttle(sandbox):
    """Provider operators against the emulator, a toolbox pod doing a real dump, REST trigger."""
    layout, endpoints, creds = sandbox
    fault = httpx.post(
        f"{layout.aws_url}/_sandbox/faults",
        json={"service": "rds", "action": "DescribeDBInstances", "mode": "throttle", "count": 2},
    )
    assert fault.status_code in (200, 201), fault.text

    client = AirflowClient(layout.airflow_url, creds["username"], creds["password"])
    client.wait_for_dag("dr_readiness_check")
    client.unpause("dr_readiness_check")
    run_id = "smoke__readiness"
    client.trigger("dr_readiness_check", run_id=run_id)
    run = client.wait_for_run("dr_readiness_check", run_id, timeout=420)
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances("dr_readiness_check", run_id)}
    assert run["state"] == "success", states
    assert set(states.values()) == {"success"}

    # the throttle was seen (both injected failures consumed) and retried (the sensor succeeded)
    faults = httpx.get(f"{layout.aws_url}/_sandbox/faults").json()
    hits = [f for f in faults.get("faults", faults) if f.get("action") == "DescribeDBInstances"]
    assert hits and hits[0]["hits"] == 2, faults

    # the toolbox pod did real work: a real pg_dump of the primary is in the emulated S3, and the
    # per-table figures it recorded match the real rows
    primary = endpoints["regions"][_roles(endpoints, "primary")]
    from dr_automation.estate import load_estate

    estate = load_estate(endpoints["estate"])
    s3 = boto3.client(
        "s3",
        endpoint_url=layout.aws_url,
        region_name=estate.primary_region.name,
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
    )
    key = f"readiness/{run_id}/primary.dump"
    body = s3.get_object(Bucket=estate.primary_region.backup_bucket, Key=key)["Body"].read()
    assert body[:5] == b"PGDMP"  # pg_dump custom format
    stats = json.loads(
        s3.get_object(Bucket=estate.primary_region.backup_bucket, Key=f"{key}.stats.json")["Body"].read()
    )
    counts = database.row_counts(creds["primary_database_dsn"])
    assert {t: v["rows"] for t, v in stats["tables"].items()} == counts
    assert primary["role"] == "primary"


def test_primary_down_moves_dns_to_the_secondary_after_interval_times_threshold(sandbox):
    layout, endpoints, _ = sandbox
    from dr_automation.estate import load_estate

    estate = load_estate(endpoints["estate"])
    threshold = estate.route53["health_check"]["failure_threshold"]
    interval = endpoints["health_check_interval_seconds"]
    primary, secondary = _roles(endpoints, "primary"), _roles(endpoints, "secondary")
    record = endpoints["record_name"]

    r = httpx.post(f"{layout.app_url(primary)}/_control", json={"mode": "down"})
    assert r.status_code == 200
    t0 = time.monotonic()
    answers = []
    while time.monotonic() - t0 < interval * threshold * 4 + 5:
        answer = resolve(layout, record)
        answers.append((round(time.monotonic() - t0, 2), answer[0]))
        if answer == [endpoints["regions"][secondary]["address"]]:
            break
        time.sleep(0.1)
    switched_after = time.monotonic() - t0
    assert answers[-1][1] == endpoints["regions"][secondary]["address"], answers
    # not before (threshold - 1) failed probes, and within threshold probes plus refresh slack
    assert switched_after >= (threshold - 1) * interval * 0.9, answers
    assert switched_after <= threshold * interval + 3.0, answers
    whoami = httpx.get(f"http://{answers[-1][1]}:{layout.app_port}/api/whoami").json()
    assert whoami["region"] == secondary


def test_down_stops_everything_and_nothing_keeps_listening(sandbox):
    layout, endpoints, _ = sandbox
    assert_calls_within_policies(layout.aws_url, endpoints["estate"])  # before the emulator stops
    result = down(layout)
    assert "airflow-api-server" in result["stopped"] and "aws-emulator" in result["stopped"]
    time.sleep(0.5)
    targets = [
        (layout.host, layout.aws_port),
        (layout.host, layout.dns_port),
        (layout.host, layout.dns_status_port),
        (layout.host, layout.k8s_port),
        (layout.host, layout.airflow_port),
        *[(v["address"], layout.app_port) for v in endpoints["regions"].values()],
    ]
    listening = []
    for host, port in targets:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                listening.append(f"{host}:{port}")
    assert listening == []
    assert not layout.credentials_file.exists()
