"""The heavy-import preload runs only in Airflow components that fork tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dr_automation.preload import PRELOAD_MODULES, forks_tasks, preload

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/venv/bin/airflow", "scheduler", "--skip-serve-logs"], True),
        (["/venv/bin/airflow", "dag-processor"], True),
        (["/venv/bin/airflow", "celery", "worker"], True),
        (["/venv/bin/airflow", "api-server"], False),
        (["/venv/bin/airflow", "dags", "list"], False),
        (["/venv/bin/pytest", "scheduler"], False),
        ([], False),
    ],
)
def test_only_forking_components_preload(argv: list[str], expected: bool) -> None:
    assert forks_tasks(argv) is expected


def test_local_settings_preload_boto3_in_a_scheduler_and_not_elsewhere() -> None:
    """Airflow imports airflow_local_settings from plugins/; check what a fresh process then holds."""
    probe = (
        "import sys; sys.argv = {argv!r}; sys.path.insert(0, {plugins!r}); "
        "import airflow_local_settings; print('boto3' in sys.modules)"
    )
    held = {}
    for name, argv in {
        "scheduler": ["/v/bin/airflow", "scheduler"],
        "cli": ["/v/bin/airflow", "version"],
    }.items():
        out = subprocess.run(
            [sys.executable, "-c", probe.format(argv=argv, plugins=str(PLUGINS))],
            capture_output=True,
            text=True,
            check=True,
        )
        held[name] = out.stdout.strip().splitlines()[-1]  # after any log lines
    assert held == {"scheduler": "True", "cli": "False"}


def test_preload_imports_every_module_it_names() -> None:
    assert preload(["/v/bin/airflow", "scheduler"]) == list(PRELOAD_MODULES)
    assert preload(["/v/bin/airflow", "version"]) == []
