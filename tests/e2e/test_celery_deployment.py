"""The bundle unchanged on a distributed Airflow: CeleryExecutor, two workers, PostgreSQL metadata.

The sandbox started with DR_SANDBOX_EXECUTOR=celery (Redis broker on this machine, a queue and key
prefix of its own, result backend and metadata in a PostgreSQL database it creates). A backup tier's
scheduled run and a regional failover must give the same outcomes as on the LocalExecutor sandbox
(tests/e2e/test_backup_tier_runs.py, test_regional_failover.py), with the work spread over both
workers; `down` leaves no database and no broker key behind.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import httpx
import psycopg2
import pytest

from dr_automation.backup.plan import backup_id, tier_plan
from dr_automation.estate import load_estate
from dr_sandbox import airflow_runtime, sessions
from dr_sandbox.database import ADMIN_DSN
from tests.backup_verify import TIER_DAGS, read_manifests, verify_manifest
from tests.e2e.conftest import running_sandbox
from tests.e2e.failover_helpers import address, answer, aws_client, regions_state, xcom
from tests.e2e.failover_helpers import run as run_dag
from tests.e2e.test_backup_tier_runs import finished_run

pytestmark = pytest.mark.e2e

FAILOVER_CONF = {
    "target_region": "us-west-2",
    "reason": "drill on the Celery deployment: us-east-1 down",
    "requested_by": "sre-oncall",
    "incident_level": 3,
    "mode": "record_swap",
    "dry_run": False,
}
_WORKLOAD = re.compile(r"Executing workload in Celery: .*?log_path='dag_id=([^/]+)/")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv(airflow_runtime.EXECUTOR_ENV, "celery")
        env.setenv(airflow_runtime.CELERY_WORKERS_ENV, "2")
        env.setenv(airflow_runtime.CELERY_BROKER_ENV, "redis")
        dags = ("dns_failover_setup", "regional_failover")
        with running_sandbox(tmp_path_factory, "celery", dags) as handles:
            yield handles
        layout = handles[0]
        left = _leftovers(layout)
    assert left == {"databases": [], "broker_keys": 0}, left


def _leftovers(layout) -> dict:
    conn = psycopg2.connect(ADMIN_DSN)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (layout.database_name + "%",)
            )
            databases = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    keys = list(sessions.client().scan_iter(match=f"{layout.database_name}:*", count=1000))
    return {"databases": databases, "broker_keys": len(keys)}


def _work_per_worker(layout) -> dict[str, Counter]:
    """Which DAGs' task instances each Celery worker executed, from the workers' own logs."""
    return {
        log.stem: Counter(_WORKLOAD.findall(log.read_text(errors="replace")))
        for log in sorted(layout.logs_dir.glob("airflow-celery-worker-*.log"))
    }


def test_the_sandbox_runs_celery_with_two_workers_on_postgres_metadata(sandbox: tuple) -> None:
    layout, endpoints, _, _ = sandbox
    health = httpx.get(f"{endpoints['airflow']['url']}/api/v2/monitor/health").json()
    assert health["metadatabase"]["status"] == "healthy" and health["scheduler"]["status"] == "healthy"
    assert airflow_runtime.metadata_url(layout).startswith("postgresql+psycopg2://")
    assert len(_work_per_worker(layout)) == 2


def test_a_backup_tier_runs_on_both_workers_and_its_manifest_checks_out(sandbox: tuple) -> None:
    layout, endpoints, creds, client = sandbox
    dag_id = TIER_DAGS["tier1_realtime"]
    client.wait_for_dag(dag_id)
    client.unpause(dag_id)
    run = finished_run(client, dag_id, timeout=420)
    client.pause(dag_id)
    tis = client.task_instances(dag_id, run["dag_run_id"])
    assert run["state"] == "success", {t["task_id"]: t["state"] for t in tis}
    assert {t["queue"] for t in tis if t["state"] == "success"} == {airflow_runtime.celery_queue(layout)}
    estate = load_estate(endpoints["estate"])
    plan = tier_plan(estate, "tier1_realtime")
    s3_for = lambda region: aws_client(layout, creds, "s3", region)  # noqa: E731
    manifests = read_manifests(s3_for, plan, backup_id(run["dag_run_id"]))
    assert manifests[0]["status"] == "complete" and all(m == manifests[0] for m in manifests)
    assert verify_manifest(s3_for, manifests[0]) >= len(plan.systems) * len(plan.locations)
    per_worker = _work_per_worker(layout)
    assert all(counts[dag_id] > 0 for counts in per_worker.values()), per_worker


def test_a_failover_moves_dns_and_readies_the_target_as_on_the_local_executor(sandbox: tuple) -> None:
    layout, endpoints, creds, client = sandbox
    run, tis = run_dag(client, "dns_failover_setup", {}, "celery_setup")
    assert run["state"] == "success", {t: v["state"] for t, v in tis.items()}
    assert answer(layout, endpoints) == [address(endpoints, "us-east-1")]
    run, tis = run_dag(client, "regional_failover", FAILOVER_CONF, "celery_failover")
    assert run["state"] == "success", {t: v["state"] for t, v in tis.items()}
    target = address(endpoints, "us-west-2")
    assert answer(layout, endpoints) == [target]
    assert httpx.get(f"http://{target}:{layout.app_port}/api/whoami").json()["region"] == "us-west-2"
    recorded = xcom(client, "regional_failover", "celery_failover", "record_failover")
    assert recorded["outcome"] == "success"
    regions = regions_state(layout, creds, endpoints)
    assert (regions["us-west-2"]["writes"], regions["us-east-1"]["writes"]) == ("forward", "fixed-response")
    assert regions["us-west-2"]["capacity"]["DesiredCapacity"] == 6
