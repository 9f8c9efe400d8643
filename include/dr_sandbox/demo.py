"""`make demo`: the DR story that exists so far, told through the REST API on a fresh sandbox.

Today: a REST-triggered `dr_readiness_check` run (estate valid, primary DB available in AWS, backup
buckets ready, a toolbox pod takes a real consistent backup into S3) and what DNS answers. Later
issues grow it into the full story (backups, verification, failover, restore, drills).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from dr_sandbox.airflow_client import AirflowClient
from dr_sandbox.layout import SandboxLayout
from dr_sandbox.sandbox import down, resolve, up

DEMO_DAG = "dr_readiness_check"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _trial_backup(endpoints: dict[str, Any], creds: dict[str, Any], run_id: str) -> dict[str, Any]:
    import boto3

    from dr_automation.estate import load_estate

    estate = load_estate(endpoints["estate"])
    region = estate.primary_region
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoints["aws"]["endpoint_url"],
        region_name=region.name,
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
    )
    key = f"readiness/{run_id.replace(':', '_')}/primary.dump"
    head = s3.head_object(Bucket=region.backup_bucket, Key=key)
    stats = json.loads(s3.get_object(Bucket=region.backup_bucket, Key=f"{key}.stats.json")["Body"].read())
    return {
        "location": f"s3://{region.backup_bucket}/{key}",
        "size_bytes": head["ContentLength"],
        "encryption": head.get("ServerSideEncryption"),
        "sha256": (head.get("Metadata") or {}).get("sha256"),
        "tables": {t: v.get("rows") for t, v in (stats.get("tables") or {}).items()},
    }


def run_demo(layout: SandboxLayout) -> int:
    started = time.monotonic()
    _say("== DR sandbox demo ==")
    endpoints = up(layout)
    ok = False
    try:
        creds = json.loads(layout.credentials_file.read_text())
        client = AirflowClient(endpoints["airflow"]["url"], creds["username"], creds["password"])
        record = endpoints["record_name"]
        _say(f"DNS: {record} -> {resolve(layout, record)} (primary region app: {endpoints['regions']})")
        client.wait_for_dag(DEMO_DAG)
        client.unpause(DEMO_DAG)
        run_id = f"demo__{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
        t0 = time.monotonic()
        client.trigger(DEMO_DAG, run_id=run_id)
        _say(f"REST: POST /api/v2/dags/{DEMO_DAG}/dagRuns -> {run_id}")
        run = client.wait_for_run(DEMO_DAG, run_id, timeout=600)
        elapsed = time.monotonic() - t0
        tis = client.task_instances(DEMO_DAG, run_id)
        summary: dict[str, Any] = {
            "dag_id": DEMO_DAG,
            "run_id": run_id,
            "state": run["state"],
            "run_seconds": round(elapsed, 1),
            "tasks": {ti["task_id"]: {"state": ti["state"], "duration": ti.get("duration")} for ti in tis},
        }
        if run["state"] == "success":
            summary["trial_backup"] = _trial_backup(endpoints, creds, run_id)
        summary["dns_answer"] = {record: resolve(layout, record)}
        summary["simulated"] = endpoints["simulated"]
        summary["sandbox_start_seconds"] = endpoints["started_in_seconds"]
        summary["total_seconds"] = round(time.monotonic() - started, 1)
        (layout.state_dir / "demo-summary.json").write_text(json.dumps(summary, indent=2))
        _say(json.dumps(summary, indent=2))
        ok = run["state"] == "success"
        _say(f"== demo {'PASSED' if ok else 'FAILED'}: {DEMO_DAG} {run['state']} in {elapsed:.1f}s ==")
    finally:
        down(layout)
        _say("sandbox stopped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_demo(SandboxLayout()))
