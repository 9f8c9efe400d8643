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
import time
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
# Test sandboxes keep Airflow's metadata in PostgreSQL, as a real deployment does: several sandboxes
# side by side on two cores hold SQLite's one write lock long enough to kill a scheduler, or to time
# out the execution API's calls (seen on the demo's sandbox). The sandboxes of one run (every xdist
# worker: the controller is their parent) start from one migrated database instead of migrating each
# time.
os.environ.setdefault("DR_SANDBOX_METADATA", "postgres")
# No test asserts scheduler latency: a 1 s idle loop instead of the sandbox's 0.2 s saves about 5 % of
# a core per sandbox (bench/detection measures the latency with the sandbox's own setting).
os.environ.setdefault("DR_SANDBOX_SCHEDULER_IDLE_SLEEP", "1")
_RUN_OWNER = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
_METADATA_CACHE = f"run{_RUN_OWNER}"
os.environ["DR_SANDBOX_METADATA_CACHE"] = _METADATA_CACHE
# Subprocesses started by tests (bench, Airflow CLI) must see the bundle's packages too.
_pythonpath = [str(PLUGINS_FOLDER), str(INCLUDE_FOLDER)]
if os.environ.get("PYTHONPATH"):
    _pythonpath.append(os.environ["PYTHONPATH"])
os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(_pythonpath))


# The suite's budget on a clean clone of this machine kind (2 cores), `make test` end to end.
SUITE_BUDGET_MINUTES = 30

# `make test` runs modules side by side (pytest-xdist, --dist loadfile, no reordering), each module
# whole on one worker, handed out in collection order to whichever worker is free. The longest
# modules go first so that none of them starts last and holds the run up alone; after them every
# e2e module, then integration, then the quick tiers, which fill the gaps. Measured by the slowest-
# tests list `make test` prints; a module missing here still runs, only later.
LONGEST_FIRST = (
    "tests/e2e/test_demo.py",
    "tests/e2e/test_quarterly_drill_run.py",
    "tests/integration/test_verify_backups.py",
    "tests/e2e/test_backup_tier_runs.py",
    "tests/e2e/test_drill_regions.py",
    "tests/e2e/test_region_health_monitor.py",
    "tests/e2e/test_failover_approval_and_failback.py",
    "tests/integration/test_backup_tiers.py",
)
TIER_ORDER = ("tests/e2e/", "tests/integration/", "tests/dags/", "tests/unit/")


def _schedule_key(item: pytest.Item) -> tuple[int, int]:
    path = item.nodeid.split("::", 1)[0]
    if path in LONGEST_FIRST:
        return (0, LONGEST_FIRST.index(path))
    tier = next((i for i, prefix in enumerate(TIER_ORDER) if path.startswith(prefix)), len(TIER_ORDER))
    return (1 + tier, 0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest modules first (a stable sort: the order inside a module is kept)."""
    items.sort(key=_schedule_key)


_SESSION_STARTED = time.monotonic()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After the slowest-tests list: the run's time against the suite's budget."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    minutes = (time.monotonic() - _SESSION_STARTED) / 60
    verdict = "within" if minutes <= SUITE_BUDGET_MINUTES else "OVER"
    terminalreporter.write_line(
        f"suite time {minutes:.1f} min: {verdict} the {SUITE_BUDGET_MINUTES}-minute budget (README, Tests)"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the throwaway AIRFLOW_HOME (SQLite file, logs) when the session ends, and (the run's
    controller) the metadata cache its sandboxes shared."""
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        from dr_sandbox.airflow_runtime import drop_metadata_cache

        drop_metadata_cache(_METADATA_CACHE)


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
