"""The regional app stand-in: failure modes over real HTTP, control validation, DB checks, metrics."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from moto.server import ThreadedMotoServer

from dr_sandbox.regional_app import RegionalAppHandle, start_regional_app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
APP_HOST = "127.0.3.1"  # not the sandbox's region addresses, so a running sandbox is never hit


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def request(handle: RegionalAppHandle, method: str, path: str, body: Any = None, raw: bytes | None = None):
    conn = http.client.HTTPConnection(handle.host, handle.port, timeout=10)
    try:
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


@pytest.fixture
def app() -> Iterator[RegionalAppHandle]:
    handle = start_regional_app("us-east-1", APP_HOST, 0)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_healthy_endpoints_answer_with_region(app: RegionalAppHandle) -> None:
    status, body = request(app, "GET", "/health")
    assert status == 200
    assert body == {"status": "ok", "region": "us-east-1", "checks": {}}
    status, body = request(app, "GET", "/api/whoami")
    assert status == 200 and body["region"] == "us-east-1" and body["served_at"]
    status, body = request(app, "GET", "/api/tenants/count")
    assert status == 503 and "no database" in body["error"]
    assert request(app, "GET", "/nope")[0] == 404


def test_down_drops_connections_but_control_answers(app: RegionalAppHandle) -> None:
    assert request(app, "POST", "/_control", {"mode": "down"}) == (
        200,
        {"region": "us-east-1", "mode": "down", "latency_ms": 0.0, "error_rate": 0.0},
    )
    for path in ("/health", "/api/whoami"):
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
            request(app, "GET", path)
    status, body = request(app, "GET", "/_control")
    assert status == 200 and body["mode"] == "down"
    assert request(app, "POST", "/_control", {"mode": "healthy"})[0] == 200
    assert request(app, "GET", "/health")[0] == 200


def test_slow_adds_latency(app: RegionalAppHandle) -> None:
    started = time.monotonic()
    assert request(app, "GET", "/api/whoami")[0] == 200
    baseline = time.monotonic() - started
    assert request(app, "POST", "/_control", {"mode": "slow", "latency_ms": 400})[0] == 200
    started = time.monotonic()
    assert request(app, "GET", "/api/whoami")[0] == 200
    slow = time.monotonic() - started
    assert slow >= 0.4
    assert slow > baseline + 0.3


def test_erroring_returns_500_at_about_the_configured_share(app: RegionalAppHandle) -> None:
    assert request(app, "POST", "/_control", {"mode": "erroring", "error_rate": 0.3})[0] == 200
    conn = http.client.HTTPConnection(app.host, app.port, timeout=10)  # keep-alive: 300 fast requests
    statuses = []
    for _ in range(300):
        conn.request("GET", "/api/whoami")
        resp = conn.getresponse()
        resp.read()
        statuses.append(resp.status)
    conn.close()
    assert set(statuses) <= {200, 500}
    share = statuses.count(500) / len(statuses)
    assert 0.18 <= share <= 0.42, share  # binomial(300, 0.3): sd 0.026, bounds are > 4 sd away
    assert request(app, "POST", "/_control", {"mode": "erroring", "error_rate": 1})[0] == 200
    assert all(request(app, "GET", "/health")[0] == 500 for _ in range(10))
    assert request(app, "POST", "/_control", {"mode": "erroring", "error_rate": 0})[0] == 200
    assert all(request(app, "GET", "/health")[0] == 200 for _ in range(10))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "broken"}, "mode"),
        ({}, "mode"),
        ({"mode": "slow"}, "latency_ms"),
        ({"mode": "slow", "latency_ms": -5}, "latency_ms"),
        ({"mode": "slow", "latency_ms": True}, "latency_ms"),
        ({"mode": "slow", "latency_ms": "100"}, "latency_ms"),
        ({"mode": "erroring"}, "error_rate"),
        ({"mode": "erroring", "error_rate": 1.5}, "error_rate"),
        ({"mode": "healthy", "error_rate": 0.5}, "error_rate"),
        ({"mode": "healthy", "colour": "red"}, "colour"),
        (["healthy"], "body"),
    ],
)
def test_control_validation_names_the_field(app: RegionalAppHandle, body: Any, field: str) -> None:
    status, answer = request(app, "POST", "/_control", body)
    assert status == 400
    assert answer["field"] == field
    assert answer["error"].startswith(f"{field}:")
    assert request(app, "GET", "/_control")[1]["mode"] == "healthy"  # state unchanged


def test_control_rejects_invalid_json(app: RegionalAppHandle) -> None:
    status, answer = request(app, "POST", "/_control", raw=b"{not json")
    assert status == 400 and answer["field"] == "body"


def test_refuses_non_loopback_bind() -> None:
    with pytest.raises(ValueError, match="host: must be a loopback"):
        start_regional_app("us-east-1", "0.0.0.0", 0)


@pytest.fixture
def tenants_db() -> Iterator[str]:
    name = f"dr_app_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={name}"
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE tenants (id serial PRIMARY KEY, name text NOT NULL)")
        cur.execute("INSERT INTO tenants (name) VALUES ('acme'), ('globex'), ('initech')")
    conn.close()
    try:
        yield dsn
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_database_check_and_tenant_count(tenants_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DR_TEST_APP_DSN", tenants_db)
    with start_regional_app("us-west-2", APP_HOST, 0, dsn_env="DR_TEST_APP_DSN") as handle:
        status, body = request(handle, "GET", "/health")
        assert status == 200
        assert body["checks"] == {"database": "ok"}
        assert request(handle, "GET", "/api/tenants/count") == (
            200,
            {"region": "us-west-2", "table": "tenants", "count": 3},
        )
        conn = psycopg2.connect(tenants_db)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO tenants (name) VALUES ('umbrella')")
        conn.close()
        assert request(handle, "GET", "/api/tenants/count")[1]["count"] == 4


def test_database_failure_fails_health_without_leaking_the_dsn(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-" + uuid.uuid4().hex[:6]
    dsn = f"host=127.0.0.1 port=5432 user=postgres password={secret} dbname=dr_missing_{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.DEBUG, logger="dr_sandbox.regional_app")
    with start_regional_app("eu-west-1", APP_HOST, 0, dsn=dsn) as handle:
        status, body = request(handle, "GET", "/health")
        assert status == 503
        assert body["status"] == "failed" and body["checks"] == {"database": "failed"}
        status, count = request(handle, "GET", "/api/tenants/count")
        assert status == 503
    assert "does not exist" in body["error"]
    assert secret not in json.dumps(body) + json.dumps(count)
    assert secret not in caplog.text


def test_missing_dsn_env_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DR_TEST_UNSET_DSN", raising=False)
    with pytest.raises(ValueError, match="dsn_env: environment variable DR_TEST_UNSET_DSN is not set"):
        start_regional_app("us-east-1", APP_HOST, 0, dsn_env="DR_TEST_UNSET_DSN")


def _metric_sum(cw: Any, name: str, region: str, stat: str = "Sum") -> float | None:
    now = time.time()
    points = cw.get_metric_statistics(
        Namespace="LeanVibe/API",
        MetricName=name,
        Dimensions=[{"Name": "Region", "Value": region}],
        StartTime=now - 600,
        EndTime=now + 60,
        Period=60,
        Statistics=[stat],
    )["Datapoints"]
    return (
        sum(p[stat] for p in points)
        if points and stat == "Sum"
        else (max(p[stat] for p in points) if points else None)
    )


def test_metrics_are_published_to_cloudwatch(moto_endpoint: str) -> None:
    region = "us-east-1"
    cw = boto3.client(
        "cloudwatch",
        endpoint_url=moto_endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with start_regional_app(
        region, APP_HOST, 0, cloudwatch_endpoint=moto_endpoint, publish_interval=0.5
    ) as handle:
        for _ in range(12):
            assert request(handle, "GET", "/api/whoami")[0] == 200
        request(handle, "POST", "/_control", {"mode": "erroring", "error_rate": 1})
        for _ in range(4):
            assert request(handle, "GET", "/api/whoami")[0] == 500
        request(handle, "POST", "/_control", {"mode": "healthy"})
        deadline = time.monotonic() + 10
        names: set[str] = set()
        while time.monotonic() < deadline:
            metrics = cw.list_metrics(
                Namespace="LeanVibe/API", Dimensions=[{"Name": "Region", "Value": region}]
            )
            names = {m["MetricName"] for m in metrics["Metrics"]}
            total = _metric_sum(cw, "RequestCount", region) or 0
            if names >= {"RequestCount", "ErrorRate", "Latency", "Availability"} and total >= 16:
                break
            time.sleep(0.3)
        assert names >= {"RequestCount", "ErrorRate", "Latency", "Availability"}
        # every request counted; a PutMetricData retried after a timeout under load may count a
        # datapoint twice (CloudWatch metrics are at-least-once), never lose one
        assert 16 <= _metric_sum(cw, "RequestCount", region) <= 17
        assert _metric_sum(cw, "ErrorRate", region, "Maximum") > 0
        assert 0 <= _metric_sum(cw, "Availability", region, "Minimum") <= 1
        assert request(handle, "GET", "/_control")[1]["metrics"]["published"] >= 1


def test_availability_reflects_time_spent_down(app: RegionalAppHandle) -> None:
    app.publish_now()  # start a fresh window
    app.set_mode("down")
    time.sleep(0.3)
    window = app.publish_now()
    assert window["Availability"] < 0.05
    app.set_mode("healthy")
    assert request(app, "GET", "/api/whoami")[0] == 200
    time.sleep(0.1)
    window = app.publish_now()
    assert window["Availability"] > 0.99 and window["RequestCount"] == 1 and window["ErrorRate"] == 0.0


def test_publishing_failures_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.WARNING, logger="dr_sandbox.regional_app")
    with start_regional_app(
        "us-east-1", APP_HOST, 0, cloudwatch_endpoint=dead, publish_interval=0.2
    ) as handle:
        deadline = time.monotonic() + 8
        while (
            time.monotonic() < deadline and request(handle, "GET", "/_control")[1]["metrics"]["failures"] < 2
        ):
            time.sleep(0.2)
        metrics = request(handle, "GET", "/_control")[1]["metrics"]
        assert metrics["failures"] >= 2 and metrics["published"] == 0
        assert request(handle, "GET", "/health")[0] == 200
    assert "publishing metrics failed" in caplog.text


def test_cli_serves_until_terminated() -> None:
    port = free_port(APP_HOST)
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dr_sandbox.regional_app",
            "--region",
            "eu-west-1",
            "--host",
            APP_HOST,
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "ready" in line, proc.stderr.read() if proc.poll() is not None else line
        conn = http.client.HTTPConnection(APP_HOST, port, timeout=5)
        conn.request("GET", "/api/whoami")
        assert json.loads(conn.getresponse().read())["region"] == "eu-west-1"
        conn.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_cli_rejects_bad_host() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "include")}
    proc = subprocess.run(
        [sys.executable, "-m", "dr_sandbox.regional_app", "--region", "x", "--host", "10.0.0.1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "host: must be a loopback" in proc.stderr
