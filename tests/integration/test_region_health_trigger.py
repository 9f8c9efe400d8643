"""RegionHealthTrigger.run() against real stand-ins: three regional apps on loopback, the moto-based
AWS emulator (CloudWatch metrics the apps publish; Route 53 for the sensor), and a scratch
PostgreSQL database (the region's database check and the dr_region_health history).

Short interval (0.3 s) and a 0.5 s response-time threshold keep each scenario to a few seconds; the
rules are the estate's (3 consecutive failures, healthy at 0.8, error rate 5 %, availability 95 %).
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg2
import pytest
import yaml

from dr_automation.health import ALL_REGIONS_DOWN, FAILOVER_NEEDED, ROTATE
from dr_automation.health.history import TABLE, HealthHistory
from dr_automation.triggers.region_health import RegionHealthTrigger
from dr_sandbox.aws_emulator import start_emulator
from dr_sandbox.regional_app import RegionalAppHandle, start_regional_app
from tests.integration.scratch import scratch_database

pytestmark = pytest.mark.integration

AWS_CONN = "aws_health_test"
AUDIT_CONN = "dr_health_audit_test"
PRIMARY_DB_CONN = "dr_health_primary_test"
# Not the sandbox's region addresses (127.0.N.1) nor test_regional_app's 127.0.3.1.
HOSTS = {"us-east-1": "127.0.4.1", "us-west-2": "127.0.4.2", "eu-west-1": "127.0.4.3"}
ROLES = {"us-east-1": "primary", "us-west-2": "secondary", "eu-west-1": "dr"}
PRIMARY = "us-east-1"
INTERVAL = 0.3
THRESHOLDS = {"error_rate": 0.05, "response_time_seconds": 0.5, "availability": 0.95}
PUBLISH_SECONDS = 0.25


# -- stand-ins ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch_db() -> Iterator[str]:
    with scratch_database("dr_test_health") as name:
        yield name


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    handle = start_emulator()
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def connections(scratch_db: str, emulator: Any) -> Iterator[dict[str, str]]:
    """Airflow connections (env vars, as the sandbox provides them) for AWS, history and database."""
    mp = pytest.MonkeyPatch()
    pg = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "schema": scratch_db,
    }
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    mp.setenv(
        f"AIRFLOW_CONN_{AWS_CONN.upper()}",
        json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": emulator.endpoint_url, "region_name": "us-east-1"}}
        ),
    )
    mp.setenv(f"AIRFLOW_CONN_{AUDIT_CONN.upper()}", json.dumps(pg))
    mp.setenv(f"AIRFLOW_CONN_{PRIMARY_DB_CONN.upper()}", json.dumps(pg))
    yield {"dsn": f"host=127.0.0.1 port=5432 user=postgres dbname={scratch_db}"}
    mp.undo()


@pytest.fixture
def apps(connections: dict[str, str], emulator: Any) -> Iterator[dict[str, RegionalAppHandle]]:
    """Three healthy regional apps publishing to their own region's CloudWatch every 0.25 s."""
    httpx.post(f"{emulator.endpoint_url}/moto-api/reset")  # metrics of earlier tests must not count
    handles = {
        region: start_regional_app(
            region,
            host,
            0,
            cloudwatch_endpoint=emulator.endpoint_url,
            publish_interval=PUBLISH_SECONDS,
            seed=7,
        )
        for region, host in HOSTS.items()
    }
    try:
        yield handles
    finally:
        for handle in handles.values():
            handle.stop()


def trigger_kwargs(apps: dict[str, RegionalAppHandle], **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "monitor_id": f"test/{secrets.token_hex(4)}/wait",
        "serving_region": PRIMARY,
        "regions": {
            region: {
                "role": ROLES[region],
                "url": f"{handle.url}/health",
                "database_conn_id": PRIMARY_DB_CONN if region == PRIMARY else None,
            }
            for region, handle in apps.items()
        },
        "thresholds": dict(THRESHOLDS),
        "check_interval": INTERVAL,
        "consecutive_failures": 3,
        "healthy_score": 0.8,
        "metrics_namespace": "LeanVibe/API",
        "metrics_period_seconds": PUBLISH_SECONDS,
        "aws_conn_id": AWS_CONN,
        "history_conn_id": AUDIT_CONN,
    }
    kwargs.update(overrides)
    return kwargs


