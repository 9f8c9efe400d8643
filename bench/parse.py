"""DAG parse benchmark: how long the dag processor spends on each file of the bundle.

The dag processor re-executes every DAG file every ``min_file_process_interval`` (30 s): parse cost
is paid forever, on every file, so it is measured here per file:

* ``cold_s``: the file's first parse in this process (its imports not yet loaded; the first file
  also pays the shared imports such as the Amazon provider). Airflow itself is imported beforehand
  and reported separately as ``airflow_import_s``.
* ``warm_median_s``: median of ``--runs`` re-parses once every module is imported, each through
  ``DagBag.process_file`` (a fresh module name per run, the way the dag processor executes it).
* ``remote_calls``: network attempts during one parse (sockets are patched to record and refuse).

Prints ONE JSON document to stdout (Airflow's and the DAG files' own output goes to stderr).
Usage: PYTHONPATH=plugins:include .venv/bin/python bench/parse.py [--runs N] [--dags-folder PATH]
[--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS: dict[str, float] = {"bundle_total_s": 1.0, "per_file_s": 0.1, "remote_calls": 0}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="warm parses per file (median reported)")
    parser.add_argument("--dags-folder", type=Path, default=REPO_ROOT / "dags", help="folder of DAG files")
    parser.add_argument("--output", type=Path, help="also write the JSON document to this file")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if not args.dags_folder.is_dir():
        parser.error(f"--dags-folder {args.dags_folder} is not a directory")
    return args


def _isolate_airflow(home: Path, dags_folder: Path) -> None:
    """Point Airflow at a throwaway home before it is imported (it reads config at import time)."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        }
    )
    for entry in (REPO_ROOT / "plugins", REPO_ROOT / "include", REPO_ROOT):
        if str(entry) not in sys.path:
            sys.path.insert(0, str(entry))


def _error_summary(text: str | None) -> str | None:
    """The exception line of an import error (the traceback is noise in a benchmark report)."""
    if not text:
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def measure(dags_folder: Path, runs: int) -> dict[str, Any]:
    """Parse every DAG file once cold and ``runs`` times warm; return the report document."""
    start = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.integrity import RemoteCallRecorder, list_dag_files, record_remote_calls

    airflow_import_s = time.perf_counter() - start

    folder = str(dags_folder.resolve())
    files = list_dag_files(folder)
    bag = DagBag(dag_folder=folder, collect_dags=False)
    cold: dict[str, float] = {}
    warm: dict[str, list[float]] = {path: [] for path in files}
    dag_ids: dict[str, list[str]] = {}
    recorder = RemoteCallRecorder()
    calls_first_parse: dict[str, list[Any]] = {}

    with record_remote_calls(recorder):
        for path in files:
            recorder.current_file = path
            before = len(recorder.calls)
            t0 = time.perf_counter()
            bag.process_file(path, only_if_updated=False, safe_mode=True)
            cold[path] = time.perf_counter() - t0
            calls_first_parse[path] = recorder.calls[before:]
        for _ in range(runs):
            for path in files:
                recorder.current_file = path
                t0 = time.perf_counter()
                found = bag.process_file(path, only_if_updated=False, safe_mode=True)
                warm[path].append(time.perf_counter() - t0)
                dag_ids[path] = sorted(dag.dag_id for dag in found)

    per_file = []
    for path in files:
        calls = calls_first_parse[path]
        per_file.append(
            {
                "file": os.path.relpath(path, folder),
                "dag_count": len(dag_ids[path]),
                "dag_ids": dag_ids[path],
                "cold_s": round(cold[path], 6),
                "warm_median_s": round(statistics.median(warm[path]), 6),
                "warm_runs_s": [round(t, 6) for t in warm[path]],
                "remote_calls": len(calls),
                "remote_call_details": [{"api": c.api, "target": c.target, "where": c.where} for c in calls],
                "import_error": _error_summary(bag.import_errors.get(path)),
            }
        )

    warm_total = sum(f["warm_median_s"] for f in per_file)
    slowest = max((f["warm_median_s"] for f in per_file), default=0.0)
    remote_total = sum(f["remote_calls"] for f in per_file)
    return {
        "dags_folder": folder,
        "runs": runs,
        "python": platform.python_version(),
        "airflow_version": _airflow_version(),
        "airflow_import_s": round(airflow_import_s, 6),
        "files": per_file,
        "totals": {
            "files": len(per_file),
            "dags": sum(f["dag_count"] for f in per_file),
            "import_errors": sum(1 for f in per_file if f["import_error"]),
            "cold_total_s": round(sum(f["cold_s"] for f in per_file), 6),
            "warm_total_s": round(warm_total, 6),
            "slowest_file_warm_s": round(slowest, 6),
            "remote_calls": remote_total,
        },
        "targets": dict(TARGETS),
        "meets_targets": {
            "bundle_total_s": warm_total <= TARGETS["bundle_total_s"],
            "per_file_s": slowest <= TARGETS["per_file_s"],
            "remote_calls": remote_total <= TARGETS["remote_calls"],
        },
    }


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="dr-bench-airflow-home-"))
    _isolate_airflow(home, args.dags_folder.resolve())
    # Airflow logs, and DAG files may print, to fd 1: send all of it to stderr so stdout carries
    # exactly one JSON document.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        report = measure(args.dags_folder, args.runs)
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
        shutil.rmtree(home, ignore_errors=True)
    document = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(document + "\n")
    print(document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
