"""An invalid estate config is visible where operators look: `airflow dags list-import-errors`.

Runs the real dag-processor once against the real dags/ folder with a broken estate file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def test_every_dag_file_reports_the_estate_error_in_list_import_errors(tmp_path, airflow_env, dags_folder):
    from dr_automation.estate import DEFAULT_ESTATE_PATH

    doc = yaml.safe_load(DEFAULT_ESTATE_PATH.read_text())
    doc["tiers"]["tier1_realtime"]["rpo_minutes"] = "five"
    bad = tmp_path / "estate.yaml"
    bad.write_text(yaml.safe_dump(doc))
    home = tmp_path / "home"
    env = {
        **airflow_env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "DR_ESTATE_CONFIG": str(bad),
    }

    def airflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300)

    assert airflow("db", "migrate").returncode == 0
    assert airflow("dag-processor", "--num-runs", "1").returncode == 0
    listed = airflow("dags", "list-import-errors", "-o", "json")
    # the command exits 1 when there are import errors, so a deploy script can gate on it
    assert listed.returncode == 1, listed.stderr[-2000:]
    errors = json.loads(listed.stdout.strip().splitlines()[-1])  # warnings may precede the JSON
    dag_files = sorted(p.name for p in dags_folder.glob("*.py"))
    assert sorted(e["filepath"] for e in errors) == dag_files
    for e in errors:
        last_line = e["error"].strip().splitlines()[-1]
        assert "Invalid estate config" in last_line and str(bad) in last_line
        assert "tiers.tier1_realtime.rpo_minutes" in last_line
