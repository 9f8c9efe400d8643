"""`make demo`: the whole DR story on a fresh sandbox, told through Airflow's REST API.

1. readiness: ``dr_readiness_check`` (estate valid, AWS ready, a toolbox pod takes a trial backup);
2. backups: the four tiers, each run by REST; their asset events start ``verify_backups``;
3. verification: every asset-triggered verification passes (verified RPO per tier);
4. a regional outage: ``region_health_monitor`` watches, the primary region's app goes down, the monitor
   triggers ``regional_failover`` by itself and DNS answers the secondary; then the primary recovers
   and ``regional_failback`` moves traffic back;
5. the quarterly drill: ``dr_test_quarterly`` runs the five scenarios; the report's summary is printed
   and its HTML page saved beside the summary (its Object Lock location is printed too).
Everything it starts binds to loopback and is stopped at the end, whatever happened.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dr_sandbox.airflow_client import AirflowClient
from dr_sandbox.layout import SandboxLayout
from dr_sandbox.sandbox import down, resolve, up

TIERS = ("backup_tier1_realtime", "backup_tier2_frequent", "backup_tier3_daily", "backup_tier4_archival")
MONITOR, FAILOVER, FAILBACK = "region_health_monitor", "regional_failover", "regional_failback"
QUARTERLY = "dr_test_quarterly"
SCENARIO_DAGS = tuple(
    f"dr_test_{s}"
    for s in (
        "database_failure",
        "region_outage",
        "complete_disaster",
        "data_corruption",
        "security_incident",
    )
)


class DemoError(RuntimeError):
    pass


def _say(msg: str) -> None:
    print(msg, flush=True)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


class Story:
    """The demo's state: the sandbox, the REST client and what each chapter found."""

    def __init__(self, layout: SandboxLayout, endpoints: dict[str, Any]) -> None:
        from dr_automation.estate import load_estate

        self.layout = layout
        self.endpoints = endpoints
        self.creds = json.loads(layout.credentials_file.read_text())
        self.client = AirflowClient(
            endpoints["airflow"]["url"], self.creds["username"], self.creds["password"]
        )
        self.estate = load_estate(endpoints["estate"])
        self.record = endpoints["record_name"]

    def aws(self, service: str, region: str | None = None) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoints["aws"]["endpoint_url"],
            region_name=region or self.estate.primary_region.name,
            aws_access_key_id=self.creds["aws_access_key_id"],
            aws_secret_access_key=self.creds["aws_secret_access_key"],
        )

    def s3_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read())

    def run(self, dag_id: str, conf: dict | None = None, *, timeout: float = 600) -> dict[str, Any]:
        run_id = f"demo__{_stamp()}"
        self.client.wait_for_dag(dag_id)
        self.client.unpause(dag_id)
        self.client.trigger(dag_id, conf or {}, run_id=run_id)
        _say(f"REST: POST /api/v2/dags/{dag_id}/dagRuns -> {run_id}")
        started = time.monotonic()
        finished = self.client.wait_for_run(dag_id, run_id, timeout=timeout)
        return {"run_id": run_id, "state": finished["state"], "seconds": round(time.monotonic() - started, 1)}

    def answer(self) -> list[str]:
        return resolve(self.layout, self.record)

    def region_of(self, addresses: list[str]) -> str | None:
        by_address = {r["address"]: name for name, r in self.endpoints["regions"].items()}
        return next((by_address[a] for a in addresses if a in by_address), None)


def readiness(story: Story) -> dict[str, Any]:
    out = story.run("dr_readiness_check")
    if out["state"] != "success":
        raise DemoError(f"dr_readiness_check ended {out['state']}")
    return out


