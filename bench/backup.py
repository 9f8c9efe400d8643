"""Backup tier run time against estate size: tier 1 and tier 2 at 10, 100 and 500 systems.

Each size is a generated estate: the tier's own mix of system types repeated to N systems (tier 1:
database dump pods, RDS transaction-log evidence, Redis sessions, sealed secrets; tier 2: Kubernetes
export pods, CloudWatch metrics, S3 bucket copies), validated like any estate. Each tier DAG then runs
once for real under Airflow's ``dag.test()`` against the backup rig (dr_sandbox.backup_rig): the AWS
emulator, toolbox pods run by the Kubernetes stand-in (real pg_dump of a real PostgreSQL database),
the machine's Redis. The run must succeed with a complete manifest of N systems to count.

``dag.test()`` runs every task instance one after another in one process: the figures are a single
worker's, the slowest a deployment can be (it runs mapped instances side by side, up to the
``dr_backup`` pool's slots). Pod- and Python-run systems are mapped in batches (at most
``BATCH_SIZE`` systems per instance, backed up side by side), so the instances' own overhead stays
nearly flat while the systems' work grows with N. Prints one JSON document (progress on stderr).

    .venv/bin/python bench/backup.py [--sizes 10,100,500] [--tiers tier1_realtime,tier2_frequent]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench_output import emit

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "plugins"), str(REPO / "include"), str(REPO)]


def _log(message: str) -> None:
    print(f"[bench-backup] {message}", file=sys.stderr, flush=True)


def linear_fit(points: list[tuple[int, float]]) -> dict[str, float]:
    """Least squares seconds = fixed + per_system * N, and how well a line explains the points."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    intercept = my - slope * mx
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in points)
    total = sum((y - my) ** 2 for y in ys)
    return {
        "seconds_per_system": round(slope, 4),
        "fixed_seconds": round(intercept, 2),
        "r_squared": round(1 - residual / total, 4) if total else 1.0,
    }


def measure_one(tier: str, systems: int, airflow_env: dict[str, str]) -> dict[str, Any]:
    from dr_automation.backup.plan import BATCH_SIZE, backup_id, tier_plan
    from dr_sandbox.backup_rig import BackupRig, scale_tier
    from tests.backup_verify import read_manifests

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-backup-{tier}-{systems}-"))
    try:
        with BackupRig(
            workdir, airflow_env=airflow_env, edit=lambda doc: scale_tier(doc, tier, systems)
        ) as rig:
            dag_id = rig.estate.tiers[tier].dag_id
            _log(f"{dag_id}: {systems} systems, running")
            result = rig.run(dag_id, timeout=3600)
            plan = tier_plan(rig.estate, tier)
            manifest = read_manifests(
                lambda region: rig.aws("s3", region), plan, backup_id(result["run_id"])
            )[0]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    phases: dict[str, float] = defaultdict(float)
    for ti in result["tis"]:
        phases[ti["task_id"]] += ti["duration"] or 0.0
    mapped = sum(1 for ti in result["tis"] if ti["map_index"] >= 0)
    entry = {
        "tier": tier,
        "systems": systems,
        "state": result["state"],
        "run_seconds": round(result["seconds"], 2),
        "task_instances": len(result["tis"]),
        "mapped_instances": mapped,
        "batch_size": BATCH_SIZE,
        "seconds_per_system": round(result["seconds"] / systems, 3),
        "manifest": {
            "status": manifest["status"],
            "components": manifest["summary"]["components"],
            "succeeded": manifest["summary"]["succeeded"],
            "size_bytes": manifest["summary"]["size_bytes"],
        },
        "task_seconds": {k: round(v, 2) for k, v in sorted(phases.items(), key=lambda kv: -kv[1])},
    }
    _log(f"{dag_id}: {systems} systems -> {entry['state']} in {entry['run_seconds']} s")
    if result["state"] != "success" or manifest["status"] != "complete":
        raise RuntimeError(f"{dag_id} at {systems} systems did not complete: {manifest['summary']['failed']}")
    return entry


def run(sizes: list[int], tiers: list[str]) -> dict[str, Any]:
    from dr_sandbox import database
    from dr_sandbox.backup_rig import prepare_airflow_home

    home = Path(tempfile.mkdtemp(prefix="bench-backup-airflow-"))
    metadata = f"dr_sandbox_bench_airflow_{os.getpid()}"
    started = time.monotonic()
    try:
        airflow_env = prepare_airflow_home(home, metadata_database=metadata)
        results = [measure_one(tier, n, airflow_env) for tier in tiers for n in sizes]
    finally:
        shutil.rmtree(home, ignore_errors=True)
        database.drop(metadata)
    fits = {
        tier: linear_fit([(r["systems"], r["run_seconds"]) for r in results if r["tier"] == tier])
        for tier in tiers
    }
    report: dict[str, Any] = {
        "what": "one real run of each tier DAG per estate size; run_seconds = dag.test() from run start to run end",
        "how": (
            "dag.test() (one worker: every task instance in turn; PostgreSQL metadata) against the backup "
            "rig: AWS emulator, "
            "Kubernetes stand-in running toolbox pods as processes, real PostgreSQL, real Redis; estates "
            "generated by repeating the tier's own system mix; a run counts only with a complete manifest"
        ),
        "cpus": os.cpu_count(),
        "results": results,
        "linear_fit": fits,
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    tier1 = [r for r in results if r["tier"] == "tier1_realtime"]
    if tier1:
        largest = max(tier1, key=lambda r: r["systems"])
        report["tier1_target"] = {
            "systems": largest["systems"],
            "run_seconds": largest["run_seconds"],
            "rpo_seconds": 300,
            "share_of_rpo": round(largest["run_seconds"] / 300, 2),
            "within_rpo": largest["run_seconds"] < 300,
        }
    # Cost at most linear in N: the marginal cost per system between the two largest sizes is no more
    # than between the two smallest (batching makes it fall; a super-linear step would make it rise).
    growth = {
        tier: marginal_growth([(r["systems"], r["run_seconds"]) for r in results if r["tier"] == tier])
        for tier in tiers
    }
    report["marginal_cost_growth"] = growth
    target = report.get("tier1_target", {})
    report["meets_target"] = (
        target.get("share_of_rpo", 0) <= 0.5  # "well inside" the RPO: at most half of it
        and all(g["ratio"] <= 1.25 for g in growth.values())
    )
    return report


def marginal_growth(points: list[tuple[int, float]]) -> dict[str, float]:
    """Seconds per added system between the two smallest sizes and between the two largest."""
    pts = sorted(points)
    first = (pts[1][1] - pts[0][1]) / (pts[1][0] - pts[0][0])
    last = (pts[-1][1] - pts[-2][1]) / (pts[-1][0] - pts[-2][0])
    return {
        "smallest_seconds_per_system": round(first, 4),
        "largest_seconds_per_system": round(last, 4),
        "ratio": round(last / first, 2) if first > 0 else float("inf"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,500", help="estate sizes (systems per tier)")
    parser.add_argument("--tiers", default="tier1_realtime,tier2_frequent")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if len(sizes) < 2:
        parser.error("--sizes: at least two sizes are needed to show how cost grows")
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    return emit(lambda: run(sizes, tiers), args.output)


if __name__ == "__main__":
    sys.exit(main())
