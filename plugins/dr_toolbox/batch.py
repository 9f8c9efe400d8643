"""``dr-toolbox batch``: several toolbox commands in one pod, side by side.

A pod costs seconds of scheduling, image and container start; one system's dump or export a fraction
of that. A batch runs each job (a full toolbox command line, its own ``--result-out`` included) as its
own process, at most ``--parallel`` at a time, so one job's crash or bad argument touches none of its
siblings. Every job runs whatever the others do; the batch fails (exit 1) when any job failed, and its
result names each job with its exit code and error.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dr_toolbox.errors import UsageError
from dr_toolbox.redact import redact

log = logging.getLogger("dr_toolbox")

MAX_PARALLEL = 32


def parse_jobs(values: list[str] | None) -> list[list[str]]:
    """Each --job is a JSON list of strings: a toolbox command line (not another batch)."""
    from dr_toolbox.cli import COMMANDS

    jobs = []
    for index, value in enumerate(values or []):
        try:
            argv = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UsageError("--job", f"job {index} is not JSON ({exc.msg})") from None
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise UsageError("--job", f"job {index} must be a non-empty JSON list of strings")
        allowed = [c for c in COMMANDS if c != "batch"]
        if next((a for a in argv if a in COMMANDS), None) not in allowed:
            raise UsageError("--job", f"job {index} must run one of {', '.join(allowed)}")
        jobs.append(argv)
    if not jobs:
        raise UsageError("--job", "at least one job is needed")
    return jobs


def _job_name(argv: list[str]) -> str:
    """The job's result file name (the system it backs up), else its command."""
    if "--result-out" in argv and argv.index("--result-out") + 1 < len(argv):
        return argv[argv.index("--result-out") + 1].rsplit("/", 1)[-1].removesuffix(".json")
    return next(a for a in argv if not a.startswith("-"))


def _run(argv: list[str]) -> dict[str, Any]:
    name = _job_name(argv)
    proc = subprocess.run(
        [sys.executable, "-m", "dr_toolbox", *argv], capture_output=True, text=True, check=False
    )
    for line in proc.stderr.splitlines():  # the job's progress, already redacted by the job
        sys.stderr.write(f"[{name}] {line}\n")
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        result = {}
    out = {"job": name, "exit_code": proc.returncode, "ok": proc.returncode == 0}
    if proc.returncode != 0:
        out["error"] = redact(str(result.get("error") or f"exited {proc.returncode} without a result"))
    return out


def batch(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    if not 1 <= args.parallel <= MAX_PARALLEL:
        raise UsageError("--parallel", f"must be between 1 and {MAX_PARALLEL} (got {args.parallel})")
    jobs = parse_jobs(args.job)
    with ThreadPoolExecutor(max_workers=min(args.parallel, len(jobs))) as pool:
        results = list(pool.map(_run, jobs))
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        log.error("job %s failed (exit %s): %s", r["job"], r["exit_code"], r["error"])
    log.info("batch: %d of %d jobs succeeded", len(results) - len(failed), len(results))
    summary: dict[str, Any] = {"jobs": results, "failed": [r["job"] for r in failed]}
    if failed:
        summary["error"] = f"{len(failed)} of {len(results)} jobs failed: " + ", ".join(summary["failed"])
    return summary, 1 if failed else 0
