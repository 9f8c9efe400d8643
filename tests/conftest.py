"""Shared test setup: an isolated, throwaway Airflow environment for every test tier.

Airflow reads its configuration once, when it is first imported, so the environment is set here at
conftest import time (before any test module can import airflow). Nothing touches ~/airflow or a
shared database: AIRFLOW_HOME is a fresh temp dir with a SQLite file that only exists once a test
asks for the ``airflow_db`` fixture (migrating costs seconds; most tests never need it).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "dags"
PLUGINS_FOLDER = REPO_ROOT / "plugins"
INCLUDE_FOLDER = REPO_ROOT / "include"

# Planted bad DAG files: parsed on purpose by the integrity suite's own tests, never collected.
collect_ignore = ["dags/fixtures"]

if "airflow" in sys.modules:  # pragma: no cover - a plugin imported airflow before us
    raise RuntimeError("airflow was imported before tests/conftest.py could isolate its configuration")

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="dr-airflow-home-"))
_TEST_ENV = {
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW_CONFIG": str(_AIRFLOW_HOME / "airflow.cfg"),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__PARALLELISM": "4",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(_AIRFLOW_HOME / "logs"),
}
os.environ.update(_TEST_ENV)
# Subprocesses started by tests (bench, Airflow CLI) must see the bundle's packages too.
_pythonpath = [str(PLUGINS_FOLDER), str(INCLUDE_FOLDER)]
if os.environ.get("PYTHONPATH"):
    _pythonpath.append(os.environ["PYTHONPATH"])
os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(_pythonpath))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the throwaway AIRFLOW_HOME (SQLite file, logs) when the session ends."""
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    return DAGS_FOLDER


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's isolated AIRFLOW_HOME (env already points at it)."""
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def airflow_env() -> dict[str, str]:
    """The Airflow env vars of this session, to pass on to subprocesses that run Airflow."""
    return {**_TEST_ENV, "PYTHONPATH": os.environ["PYTHONPATH"]}


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Iterator[str]:
    """A migrated SQLite metadata DB for tests that need one; built once per session, on demand."""
    from airflow.utils.db import resetdb

    resetdb()
    yield os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
