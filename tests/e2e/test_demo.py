"""`make demo` end to end: the real CLI path, on free ports in a temporary state dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from dr_sandbox.layout import REPO_ROOT

pytestmark = pytest.mark.e2e


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
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "demo PASSED" in proc.stdout
    summary = json.loads((tmp_path / "sandbox" / "demo-summary.json").read_text())
    assert summary["state"] == "success"
    assert summary["trial_backup"]["size_bytes"] > 0
    assert summary["trial_backup"]["encryption"] == "aws:kms"
    assert summary["trial_backup"]["tables"]["invoices"] >= 5000
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
