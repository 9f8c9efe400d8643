"""Detection latency in the sandbox: outage start -> DNS answering the secondary, split into
detect / decide / switch, beside what the Route 53 data plane alone takes.

Starts its own sandbox on free ports (check interval 1 s, threshold 3, no cool-down), reconciles
DNS, then, in the same sandbox:

1. data plane alone (monitor paused): us-east-1 is switched down; time until DNS answers us-west-2
   through the failover records and health checks only;
2. automation: the monitor runs; us-east-1 starts answering 20 % of requests with 5xx under steady
   traffic (a failure its /health check rarely shows three times in a row, so the data plane does
   not move traffic by itself); time until DNS answers us-west-2, split into
   detect (outage start -> the third failed check), decide (-> regional_failover run queued) and
   switch (-> DNS answers the secondary). Target: under 10 s from the third failed check.

    .venv/bin/python bench/detection.py [--output FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_output import emit

TARGET_OVERHEAD_SECONDS = 10.0
MONITOR, FAILOVER = "region_health_monitor", "regional_failover"


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _wait_dns(layout: Any, record: str, address: str, timeout: float) -> float | None:
    """Wall-clock time (epoch s) when DNS first answers `address`; polled every 50 ms."""
    from dr_sandbox.sandbox import resolve

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a timeout or SERVFAIL is "not yet"
            if resolve(layout, record) == [address]:
                return time.time()
        time.sleep(0.05)
    return None


def _mode(endpoints: dict, region: str, mode: str, **extra: float) -> None:
    from dr_sandbox.regional_app import set_app_mode

    set_app_mode(endpoints["regions"][region]["url"], mode, **extra)


def _new_failover(client: Any, known: set[str], timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [r for r in client.runs(FAILOVER) if r["dag_run_id"] not in known]
        if new:
            return new[0]
        time.sleep(0.2)
    return None


def _monitor_watching(client: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in client.runs(MONITOR, limit=3):
            if r["state"] == "running":
                tis = {t["task_id"]: t["state"] for t in client.task_instances(MONITOR, r["dag_run_id"])}
                if tis.get("wait_for_unhealthy_primary") == "deferred":
                    return
        time.sleep(0.5)
    raise RuntimeError("region_health_monitor never reached its deferred wait")


def run() -> dict[str, Any]:
    from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate
    from dr_sandbox.airflow_client import AirflowClient
    from dr_sandbox.layout import SandboxLayout
    from dr_sandbox.load import traffic
    from dr_sandbox.sandbox import down, up

    base = load_estate(DEFAULT_ESTATE_PATH)
    layout = SandboxLayout.for_tests(Path(tempfile.mkdtemp(prefix="bench-detection-")), list(base.regions))
    endpoints = up(layout, estate_overrides={"health": {"failover_cooldown_minutes": 0}})
    try:
        estate = load_estate(endpoints["estate"])
        creds = json.loads(layout.credentials_file.read_text())
        client = AirflowClient(layout.airflow_url, creds["username"], creds["password"])
        for dag_id in ("dns_failover_setup", FAILOVER, MONITOR):
            client.wait_for_dag(dag_id)
        for dag_id in ("dns_failover_setup", FAILOVER):
            client.unpause(dag_id)
        client.trigger("dns_failover_setup", run_id="bench_setup")
        if client.wait_for_run("dns_failover_setup", "bench_setup", timeout=300)["state"] != "success":
            raise RuntimeError("dns_failover_setup failed")
        record = endpoints["record_name"]
        primary, secondary = (endpoints["regions"][r]["address"] for r in ("us-east-1", "us-west-2"))

        # 1. the data plane alone
        if _wait_dns(layout, record, primary, 30) is None:
            raise RuntimeError("DNS does not answer the primary after setup")
        t0 = time.time()
        _mode(endpoints, "us-east-1", "down")
        seen = _wait_dns(layout, record, secondary, 120)
        _mode(endpoints, "us-east-1", "healthy")
        data_plane = round(seen - t0, 3) if seen else None
        if _wait_dns(layout, record, primary, 60) is None:
            raise RuntimeError("DNS did not come back to the primary after the data-plane run")
        hc = estate.route53["health_check"]

        # 2. the automation
        client.unpause(MONITOR)
        _monitor_watching(client)
        time.sleep(3)  # a few healthy cycles on record
        known = {r["dag_run_id"] for r in client.runs(FAILOVER)}
        url = f"{endpoints['regions']['us-east-1']['url']}/api/whoami"
        with traffic(url) as load:
            t0 = time.time()
            _mode(endpoints, "us-east-1", "erroring", error_rate=0.2)
            answered = _wait_dns(layout, record, secondary, 180)
            failover = _new_failover(client, known, 5)
        _mode(endpoints, "us-east-1", "healthy")
        client.pause(MONITOR)
        if failover is None or answered is None:
            raise RuntimeError(f"no automatic failover (DNS answered secondary: {answered is not None})")
        done = client.wait_for_run(FAILOVER, failover["dag_run_id"], timeout=300)
        evidence = failover["conf"]["evidence"]
        detected = _ts(evidence["detected_at"])
        queued = _ts(failover["queued_at"])
        tis = {t["task_id"]: t for t in client.task_instances(FAILOVER, failover["dag_run_id"])}
        switch_start = _ts(tis["switch_dns"]["start_date"]) if tis["switch_dns"].get("start_date") else None
        # DNS on the secondary before switch_dns even started: the health checks moved it, not us
        moved_by_data_plane = switch_start is not None and answered < switch_start
        overhead = round(answered - detected, 3)
        return {
            "benchmark": "detection",
            "check_interval_seconds": estate.raw["health"]["check_interval_seconds"],
            "consecutive_failures": estate.raw["health"]["consecutive_failures"],
            "data_plane_only": {
                "failure": "us-east-1 down",
                "outage_to_dns_secondary_seconds": data_plane,
                "sandbox_health_check": "interval 1 s x threshold 3 (the sandbox's DNS stand-in)",
                "route53_as_configured_seconds_at_least": hc["request_interval_seconds"]
                * hc["failure_threshold"],
            },
            "automation": {
                "failure": "us-east-1 answers 20 % of requests with 5xx under traffic",
                "failover_run": failover["dag_run_id"],
                "failover_state": done["state"],
                "switch_mode": client.request(
                    "GET",
                    f"/dags/{FAILOVER}/dagRuns/{failover['dag_run_id']}/taskInstances/preflight/xcomEntries/return_value",
                )["value"]["mode"],
                "detect_seconds": round(detected - t0, 3),
                "decide_seconds": round(queued - detected, 3),
                "switch_seconds": round(answered - queued, 3),
                "outage_to_dns_secondary_seconds": round(answered - t0, 3),
                "overhead_after_third_failed_check_seconds": overhead,
                "dns_moved_by_data_plane_first": moved_by_data_plane,
                "traffic": {"sent": load.sent, "ok": load.ok, "statuses": load.statuses},
                # each failover task's start and end, in seconds after the run was queued
                "failover_steps": {
                    t: [round(_ts(ti["start_date"]) - queued, 2), round(_ts(ti["end_date"]) - queued, 2)]
                    for t, ti in sorted(tis.items(), key=lambda kv: kv[1].get("start_date") or "~")
                    if ti.get("start_date") and ti.get("end_date")
                },
            },
            "target_overhead_seconds": TARGET_OVERHEAD_SECONDS,
            "meets_target": overhead < TARGET_OVERHEAD_SECONDS and done["state"] == "success",
            "simulated": "Route 53's data plane is the sandbox DNS server; AWS is moto; regions are loopback apps",
        }
    finally:
        down(layout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    return emit(run, args.output)


if __name__ == "__main__":
    sys.exit(main())
