"""`make demo` end to end: the real CLI path, on free ports in a temporary state dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from dr_sandbox.layout import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3000)]


def test_demo_runs_the_story_through_rest_and_stops_everything(tmp_path):
    env = {
        **os.environ,
        "DR_SANDBOX_PORTS": "free",
        "DR_SANDBOX_STATE_DIR": str(tmp_path / "sandbox"),
        "PYTHONPATH": f"{REPO_ROOT / 'plugins'}:{REPO_ROOT / 'include'}",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "dr_sandbox", "demo"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=2700,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "demo PASSED" in proc.stdout
    summary = json.loads((tmp_path / "sandbox" / "demo-summary.json").read_text())
    assert summary["state"] == "success"
    chapters = summary["chapters"]
    assert list(chapters) == ["readiness", "backups", "regional_outage", "quarterly_drill"]
    backups = chapters["backups"]
    assert all(t["state"] == "success" for t in backups["tiers"].values()) and len(backups["tiers"]) == 4
    assert len(backups["verified"]) == 4, backups["verified"]
    outage = chapters["regional_outage"]
    assert outage["served_by_during_outage"] == "us-west-2"
    assert outage["served_by_after_failback"] == "us-east-1"
    drill = chapters["quarterly_drill"]
    assert drill["readiness"] == "HIGH" and drill["success_rate"] == 1.0, drill["scenarios"]
    for name, scenario in drill["scenarios"].items():
        assert scenario["passed"] and scenario["rto_seconds"] > 0, name
    assert drill["object_lock_mode"] == "COMPLIANCE"
    page = (tmp_path / "sandbox" / "drill-report.html").read_text()
    assert "<svg" in page and drill["drill_id"] in page
    assert "drill report (HTML):" in proc.stdout and "readiness HIGH" in proc.stdout
    assert set(summary["simulated"]) >= {"aws", "kubernetes", "route53_data_plane"}
    # nothing keeps listening: every port the demo used is free again
    layout = json.loads((tmp_path / "sandbox" / "layout.json").read_text())
    for key in ("aws_port", "k8s_port", "airflow_port", "dns_status_port"):
        with socket.socket() as s:
            assert s.connect_ex((layout["host"], layout[key])) != 0, key
    for host in layout["region_hosts"].values():
        with socket.socket() as s:
            assert s.connect_ex((host, layout["app_port"])) != 0, host
    assert not (tmp_path / "sandbox" / "pids.json").exists()
    assert not (tmp_path / "sandbox" / "credentials.json").exists()
