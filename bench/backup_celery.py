"""Tier 1 at 500 systems on the Celery deployment, with one worker and with two, side by side.

For each worker count, starts the sandbox with DR_SANDBOX_EXECUTOR=celery (PostgreSQL metadata, the
machine's Redis as broker, N workers on loopback, each running 2 tasks at a time), its tier 1
generated to `--systems` systems (the tier's own mix repeated, as bench/backup.py does), unpauses
backup_tier1_realtime and times its scheduled run from start to end under the real scheduler. The
run counts only with a complete manifest of every system. Prints one JSON document.

    .venv/bin/python bench/backup_celery.py [--systems 500] [--workers 1,2] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_output import emit

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "include"), str(REPO)]
TIER = "tier1_realtime"


def _log(message: str) -> None:
    print(f"[bench-backup-celery] {message}", file=sys.stderr, flush=True)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def measure(systems: int, workers: int) -> dict[str, Any]:
    from dr_automation.backup.plan import backup_id, tier_plan
    from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate
    from dr_sandbox import airflow_runtime
    from dr_sandbox.airflow_client import AirflowClient
    from dr_sandbox.backup_rig import scale_tier
    from dr_sandbox.layout import SandboxLayout
    from dr_sandbox.sandbox import down, up
    from tests.backup_verify import read_manifests

    base = load_estate(DEFAULT_ESTATE_PATH)
    scaled = scale_tier(
        {
            "tiers": {
                TIER: {
                    "systems": json.loads(json.dumps(list(base.raw["tiers"][TIER]["systems"]), default=dict))
                }
            }
        },
        TIER,
        systems,
    )
    saved = {k: os.environ.get(k) for k in (airflow_runtime.EXECUTOR_ENV, airflow_runtime.CELERY_WORKERS_ENV)}
    os.environ[airflow_runtime.EXECUTOR_ENV] = "celery"
    os.environ[airflow_runtime.CELERY_WORKERS_ENV] = str(workers)
    layout = SandboxLayout.for_tests(
        Path(tempfile.mkdtemp(prefix=f"bench-celery-{workers}w-")), list(base.regions)
    )
    try:
        endpoints = up(layout, estate_overrides=scaled)
        estate = load_estate(endpoints["estate"])
        dag_id = estate.tiers[TIER].dag_id
        creds = json.loads(layout.credentials_file.read_text())
        client = AirflowClient(layout.airflow_url, creds["username"], creds["password"])
        client.wait_for_dag(dag_id)
        _log(f"{workers} worker(s): {dag_id} with {systems} systems")
        client.unpause(dag_id)
        run = _first_finished(client, dag_id, timeout=1800)
        client.pause(dag_id)
        tis = client.task_instances(dag_id, run["dag_run_id"])
        s3_for = lambda region: _s3(layout, creds, region)  # noqa: E731
        manifest = read_manifests(s3_for, tier_plan(estate, TIER), backup_id(run["dag_run_id"]))[0]
        seconds = _ts(run["end_date"]) - _ts(run["start_date"])
        entry = {
            "workers": workers,
            "worker_concurrency": 2,
            "systems": systems,
            "state": run["state"],
            "run_seconds": round(seconds, 2),
            "share_of_rpo": round(seconds / (estate.tiers[TIER].rpo_minutes * 60), 2),
            "task_instances": len(tis),
            "manifest": {"status": manifest["status"], "components": manifest["summary"]["components"]},
        }
        _log(f"{workers} worker(s): {entry['state']} in {entry['run_seconds']} s")
        if run["state"] != "success" or manifest["status"] != "complete":
            raise RuntimeError(f"{dag_id} with {workers} worker(s) did not complete: {manifest['summary']}")
        return entry
    finally:
        down(layout)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _s3(layout: Any, creds: dict, region: str) -> Any:
    from tests.e2e.failover_helpers import aws_client

    return aws_client(layout, creds, "s3", region)


def _first_finished(client: Any, dag_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [r for r in client.runs(dag_id) if r["state"] in ("success", "failed")]
        if done:
            return done[0]
        time.sleep(2)
    raise TimeoutError(f"{dag_id}: no finished run after {timeout:.0f} s")


def run(systems: int, workers: list[int]) -> dict[str, Any]:
    results = [measure(systems, n) for n in workers]
    by_workers = {r["workers"]: r["run_seconds"] for r in results}
    report: dict[str, Any] = {
        "benchmark": "backup_celery",
        "what": f"one scheduled run of backup_tier1_realtime with {systems} systems per worker count",
        "how": (
            "sandbox with the CeleryExecutor (PostgreSQL metadata and results, Redis broker), real "
            "scheduler and workers; AWS is the emulator, pods run by the Kubernetes stand-in, real "
            "PostgreSQL dumps; run_seconds = the DAG run's start to end"
        ),
        "cpus": os.cpu_count(),
        "results": results,
    }
    if 1 in by_workers and 2 in by_workers:
        report["speedup_two_workers"] = round(by_workers[1] / by_workers[2], 2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=500)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if args.systems < 1:
        parser.error("--systems: must be at least 1")
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--workers: {args.workers!r} is not a list of worker counts")
    return emit(lambda: run(args.systems, workers), args.output)


if __name__ == "__main__":
    sys.exit(main())
