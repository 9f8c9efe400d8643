"""The quarterly drill: every scenario in turn, then one report kept under Object Lock.

``plan_runs`` turns the run's params into one ``dr_test_<scenario>`` run per selected scenario (run
ids derived from the quarterly run, so the report finds each scenario's stored result);
``build_report`` reads the results (a scenario that stored none failed with the reason "no result"),
adds the past drills for the trend, and ``store_report`` writes JSON + HTML into the Object Lock
report bucket (retained like the archive) and the JSON where the status board reads drills.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dr_automation.drills.report import SCENARIOS, render_html, summarise
from dr_automation.drills.scenario import FAULTS, read_result

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

REPORTS_PREFIX = "reports/drills/"
# A scheduled drill that starts later than this after its cron time is skipped: with catchup off,
# Airflow 3 schedules the latest past cron point as soon as the DAG is unpaused (even with
# run_immediately=False when the DAG has a start_date), and a drill must not start at whatever
# moment someone unpaused the DAG.
MAX_START_DELAY = timedelta(hours=24)
PAST_DRILLS_IN_TREND = 8


class QuarterlyInputError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def quarterly_params() -> dict[str, Any]:
    from airflow.sdk import Param

    return {
        "scenarios": Param(
            list(SCENARIOS),
            type="array",
            items={"type": "string", "enum": list(SCENARIOS)},
            minItems=1,
            uniqueItems=True,
            title="Scenarios",
            description="Which scenarios this drill runs (all of them by default), in this order.",
        ),
        "faults": Param(
            {},
            type="object",
            propertyNames={"enum": list(SCENARIOS)},
            additionalProperties={"type": "string", "enum": list(FAULTS)},
            title="Forced faults",
            description='Per scenario, a fault to force, e.g. {"database_failure": "remove_backup"}: '
            "proves a failing scenario is reported and lowers the drill's readiness.",
        ),
    }


def drill_id_of(run_id: str) -> str:
    """The report's id: readable, unique per quarterly run, safe as an S3 key part."""
    return "drill-" + re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-")[:80]


def scenario_run_id(run_id: str, scenario: str) -> str:
    return f"{run_id}__{scenario}"


def late_start(run_type: str, scheduled_for: datetime | None, now: datetime) -> str | None:
    """Why a scheduled run should not drill (it starts too long after its cron time), else None."""
    if run_type != "scheduled" or scheduled_for is None:
        return None
    late = now - scheduled_for
    if late <= MAX_START_DELAY:
        return None
    return (
        f"scheduled for {scheduled_for.isoformat(timespec='minutes')}, starting {late.days} d "
        f"{late.seconds // 3600} h late (the DAG was unpaused or the scheduler was down): the next "
        "quarterly drill runs at its own time; trigger one by hand to drill now"
    )


def plan_runs(params: Mapping[str, Any], run_id: str) -> list[dict[str, Any]]:
    """TriggerDagRunOperator kwargs, one per scenario; bad params name the field (nothing runs)."""
    scenarios = list(params.get("scenarios") or SCENARIOS)
    faults = dict(params.get("faults") or {})
    for i, name in enumerate(scenarios):
        if name not in SCENARIOS:
            raise QuarterlyInputError(f"scenarios[{i}]", f"{name!r} is not one of {', '.join(SCENARIOS)}")
    if len(set(scenarios)) != len(scenarios):
        raise QuarterlyInputError("scenarios", "lists a scenario twice")
    for name, fault in faults.items():
        if name not in scenarios:
            raise QuarterlyInputError(f"faults.{name}", "is not a scenario this drill runs")
        if fault not in FAULTS:
            raise QuarterlyInputError(f"faults.{name}", f"{fault!r} is not one of {', '.join(FAULTS)}")
    return [
        {
            "trigger_dag_id": f"dr_test_{name}",
            "trigger_run_id": scenario_run_id(run_id, name),
            "conf": {"fault": faults.get(name, "none")},
        }
        for name in scenarios
    ]


def _s3(estate: Estate, region: str | None = None) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(
        aws_conn_id=estate.connections["aws"],
        client_type="s3",
        region_name=region or estate.primary_region.name,
    ).conn


def scenario_results(estate: Estate, runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each scenario run's stored result; a run that stored none counts as failed, with why."""
    results = []
    for run in runs:
        scenario = run["trigger_dag_id"].removeprefix("dr_test_")
        found = read_result(estate, run["trigger_dag_id"], run["trigger_run_id"])
        if found is None:
            objectives = estate.section("drills")["objectives"][scenario]
            found = {
                "scenario": scenario,
                "dag_id": run["trigger_dag_id"],
                "run_id": run["trigger_run_id"],
                "passed": False,
                "reason": "the scenario run stored no result (it did not reach measure)",
                "rto_objective_minutes": objectives["rto_minutes"],
                "rpo_objective_minutes": objectives["rpo_minutes"],
            }
        results.append(found)
    return results


def past_reports(estate: Estate, *, excluding: str) -> list[dict[str, Any]]:
    """Earlier drills' reports (oldest first) for the trend, from where the board reads them."""
    primary = estate.primary_region
    client = _s3(estate)
    reports = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=primary.backup_bucket, Prefix=REPORTS_PREFIX
    ):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith(".json") or obj["Key"].endswith(f"/{excluding}.json"):
                continue
            try:
                doc = json.loads(
                    client.get_object(Bucket=primary.backup_bucket, Key=obj["Key"])["Body"].read()
                )
            except (ValueError, client.exceptions.NoSuchKey):
                continue
            if isinstance(doc, dict) and doc.get("finished_at"):
                reports.append(doc)
    reports.sort(key=lambda r: str(r.get("finished_at")))
    return reports[-PAST_DRILLS_IN_TREND:]


