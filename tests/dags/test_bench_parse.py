"""bench/parse.py end to end on the planted fixtures: one JSON document, network at parse counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_bench_parse_reports_per_file_figures_and_remote_calls(tmp_path: Path) -> None:
    output = tmp_path / "parse.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT / "include")]),
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "parse.py"),
            "--runs",
            "2",
            "--dags-folder",
            str(FIXTURES),
            "--output",
            str(output),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # the whole stdout is ONE JSON document
    assert json.loads(output.read_text()) == report

    assert report["runs"] == 2
    assert report["targets"] == {"bundle_total_s": 1.0, "per_file_s": 0.1, "remote_calls": 0}
    assert set(report["meets_targets"]) == set(report["targets"])
    assert all(isinstance(v, bool) for v in report["meets_targets"].values())

    files = {f["file"]: f for f in report["files"]}
    expected_files = sorted(p.name for p in FIXTURES.glob("*.py") if p.name != "planted_estate.py")
    assert sorted(files) == expected_files
    for entry in files.values():
        assert len(entry["warm_runs_s"]) == 2
        assert all(t > 0 for t in entry["warm_runs_s"])
        assert entry["cold_s"] > 0
        assert min(entry["warm_runs_s"]) <= entry["warm_median_s"] <= max(entry["warm_runs_s"])

    assert files["good_dag.py"]["dag_count"] == 1 and files["good_dag.py"]["remote_calls"] == 0
    assert files["good_multi_dag.py"]["dag_ids"] == ["good_multi_dag_tier1", "good_multi_dag_tier2"]
    assert files["bad_import_error.py"]["dag_count"] == 0
    assert "No module named 'dr_automation.no_such_module'" in files["bad_import_error.py"]["import_error"]
    for name in ("bad_network_socket.py", "bad_network_urllib.py"):
        assert files[name]["remote_calls"] == 1, files[name]
        [detail] = files[name]["remote_call_details"]
        assert detail["target"] == "127.0.0.1:9" and name in detail["where"]

    totals = report["totals"]
    assert totals["remote_calls"] == 2
    assert report["meets_targets"]["remote_calls"] is False
    assert totals["files"] == len(expected_files)
    assert totals["warm_total_s"] == round(sum(f["warm_median_s"] for f in files.values()), 6)
    assert report["meets_targets"]["bundle_total_s"] == (totals["warm_total_s"] <= 1.0)