def roundtrip(trigger: RegionHealthTrigger) -> RegionHealthTrigger:
    """What the triggerer does: serialize, store as JSON, rebuild from the class path."""
    classpath, kwargs = trigger.serialize()
    kwargs = json.loads(json.dumps(kwargs))
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    return rebuilt


async def first_event(trigger: RegionHealthTrigger, timeout: float) -> dict[str, Any] | None:
    """The trigger's first event, or None if it has not fired within `timeout` (then it is cancelled)."""

    async def consume() -> dict[str, Any] | None:
        async for event in trigger.run():
            return event.payload
        return None

    try:
        return await asyncio.wait_for(consume(), timeout)
    except TimeoutError:
        return None


def history_rows(dsn: str, monitor_id: str) -> list[dict[str, Any]]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT cycle, region, serving, score, healthy, consecutive_failures, checks, state "
            f"FROM {TABLE} WHERE monitor_id = %s ORDER BY cycle, region",
            (monitor_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def primary_rows(dsn: str, monitor_id: str) -> list[dict[str, Any]]:
    return [r for r in history_rows(dsn, monitor_id) if r["region"] == PRIMARY]


async def wait_for_primary_cycles(dsn: str, monitor_id: str, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(await asyncio.to_thread(primary_rows, dsn, monitor_id)) >= count:
                return
        except psycopg2.errors.UndefinedTable:
            pass  # the monitor creates its table with its first cycle
        await asyncio.sleep(0.02)
    raise AssertionError(f"the monitor did not record {count} cycles within {timeout}s")


def checks_by_name(cycle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in cycle["checks"]}


class Load:
    """Customer traffic on one app (real requests), so its published ErrorRate means something."""

    def __init__(self, handle: RegionalAppHandle, per_second: float = 60.0) -> None:
        self._url = f"{handle.url}/api/whoami"
        self._pause = 1.0 / per_second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                try:
                    client.get(self._url)
                except httpx.HTTPError:
                    pass
                self._stop.wait(self._pause)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# -- scenarios ---------------------------------------------------------------------------------
def test_primary_down_fires_after_exactly_three_cycles_with_evidence(apps, connections) -> None:
    apps[PRIMARY].set_mode("down")
    trigger = roundtrip(RegionHealthTrigger(**trigger_kwargs(apps)))
    started = time.monotonic()
    event = asyncio.run(first_event(trigger, timeout=20))
    elapsed = time.monotonic() - started

    assert event is not None, "the trigger never fired"
    assert event["kind"] == FAILOVER_NEEDED
    assert event["cycle"] == 3
    assert elapsed >= 2 * INTERVAL  # three cycles, an interval apart
    assert event["serving_region"] == PRIMARY
    assert event["healthy_regions"] == ["eu-west-1", "us-west-2"]
    assert event["unhealthy_regions"] == [PRIMARY]
    primary = event["regions"][PRIMARY]
    assert primary["consecutive_failures"] == 3 and primary["healthy"] is False
    assert [c["cycle"] for c in primary["cycles"]] == [1, 2, 3]
    for cycle in primary["cycles"]:
        checks = checks_by_name(cycle)
        assert set(checks) == {"api", "database", "infrastructure"}
        assert checks["api"]["status"] == "failed" and checks["api"]["value"]["status_code"] is None
        assert checks["database"]["status"] == "passed"  # the database is fine: the app is down
        assert cycle["score"] < 0.8 and cycle["healthy"] is False
    for region in ("us-west-2", "eu-west-1"):
        other = event["regions"][region]
        assert other["healthy"] is True and other["consecutive_failures"] == 0 and other["score"] == 1.0
        last = checks_by_name(other["cycles"][-1])
        assert last["api"]["status"] == "passed"
        assert last["database"]["status"] == "not_configured"
    json.dumps(event)  # the payload travels through the metadata database

    rows = history_rows(connections["dsn"], trigger.monitor_id)
    assert [(r["cycle"], r["region"]) for r in rows] == [(c, r) for c in (1, 2, 3) for r in sorted(HOSTS)]
    assert [r["consecutive_failures"] for r in rows if r["region"] == PRIMARY] == [1, 2, 3]
    assert all(r["serving"] == (r["region"] == PRIMARY) for r in rows)


def test_two_failures_then_recovery_never_fires(apps, connections) -> None:
    apps[PRIMARY].set_mode("down")
    # A longer interval than the other cases: the switch back must land between cycles 2 and 3
    # even on a loaded machine.
    trigger = roundtrip(RegionHealthTrigger(**trigger_kwargs(apps, check_interval=1.0)))

    async def scenario() -> dict[str, Any] | None:
        task = asyncio.ensure_future(first_event(trigger, timeout=12.0))
        await wait_for_primary_cycles(connections["dsn"], trigger.monitor_id, 2)
        apps[PRIMARY].set_mode("healthy")
        # Recovered: the primary must be healthy again and stay that way for many cycles.
        return await asyncio.wait_for(task, timeout=60)

    event = asyncio.run(scenario())
    assert event is None, f"fired after a recovery: {event and event['kind']}"
    counts = [r["consecutive_failures"] for r in primary_rows(connections["dsn"], trigger.monitor_id)]
    assert counts[:3] == [1, 2, 0], counts  # one success resets the count
    assert max(counts) == 2 and len(counts) >= 8
    assert all(c == 0 for c in counts[2:]), counts  # lagging metrics did not count as failures


def test_slow_primary_fires(apps, connections) -> None:
    apps[PRIMARY].set_mode("slow", latency_ms=900)  # threshold 0.5 s
    trigger = roundtrip(RegionHealthTrigger(**trigger_kwargs(apps)))
    event = asyncio.run(first_event(trigger, timeout=30))
    assert event is not None and event["kind"] == FAILOVER_NEEDED
    assert event["cycle"] == 3
    for cycle in event["regions"][PRIMARY]["cycles"]:
        api = checks_by_name(cycle)["api"]
        assert api["status"] == "failed"
        assert api["value"]["latency_seconds"] > THRESHOLDS["response_time_seconds"]


def test_erroring_primary_fires_on_its_cloudwatch_error_rate(apps, connections) -> None:
    apps[PRIMARY].set_mode("erroring", error_rate=0.3)
    with Load(apps[PRIMARY]):
        time.sleep(3 * PUBLISH_SECONDS)  # customers have been seeing errors for a few metric periods
        trigger = roundtrip(RegionHealthTrigger(**trigger_kwargs(apps)))
        event = asyncio.run(first_event(trigger, timeout=30))
    assert event is not None and event["kind"] == FAILOVER_NEEDED
    assert event["cycle"] == 3
    for cycle in event["regions"][PRIMARY]["cycles"]:
        infra = checks_by_name(cycle)["infrastructure"]
        assert infra["status"] == "failed", infra
        assert infra["value"]["error_rate"] > THRESHOLDS["error_rate"]
        assert "error_rate" in infra["detail"]
    # The healthy regions' metrics came from their own CloudWatch and passed.
    west = checks_by_name(event["regions"]["us-west-2"]["cycles"][-1])["infrastructure"]
    assert west["status"] == "passed" and west["value"]["availability"] >= 0.95


def test_every_region_down_fires_all_regions_down(apps, connections) -> None:
    for handle in apps.values():
        handle.set_mode("down")
    trigger = roundtrip(RegionHealthTrigger(**trigger_kwargs(apps)))
    event = asyncio.run(first_event(trigger, timeout=20))
    assert event is not None and event["kind"] == ALL_REGIONS_DOWN
    assert event["cycle"] == 3
    assert event["healthy_regions"] == []
    assert event["unhealthy_regions"] == sorted(HOSTS)


async def die_after_cycles(trigger: RegionHealthTrigger, dsn: str, cycles: int) -> None:
    """Run the trigger until its serving region has `cycles` cycles on record, then kill it (as a
    triggerer dying between two cycles would)."""
    task = asyncio.ensure_future(first_event(trigger, timeout=30))
    await wait_for_primary_cycles(dsn, trigger.monitor_id, cycles)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_restart_continues_the_count_and_fires_on_the_next_failed_cycle(apps, connections) -> None:
    apps[PRIMARY].set_mode("down")
    kwargs = trigger_kwargs(apps)
    first = roundtrip(RegionHealthTrigger(**kwargs))

    asyncio.run(die_after_cycles(first, connections["dsn"], 2))  # the triggerer dies between cycles 2 and 3
    assert [r["consecutive_failures"] for r in primary_rows(connections["dsn"], first.monitor_id)] == [1, 2]

    # Another triggerer picks the trigger up from its serialized kwargs (same monitor run).
    _, stored = first.serialize()
    second = roundtrip(RegionHealthTrigger(**json.loads(json.dumps(stored))))
    started = time.monotonic()
    event = asyncio.run(first_event(second, timeout=20))
    assert event is not None and event["kind"] == FAILOVER_NEEDED
    assert event["cycle"] == 3  # not cycle 5: the restart neither lost its place nor started over
    assert time.monotonic() - started < 3 * INTERVAL + 2
    assert [c["cycle"] for c in event["regions"][PRIMARY]["cycles"]] == [1, 2, 3]  # evidence reloaded
    assert [r["consecutive_failures"] for r in primary_rows(connections["dsn"], first.monitor_id)] == [
        1,
        2,
        3,
    ]


def test_restart_after_recovery_resets_instead_of_firing(apps, connections) -> None:
    apps[PRIMARY].set_mode("down")
    kwargs = trigger_kwargs(apps)
    first = roundtrip(RegionHealthTrigger(**kwargs))

    asyncio.run(die_after_cycles(first, connections["dsn"], 2))  # the triggerer dies between cycles 2 and 3
    apps[PRIMARY].set_mode("healthy")
    second = roundtrip(RegionHealthTrigger(**kwargs))
    assert asyncio.run(first_event(second, timeout=8 * INTERVAL)) is None
    counts = [r["consecutive_failures"] for r in primary_rows(connections["dsn"], first.monitor_id)]
    assert counts[:3] == [1, 2, 0]


def test_history_refuses_a_cycle_twice_and_reloads_state(connections) -> None:
    history = HealthHistory(AUDIT_CONN)
    monitor_id = f"test/{secrets.token_hex(4)}/dup"
    row = {
        "region": PRIMARY,
        "role": "primary",
        "serving": True,
        "score": 0.5,
        "healthy": False,
        "consecutive_failures": 1,
        "checks": [{"name": "api", "status": "failed", "detail": "password=hunter2 leaked by a driver"}],
        "state": {"consecutive_failures": 1, "api_unreachable": True},
    }
    try:
        from datetime import UTC, datetime

        assert history.record_cycle(monitor_id, 1, datetime.now(UTC), [row]) == 1
        assert history.record_cycle(monitor_id, 1, datetime.now(UTC), [row]) == 0  # a second instance
        snap = history.load(monitor_id, cycles=3)
        assert snap is not None and snap["cycle"] == 1
        assert snap["regions"][PRIMARY]["state"]["consecutive_failures"] == 1
        assert "hunter2" not in json.dumps(snap)  # details are redacted before they are stored
        assert [r["score"] for r in history.scores(region=PRIMARY, monitor_id=monitor_id)] == [0.5]
        assert history.load("test/never/ran", cycles=3) is None
    finally:
        history.close()


# -- the sensor and the decision, on an estate pointed at the stand-ins -------------------------
@pytest.fixture
def monitored_estate(apps, connections, emulator, tmp_path: Path) -> Path:
    """The bundled estate with regions moved onto the test apps and connections onto the stand-ins;
    Route 53 set up by the bundle's own operators (health checks + failover records)."""
    from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate
    from dr_automation.operators.route53 import (
        Route53EnsureFailoverRoutingOperator,
        Route53EnsureHealthChecksOperator,
    )

    doc = copy.deepcopy(yaml.safe_load(DEFAULT_ESTATE_PATH.read_text()))
    for region, handle in apps.items():
        doc["regions"][region]["endpoint"] = {
            "address": handle.host,
            "hostname": doc["regions"][region]["endpoint"]["hostname"],
            "port": handle.port,
            "protocol": "HTTP",
        }
    doc["route53"]["health_check"]["type"] = "HTTP"
    doc["connections"].update(aws=AWS_CONN, audit_database=AUDIT_CONN, primary_database=PRIMARY_DB_CONN)
    doc["health"].update(check_interval_seconds=1, failover_cooldown_minutes=30)
    doc["health"]["thresholds"]["response_time_seconds"] = 0.5
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    estate = load_estate(path)  # validates
    boto3.client("route53", endpoint_url=emulator.endpoint_url, region_name="us-east-1").create_hosted_zone(
        Name=estate.route53["hosted_zone"], CallerReference=secrets.token_hex(8)
    )
    for op in (Route53EnsureHealthChecksOperator, Route53EnsureFailoverRoutingOperator):
        op(task_id="setup", estate_path=str(path), aws_conn_id=AWS_CONN).execute({"ti": _TI()})
    return path


class _TI:
    """The slice of the task SDK's RuntimeTaskInstance the sensor and the decision use."""

    def __init__(self, running_failovers: int = 0) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index = "region_health_monitor", "r1", "wait", -1
        self.running_failovers = running_failovers
        self.asked: list[dict[str, Any]] = []

    def get_dr_count(self, dag_id: str, states: list[str] | None = None, **_: Any) -> int:
        self.asked.append({"dag_id": dag_id, "states": states})
        return self.running_failovers

    def xcom_push(self, key: str, value: object) -> None:
        pass


def test_sensor_defers_then_decision_triggers_a_valid_failover(monitored_estate, apps, connections) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    from dr_automation.audit import AuditLog
    from dr_automation.estate import load_estate
    from dr_automation.failover import CONF_KEYS, FailoverRefused, authorize, failover_params
    from dr_automation.health.decision import NOTHING_TO_DO, TRIGGER_FAILOVER, run_decision
    from dr_automation.operators.route53 import SWITCH_EVENT
    from dr_automation.sensors.region_health import RegionHealthSensor

    estate = load_estate(monitored_estate)
    apps[PRIMARY].set_mode("down")
    sensor = RegionHealthSensor(
        task_id="wait", estate_path=str(monitored_estate), monitor_id=f"test/{secrets.token_hex(4)}/sensor"
    )
    context: dict[str, Any] = {"ti": _TI(), "run_id": "r1"}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)  # one cycle here (fails), then defers
    trigger = deferred.value.trigger
    assert isinstance(trigger, RegionHealthTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert trigger.serving_region == PRIMARY and trigger.routing["mode"] == "failover"
    assert trigger.initial_state["cycle"] == 1  # the sensor's own check is handed over
    assert trigger.regions[PRIMARY]["database_conn_id"] == PRIMARY_DB_CONN
    assert trigger.regions["us-west-2"]["database_conn_id"] is None

    event = asyncio.run(first_event(roundtrip(trigger), timeout=20))
    assert event is not None and event["cycle"] == 3  # sensor cycle 1 + trigger cycles 2 and 3
    result = sensor.execute_complete(context, event)
    assert result["kind"] == FAILOVER_NEEDED

    decision = run_decision(estate, result, context)
    assert decision["action"] == TRIGGER_FAILOVER, decision
    assert context["ti"].asked == [{"dag_id": "regional_failover", "states": ["queued", "running"]}]
    assert decision["target_region"] == "us-west-2"
    assert decision["incident"]["level"] == 3
    assert decision["impact"]["if_down_for_rto"]["total"] > 0
    conf = decision["conf"]
    assert conf["requested_by"] == "region_health_monitor" and conf["mode"] == "record_swap"
    assert PRIMARY in conf["reason"] and len(conf["reason"]) <= 500
    assert set(conf) <= CONF_KEYS | {"evidence"}
    # regional_failover's Params (what TriggerDagRunOperator validates) and its authorize() accept it.
    params = {name: p.resolve(conf.get(name, p.value)) for name, p in failover_params(estate).items()}
    accepted_conf = {k: v for k, v in conf.items() if k in CONF_KEYS}
    assert authorize(estate, accepted_conf, params)["needs_approval"] is False
    if "evidence" not in CONF_KEYS:
        assert "evidence" not in conf
        with pytest.raises(FailoverRefused, match="evidence"):
            authorize(estate, {**conf, "evidence": {}}, params)

    # A traffic switch that just succeeded puts the monitor in its cool-down.
    AuditLog(AUDIT_CONN).record(SWITCH_EVENT, status="succeeded", detail={"target": "us-west-2"})
    again = run_decision(estate, result, {"ti": _TI(), "run_id": "r2"})
    assert again["action"] == NOTHING_TO_DO and "cool-down" in again["why"]
    decisions = AuditLog(AUDIT_CONN).events(event_type="health.decision")
    assert [d["status"] for d in decisions[-2:]] == ["failover_requested", "skipped"]


def test_sensor_raises_when_the_monitor_breaks() -> None:
    from airflow.providers.common.compat.sdk import AirflowException

    from dr_automation.sensors.region_health import RegionHealthSensor

    sensor = RegionHealthSensor(task_id="wait", monitor_id="x")
    with pytest.raises(AirflowException, match="history exploded"):
        sensor.execute_complete({}, {"kind": "error", "message": "history exploded"})
    with pytest.raises(AirflowException, match="no event"):
        sensor.execute_complete({}, None)


DAG_TEST_SCRIPT = """
import json
import sys

from airflow.dag_processing.dagbag import DagBag
from airflow.models import DagRun
from airflow.utils.session import create_session

bag = DagBag(dag_folder=sys.argv[1])
run = bag.dags["region_health_monitor"].test()
print("RUN_STATE", run.state, run.run_id)
with create_session() as session:
    for failover in session.query(DagRun).filter(DagRun.dag_id == "regional_failover"):
        print("FAILOVER_RUN", json.dumps({"run_id": failover.run_id, "conf": failover.conf}))
"""


def test_dag_run_decides_and_triggers_regional_failover(
    monitored_estate, apps, connections, airflow_env, airflow_db, repo_root, tmp_path
) -> None:
    """The whole DAG under dag.test() (the sensor's trigger runs inline): sensor -> decide_and_act
    (a TriggerDagRunOperator), which creates the regional_failover run with the decided conf."""
    import subprocess
    import sys

    apps[PRIMARY].set_mode("down")
    doc = yaml.safe_load(monitored_estate.read_text())
    doc["health"]["failover_cooldown_minutes"] = 0  # other tests of this module switched traffic
    estate_path = tmp_path / "estate-no-cooldown.yaml"
    estate_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    script = tmp_path / "run_monitor.py"
    script.write_text(DAG_TEST_SCRIPT)
    env = {
        **os.environ,
        **airflow_env,
        "DR_ESTATE_CONFIG": str(estate_path),
        "AIRFLOW__API__BASE_URL": "http://127.0.0.1:18082",
    }
    proc = subprocess.run(
        [sys.executable, str(script), str(repo_root / "dags")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert "RUN_STATE success" in proc.stdout, output[-4000:]
    monitor_run = proc.stdout.split("RUN_STATE success ", 1)[1].split()[0]
    failovers = [
        json.loads(line.split(" ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("FAILOVER_RUN ")
    ]
    mine = [f for f in failovers if f["run_id"] == f"region_health_monitor__{monitor_run}"]
    decided = [line for line in output.splitlines() if "decision: " in line]
    assert len(mine) == 1, (failovers, decided)  # exactly one failover run, named after the monitor run
    conf = mine[0]["conf"]
    assert conf["target_region"] == "us-west-2" and conf["requested_by"] == "region_health_monitor"
    assert conf["incident_level"] == 3 and conf["mode"] == "record_swap" and conf["dry_run"] is False
    assert "us-east-1 failed 3 consecutive health checks" in conf["reason"]
    rows = history_rows(connections["dsn"], f"region_health_monitor/{monitor_run}/wait_for_unhealthy_primary")
    assert [r["consecutive_failures"] for r in rows if r["region"] == PRIMARY] == [1, 2, 3]


def test_a_run_watching_a_region_that_no_longer_serves_rotates(
    monitored_estate, apps, connections, monkeypatch
) -> None:
    """After a failback or a manual failover the run must not keep watching the old region."""
    monkeypatch.setenv("DR_ESTATE_CONFIG", str(monitored_estate))
    # Route 53 says us-east-1 serves; this run was started when us-west-2 did.
    trigger = roundtrip(RegionHealthTrigger(**trigger_kwargs(apps, serving_region="us-west-2")))
    event = asyncio.run(first_event(trigger, timeout=15))
    assert event is not None and event["kind"] == ROTATE, event
    assert event["cycle"] == 1