def backups_and_verification(story: Story) -> dict[str, Any]:
    client = story.client
    client.wait_for_dag("verify_backups")
    client.unpause("verify_backups")
    before = {r["dag_run_id"] for r in client.runs("verify_backups")}
    runs = {}
    for dag_id in TIERS:  # triggered together: each tier runs as the scheduler would run it
        client.wait_for_dag(dag_id)
        client.unpause(dag_id)
        run_id = f"demo__{_stamp()}"
        client.trigger(dag_id, {}, run_id=run_id)
        runs[dag_id] = run_id
        _say(f"REST: POST /api/v2/dags/{dag_id}/dagRuns -> {run_id}")
    started = time.monotonic()
    tiers = {}
    for dag_id, run_id in runs.items():
        finished = client.wait_for_run(dag_id, run_id, timeout=900)
        tiers[dag_id] = {"state": finished["state"], "seconds": round(time.monotonic() - started, 1)}
        client.pause(dag_id)  # no scheduled runs of the tier while the rest of the story runs
        _say(f"backup {dag_id}: {finished['state']}")
    failed = [d for d, t in tiers.items() if t["state"] != "success"]
    if failed:
        raise DemoError(f"backups failed: {failed}")
    # every tier's asset event starts a verification run: wait until each tier has a verified backup
    # and no verification is left running
    deadline = time.monotonic() + 900
    while True:
        new = [r for r in client.runs("verify_backups") if r["dag_run_id"] not in before]
        done = new and all(r["state"] in ("success", "failed") for r in new)
        if done and (len(_verified_tiers(story)) >= len(TIERS) or any(r["state"] == "failed" for r in new)):
            break
        if time.monotonic() > deadline:
            raise DemoError(
                f"verification did not cover every tier within 15 minutes: {_verified_tiers(story)}"
            )
        time.sleep(2)
    client.pause("verify_backups")
    verification = _verified_tiers(story)
    bad = [r["dag_run_id"] for r in new if r["state"] != "success"]
    _say(f"verification: {len(new)} run(s), verified RPO: {json.dumps(verification)}")
    if bad:
        raise DemoError(f"verify_backups runs failed: {bad}")
    return {"tiers": tiers, "verification_runs": len(new), "verified": verification}


def _verified_tiers(story: Story) -> dict[str, Any]:
    try:
        state = story.s3_json(story.estate.primary_region.backup_bucket, "verification/state.json")
    except Exception:
        return {}
    return {
        tier: {
            "backup_id": entry["last_verified"]["backup_id"],
            "verified_rpo_minutes": entry.get("verified_rpo_minutes"),
            "breached": entry.get("breached"),
        }
        for tier, entry in (state.get("tiers") or {}).items()
        if isinstance(entry, dict) and entry.get("last_verified")
    }


def regional_outage(story: Story) -> dict[str, Any]:
    from dr_sandbox.regional_app import set_app_mode

    client = story.client
    setup = story.run("dns_failover_setup")
    if setup["state"] != "success":
        raise DemoError(f"dns_failover_setup ended {setup['state']}")
    primary = story.estate.primary_region.name
    before = story.answer()
    client.wait_for_dag(FAILOVER)
    client.unpause(FAILOVER)
    known = {r["dag_run_id"] for r in client.runs(FAILOVER)}
    client.wait_for_dag(MONITOR)
    client.unpause(MONITOR)
    time.sleep(3)  # the monitor's first cycles see every region healthy
    set_app_mode(story.endpoints["regions"][primary]["url"], "down")
    outage = time.monotonic()
    _say(f"outage: the {primary} app is down (DNS answers {before})")
    try:
        deadline = outage + 240
        failover = None
        while failover is None:
            new = [r for r in client.runs(FAILOVER) if r["dag_run_id"] not in known]
            failover = new[0] if new else None
            if time.monotonic() > deadline:
                raise DemoError("the health monitor did not trigger regional_failover within 4 minutes")
            time.sleep(0.5)
        triggered_after = time.monotonic() - outage
        finished = client.wait_for_run(FAILOVER, failover["dag_run_id"], timeout=300)
        after = story.answer()
        moved_after = time.monotonic() - outage
        _say(
            f"failover {failover['dag_run_id']}: {finished['state']}; DNS answers {after} "
            f"({story.region_of(after)}) {moved_after:.1f}s after the outage began"
        )
        if finished["state"] != "success" or story.region_of(after) == primary:
            raise DemoError(f"the automatic failover did not move traffic: {finished['state']}, DNS {after}")
    finally:
        client.pause(MONITOR)
        set_app_mode(story.endpoints["regions"][primary]["url"], "healthy")
    back = story.run(
        FAILBACK,
        {
            "reason": "the primary recovered; back to it",
            "requested_by": "sre-oncall",
            "incident_level": 3,
            "dry_run": False,
            "stable_seconds": 3,
        },
    )
    final = story.answer()
    _say(f"failback: {back['state']}; DNS answers {final} ({story.region_of(final)})")
    if back["state"] != "success":
        raise DemoError(f"regional_failback ended {back['state']}")
    return {
        "failover_run": failover["dag_run_id"],
        "failover_triggered_after_seconds": round(triggered_after, 1),
        "dns_on_secondary_after_seconds": round(moved_after, 1),
        "served_by_during_outage": story.region_of(after),
        "failback": back,
        "served_by_after_failback": story.region_of(final),
    }