def build_report(
    estate: Estate, runs: Sequence[Mapping[str, Any]], *, run_id: str, dag_id: str = "dr_test_quarterly"
) -> dict[str, Any]:
    drill_id = drill_id_of(run_id)
    report = summarise(
        estate,
        scenario_results(estate, runs),
        drill_id=drill_id,
        run_id=run_id,
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        past=past_reports(estate, excluding=drill_id),
        dag_id=dag_id,
    )
    report["simulated"] = sorted({s for r in report["scenarios"] for s in (r.get("simulated") or [])})
    return report


def store_report(estate: Estate, report: Mapping[str, Any]) -> dict[str, str]:
    """JSON and HTML under Object Lock (COMPLIANCE for the archive's years) in the report bucket, and
    the JSON where the status board reads drills. Returns the locations."""
    drills = estate.section("drills")
    archive = estate.section("archive")
    bucket = drills["report_bucket"]
    region = next(r for r, b in archive["buckets"].items() if b == bucket)
    kms = estate.regions[region].kms_key_alias
    retain = datetime.now(UTC) + timedelta(days=365 * int(archive.get("object_lock_years", 7)))
    body = json.dumps(report, indent=2, sort_keys=True, default=str).encode()
    page = render_html(report).encode()
    locked = _s3(estate, region)
    key = f"{REPORTS_PREFIX}{report['drill_id']}"
    common = {
        "Bucket": bucket,
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": kms,
        "ObjectLockMode": archive.get("object_lock_mode", "COMPLIANCE"),
        "ObjectLockRetainUntilDate": retain,
        "ChecksumAlgorithm": "SHA256",
    }
    locked.put_object(Key=f"{key}.json", Body=body, ContentType="application/json", **common)
    locked.put_object(Key=f"{key}.html", Body=page, ContentType="text/html; charset=utf-8", **common)
    primary = estate.primary_region
    _s3(estate).put_object(
        Bucket=primary.backup_bucket,
        Key=f"{key}.json",
        Body=body,
        ContentType="application/json",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=primary.kms_key_alias,
    )
    return {
        "json": f"s3://{bucket}/{key}.json",
        "html": f"s3://{bucket}/{key}.html",
        "board": f"s3://{primary.backup_bucket}/{key}.json",
        "retain_until": retain.isoformat(timespec="seconds"),
    }


def summary_text(report: Mapping[str, Any], where: Mapping[str, str]) -> str:
    """The report in a few lines: what stakeholders read first (and the demo prints)."""
    lines = [
        f"DR drill {report['drill_id']}: {report['passed']}/{report['total']} scenarios passed "
        f"({report['success_rate']:.0%}), overall {'SUCCESS' if report['overall_success'] else 'FAILURE'}, "
        f"readiness {report['readiness']}.",
    ]
    for s in report["scenarios"]:
        rto = s.get("rto_seconds")
        rpo = s.get("rpo_seconds")
        figures = (
            f"RTO {rto:.1f}s (objective {s['rto_objective_minutes']} min), "
            f"RPO {rpo:.1f}s (objective {s['rpo_objective_minutes']} min)"
            if isinstance(rto, int | float) and isinstance(rpo, int | float)
            else "not measured"
        )
        verdict = "passed" if s["passed"] else f"FAILED: {s.get('reason')}"
        lines.append(f"- {s['scenario']}: {verdict}; {figures}")
    impact = report["business_impact"]
    loss = impact["revenue_loss"]
    sla = impact.get("sla") or {}
    lines.append(
        f"Business impact of the simulated outage: {impact['simulated_outage_hours']:.3f} h, "
        f"revenue at risk {loss['total']:.2f} {loss['currency']}"
        + (
            f"; {sla['uptime_percent']:.3f} % uptime in a 30-day month, SLA credit {sla['credit_share']:.0%}"
            if sla
            else ""
        )
    )
    lines.extend(f"Recommendation: {r}" for r in report["recommendations"])
    lines.append(f"Report: {where['json']} and {where['html']} (Object Lock until {where['retain_until']}).")
    return "\n".join(lines)


def notify_stakeholders(
    estate: Estate, report: Mapping[str, Any], where: Mapping[str, str], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Send the summary to the drills section's stakeholders (their matrix channels), audited."""
    from dr_automation.notifications import notify_incident

    return notify_incident(
        1,
        f"DR drill report {report['drill_id']}: readiness {report['readiness']}",
        summary_text(report, where),
        incident_id=report["drill_id"][:64],
        estate=estate,
        stakeholders=estate.section("drills")["stakeholders"],
        audiences=["internal"],
        context=context,
    )
