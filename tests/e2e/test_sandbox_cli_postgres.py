"""`make up` / `make down` through the real CLI, with PostgreSQL metadata (one environment variable)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import httpx
import psycopg2
import pytest

from dr_sandbox.airflow_client import AirflowClient
from dr_sandbox.database import ADMIN_DSN
from dr_sandbox.layout import REPO_ROOT

pytestmark = pytest.mark.e2e


def _databases(prefix: str) -> set[str]:
    conn = psycopg2.connect(ADMIN_DSN)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
            return {r[0] for r in cur.fetchall()}
    finally:
        conn.close()


def _cli(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dr_sandbox", command],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_up_with_postgres_metadata_then_down_leaves_nothing(tmp_path):
    state = tmp_path / "sandbox"
    env = {
        **os.environ,
        "DR_SANDBOX_PORTS": "free",
        "DR_SANDBOX_STATE_DIR": str(state),
        "DR_SANDBOX_METADATA": "postgres",
        "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT / 'include'}",
    }
    try:
        up = _cli("up", env)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        endpoints = json.loads((state / "endpoints.json").read_text())
        creds = json.loads((state / "credentials.json").read_text())
        assert (state / "credentials.json").stat().st_mode & 0o777 == 0o600
        assert endpoints["airflow"]["url"] in up.stdout and creds["username"] in up.stdout
        layout = json.loads((state / "layout.json").read_text())
        db_name = layout["database_name"]
        assert {db_name, f"{db_name}_airflow"} <= _databases(db_name)

        # Airflow runs on PostgreSQL metadata: healthy, pools from airflow_settings.yaml, a real run
        client = AirflowClient(endpoints["airflow"]["url"], creds["username"], creds["password"])
        pools = {p["name"]: p["slots"] for p in client.request("GET", "/pools")["pools"]}
        assert pools["dr_traffic"] == 1 and pools["dr_backup"] == 4 and pools["dr_restore"] == 2
        config = httpx.get(f"{endpoints['airflow']['url']}/api/v2/monitor/health").json()
        assert config["metadatabase"]["status"] == "healthy"
        client.wait_for_dag("dr_readiness_check")
        client.unpause("dr_readiness_check")
        client.trigger("dr_readiness_check", run_id="cli_pg")
        run = client.wait_for_run("dr_readiness_check", "cli_pg", timeout=420)
        assert run["state"] == "success"
        # a second `up` while running is refused, and changes nothing
        again = _cli("up", env)
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        down = _cli("down", env)
    assert down.returncode == 0, down.stderr[-2000:]
    assert "airflow-scheduler" in down.stdout
    assert not _databases(db_name)
    for key in ("aws_port", "k8s_port", "airflow_port", "dns_status_port"):
        with socket.socket() as s:
            assert s.connect_ex((layout["host"], layout[key])) != 0, key