def quarterly_drill(story: Story) -> dict[str, Any]:
    from dr_automation.drills.quarterly import drill_id_of, summary_text

    for dag_id in SCENARIO_DAGS:
        story.client.wait_for_dag(dag_id)
    # In production tier 1 runs every 5 minutes, so the newest backup is never older than that; the
    # demo paused the tiers, so it takes one more tier-1 backup now, as the schedule would have.
    fresh = story.run("backup_tier1_realtime")
    story.client.pause("backup_tier1_realtime")
    if fresh["state"] != "success":
        raise DemoError(f"backup_tier1_realtime ended {fresh['state']}")
    out = story.run(QUARTERLY, timeout=2400)
    drill_id = drill_id_of(out["run_id"])
    bucket = story.estate.section("drills")["report_bucket"]
    key = f"reports/drills/{drill_id}"
    report = story.s3_json(bucket, f"{key}.json")
    page = story.aws("s3").get_object(Bucket=bucket, Key=f"{key}.html")["Body"].read()
    html_path = story.layout.state_dir / "drill-report.html"
    html_path.write_bytes(page)
    head = story.aws("s3").head_object(Bucket=bucket, Key=f"{key}.json")
    where = {
        "json": f"s3://{bucket}/{key}.json",
        "html": f"s3://{bucket}/{key}.html",
        "retain_until": str(head.get("ObjectLockRetainUntilDate")),
    }
    _say(summary_text(report, where))
    _say(f"drill report (HTML): {html_path}")
    return {
        **out,
        "drill_id": drill_id,
        "success_rate": report["success_rate"],
        "readiness": report["readiness"],
        "overall_success": report["overall_success"],
        "scenarios": {
            s["scenario"]: {
                k: s.get(k) for k in ("passed", "reason", "rto_seconds", "rpo_seconds", "integrity_score")
            }
            for s in report["scenarios"]
        },
        "report": where,
        "object_lock_mode": head.get("ObjectLockMode"),
        "html_path": str(html_path),
    }


CHAPTERS: tuple[tuple[str, Callable[[Story], dict[str, Any]]], ...] = (
    ("readiness", readiness),
    ("backups", backups_and_verification),
    ("regional_outage", regional_outage),
    ("quarterly_drill", quarterly_drill),
)


def run_demo(layout: SandboxLayout) -> int:
    started = time.monotonic()
    _say("== DR sandbox demo ==")
    endpoints = up(layout)
    summary: dict[str, Any] = {"chapters": {}, "simulated": endpoints["simulated"]}
    ok = False
    story = None
    try:
        story = Story(layout, endpoints)
        _say(f"DNS: {story.record} -> {story.answer()}")
        for name, chapter in CHAPTERS:
            _say(f"-- {name} --")
            t0 = time.monotonic()
            try:
                found = chapter(story)
            except Exception as exc:
                summary["chapters"][name] = {
                    "ok": False,
                    "error": str(exc),
                    "seconds": round(time.monotonic() - t0, 1),
                }
                _say(f"{name} FAILED: {exc}")
                break
            summary["chapters"][name] = {"ok": True, "seconds": round(time.monotonic() - t0, 1), **found}
        ok = len(summary["chapters"]) == len(CHAPTERS) and all(c["ok"] for c in summary["chapters"].values())
        summary["state"] = "success" if ok else "failed"
        summary["sandbox_start_seconds"] = endpoints["started_in_seconds"]
        summary["total_seconds"] = round(time.monotonic() - started, 1)
        (layout.state_dir / "demo-summary.json").write_text(json.dumps(summary, indent=2, default=str))
        _say(json.dumps(summary, indent=2, default=str))
        _say(f"== demo {'PASSED' if ok else 'FAILED'} in {summary['total_seconds']:.0f}s ==")
    finally:
        if story is not None:
            story.client.close()
        down(layout)
        _say("sandbox stopped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_demo(SandboxLayout()))
