"""Failover latency in the sandbox: REST trigger -> DNS answering the target, and per-step timings.

Starts its own sandbox on free ports (a running `make up` is untouched), reconciles DNS once, then
fails over back and forth `--runs` times in `health_check` mode, polling the sandbox's DNS server
every 50 ms from the moment the REST POST returns. Prints one JSON document.

    .venv/bin/python bench/failover.py [--runs 3] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_output import emit

TARGET_SECONDS = 10.0


def _ti_seconds(ti: dict[str, Any]) -> float | None:
    return round(float(ti["duration"]), 3) if ti.get("duration") is not None else None


def run(runs: int) -> dict[str, Any]:
    from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate
    from dr_sandbox.airflow_client import AirflowClient
    from dr_sandbox.layout import SandboxLayout
    from dr_sandbox.sandbox import down, resolve, up

    regions = list(load_estate(DEFAULT_ESTATE_PATH).regions)
    layout = SandboxLayout.for_tests(Path(tempfile.mkdtemp(prefix="bench-failover-")), regions)
    t0 = time.monotonic()
    endpoints = up(layout)
    started = time.monotonic() - t0
    try:
        creds = json.loads(layout.credentials_file.read_text())
        client = AirflowClient(layout.airflow_url, creds["username"], creds["password"])
        for dag_id in ("dns_failover_setup", "regional_failover"):
            client.wait_for_dag(dag_id)
            client.unpause(dag_id)
        client.trigger("dns_failover_setup", run_id="bench_setup")
        setup = client.wait_for_run("dns_failover_setup", "bench_setup", timeout=300)
        if setup["state"] != "success":
            raise RuntimeError(f"dns_failover_setup {setup['state']}")
        record = endpoints["record_name"]
        samples = []
        for i in range(runs):
            target = "us-west-2" if i % 2 == 0 else "us-east-1"
            address = endpoints["regions"][target]["address"]
            conf = {
                "target_region": target,
                "reason": f"benchmark failover {i} to {target}",
                "requested_by": "region_health_monitor",
                "incident_level": 3,
                "mode": "health_check",
                "dry_run": False,
            }
            run_id = f"bench_{i}"
            t_post = time.monotonic()
            client.trigger("regional_failover", conf, run_id=run_id)
            t_posted = time.monotonic()
            dns_seconds = None
            while time.monotonic() - t_post < 180:
                try:
                    if resolve(layout, record) == [address]:
                        dns_seconds = time.monotonic() - t_post
                        break
                except Exception:  # a timeout is just "not yet"
                    pass
                time.sleep(0.05)
            result = client.wait_for_run("regional_failover", run_id, timeout=300)
            run_seconds = time.monotonic() - t_post
            tis = {ti["task_id"]: ti for ti in client.task_instances("regional_failover", run_id)}
            switch_start = tis.get("switch_dns", {}).get("start_date")
            samples.append(
                {
                    "target": target,
                    "state": result["state"],
                    "rest_post_seconds": round(t_posted - t_post, 3),
                    "trigger_to_dns_answer_seconds": round(dns_seconds, 3) if dns_seconds else None,
                    "trigger_to_run_done_seconds": round(run_seconds, 3),
                    "switch_started_at": switch_start,
                    "steps": {t: {"state": ti["state"], "seconds": _ti_seconds(ti)} for t, ti in tis.items()},
                }
            )
        dns = [s["trigger_to_dns_answer_seconds"] for s in samples if s["trigger_to_dns_answer_seconds"]]
        return {
            "benchmark": "failover",
            "runs": runs,
            "sandbox_start_seconds": round(started, 1),
            "dns_health_interval_seconds": endpoints["health_check_interval_seconds"],
            "trigger_to_dns_answer_seconds": {
                "median": round(statistics.median(dns), 3) if dns else None,
                "max": round(max(dns), 3) if dns else None,
                "min": round(min(dns), 3) if dns else None,
            },
            "target_seconds": TARGET_SECONDS,
            "meets_target": bool(dns) and len(dns) == runs and max(dns) < TARGET_SECONDS,
            "samples": samples,
        }
    finally:
        down(layout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 20:
        parser.error("--runs: must be between 1 and 20")
    return emit(lambda: run(args.runs), args.output)


if __name__ == "__main__":
    sys.exit(main())
