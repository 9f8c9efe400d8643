"""The quarterly drill's report: figures from the scenario results, never constants.

Each scenario run hands over a result (``ScenarioResult`` below: measured RTO/RPO/integrity, the
objectives it was held to, its recovery split into phases, whether it passed and why). This module
turns a drill's results into the report: success rate, overall success (at least 80 %), readiness
(HIGH at 90 % or more, else MEDIUM; LOW when the drill itself failed), RTO/RPO/integrity compliance
per scenario, the business impact of the simulated outage, recommendations derived from what
failed, and the trend across past drills. ``render_html`` draws the readable page (inline SVG, no
scripts). The stored JSON is also the status board's contract (``dr_automation.status.snapshot``,
``reports/drills/<drill_id>.json``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate

REPORT_FORMAT = "dr-drill-report/1"
OVERALL_SUCCESS_RATE = 0.80
HIGH_READINESS_RATE = 0.90
PHASES = ("detect", "decide", "switch", "restore", "verify")
SCENARIOS = ("database_failure", "region_outage", "complete_disaster", "data_corruption", "security_incident")
# What each scenario's failure suggests doing (the recommendation names the scenario's reason too).
_ADVICE = {
    "rto": "recovery exceeded its RTO: shorten the slowest phase ({slowest}) or revisit the objective",
    "rpo": "data lost exceeds the RPO: back up the affected data more often or verify backups sooner",
    "integrity": "restored data differs from the source: investigate the backup and restore path",
    "failed": "the scenario did not complete ({reason}): fix it before relying on this recovery path",
}


class DrillReportError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def _number(result: Mapping[str, Any], key: str, where: str) -> float | None:
    value = result.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise DrillReportError(f"{where}.{key}", f"must be a non-negative number, got {value!r}")
    return float(value)


def compliance(result: Mapping[str, Any], where: str = "scenario") -> dict[str, Any]:
    """Measured against objectives: which of RTO, RPO and integrity were met (None: not measured)."""
    rto = _number(result, "rto_seconds", where)
    rpo = _number(result, "rpo_seconds", where)
    integrity = _number(result, "integrity_score", where)
    rto_obj = _number(result, "rto_objective_minutes", where)
    rpo_obj = _number(result, "rpo_objective_minutes", where)
    integrity_min = _number(result, "integrity_objective", where)
    return {
        "rto_met": None if rto is None or rto_obj is None else rto <= rto_obj * 60,
        "rpo_met": None if rpo is None or rpo_obj is None else rpo <= rpo_obj * 60,
        "integrity_met": None if integrity is None or integrity_min is None else integrity >= integrity_min,
    }


def recommendations(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per problem, naming the scenario: derived from what failed, in scenario order."""
    lines = []
    for result in results:
        name = result["scenario"]
        met = result["compliance"]
        if not result.get("passed"):
            lines.append(
                f"{name}: " + _ADVICE["failed"].format(reason=result.get("reason") or "no reason given")
            )
        phases = result.get("phases") or {}
        slowest = max(phases, key=lambda p: phases[p]) if phases else "unknown"
        for key in ("rto", "rpo", "integrity"):
            if met.get(f"{key}_met") is False:
                lines.append(f"{name}: " + _ADVICE[key].format(slowest=slowest))
    return lines


def summarise(
    estate: Estate,
    results: Sequence[Mapping[str, Any]],
    *,
    drill_id: str,
    run_id: str | None,
    finished_at: str,
    past: Sequence[Mapping[str, Any]] = (),
    dag_id: str = "dr_test_quarterly",
) -> dict[str, Any]:
    """The drill report (JSON-ready) from the scenarios' results and the past drills' reports."""
    from dr_automation.incidents.impact import revenue_loss, sla_credit, uptime_percent

    if not results:
        raise DrillReportError("results", "a drill needs at least one scenario result")
    scenarios = []
    for i, result in enumerate(results):
        if result.get("scenario") not in SCENARIOS:
            raise DrillReportError(f"results[{i}].scenario", f"unknown scenario {result.get('scenario')!r}")
        phases = {p: _number(result.get("phases") or {}, p, f"results[{i}].phases") for p in PHASES}
        scenarios.append(
            {
                **dict(result),
                "passed": bool(result.get("passed")),
                "phases": {p: v for p, v in phases.items() if v is not None},
                "compliance": compliance(result, f"results[{i}]"),
            }
        )
    passed = sum(1 for s in scenarios if s["passed"])
    rate = passed / len(scenarios)
    outage_hours = sum((s.get("rto_seconds") or 0) for s in scenarios) / 3600
    loss = revenue_loss(estate, outage_hours=outage_hours, affected_share=1.0)
    # had this outage happened in production: the month's uptime and the SLA credit it would owe
    month_minutes = 30 * 24 * 60
    uptime = uptime_percent(
        period_minutes=month_minutes, downtime_minutes=min(outage_hours * 60, month_minutes)
    )
    monthly_revenue = revenue_loss(estate, outage_hours=month_minutes / 60).total
    credit = sla_credit(estate, uptime_percent=uptime, monthly_revenue=monthly_revenue)
    return {
        "format": REPORT_FORMAT,
        "drill_id": drill_id,
        "dag_id": dag_id,
        "run_id": run_id,
        "finished_at": finished_at,
        "scenarios": scenarios,
        "passed": passed,
        "total": len(scenarios),
        "success_rate": round(rate, 4),
        "overall_success": rate >= OVERALL_SUCCESS_RATE,
        "readiness": "HIGH"
        if rate >= HIGH_READINESS_RATE
        else "MEDIUM"
        if rate >= OVERALL_SUCCESS_RATE
        else "LOW",
        "business_impact": {
            "simulated_outage_hours": round(outage_hours, 4),
            "revenue_loss": loss.as_dict(),
            "sla": credit.as_dict(),
        },
        "recommendations": recommendations(scenarios),
        "trend": [
            {
                "drill_id": p.get("drill_id"),
                "finished_at": p.get("finished_at"),
                "success_rate": p.get("success_rate"),
            }
            for p in past
        ]
        + [{"drill_id": drill_id, "finished_at": finished_at, "success_rate": round(rate, 4)}],
    }


# -- the readable page ---------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:980px;color:#1f2933;padding:0 16px}
h1{font-size:22px;margin:0 0 6px} h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%} td,th{padding:5px 8px;border-bottom:1px solid #eee;
text-align:left;font-size:13px;vertical-align:top} th{color:#52606d;font-weight:600}
.ok{color:#1b7f3b} .bad{color:#c62828} .muted{color:#7b8794;font-size:12px}
.badge{display:inline-block;padding:3px 10px;border-radius:12px;font-weight:700;margin-right:8px}
.HIGH{background:#e3f4e8;color:#1b7f3b} .MEDIUM{background:#fff4e0;color:#b26a00}
.LOW{background:#fde8e8;color:#c62828} .charts{display:flex;flex-wrap:wrap;gap:24px}
"""


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained page (inline SVG charts, no scripts, every value escaped)."""
    from dr_automation.charts import objective_bars, stacked_phases, trend

    esc = html.escape
    rows = report["scenarios"]
    rto = [(s["scenario"], _minutes(s.get("rto_seconds")), s.get("rto_objective_minutes")) for s in rows]
    rpo = [(s["scenario"], _minutes(s.get("rpo_seconds")), s.get("rpo_objective_minutes")) for s in rows]
    phases = [(s["scenario"], s.get("phases") or {}) for s in rows]
    points = [
        (str(p.get("drill_id") or p.get("finished_at") or "?"), float(p["success_rate"]))
        for p in report.get("trend") or []
        if isinstance(p.get("success_rate"), int | float) and not isinstance(p.get("success_rate"), bool)
    ]
    advice = "".join(f"<li>{esc(line)}</li>" for line in report["recommendations"]) or "<li>None.</li>"
    readiness = str(report["readiness"])
    overall = "SUCCESS" if report["overall_success"] else "FAILURE"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>DR drill {esc(str(report['drill_id']))}</title><style>{_STYLE}</style></head><body>"
        f"<h1>DR drill {esc(str(report['drill_id']))}</h1>"
        f"<p><span class='badge {esc(readiness)}'>readiness {esc(readiness)}</span>"
        f"<span class='badge {'ok' if report['overall_success'] else 'bad'}'>overall {overall}</span></p>"
        f"<p>Finished {esc(str(report['finished_at']))}. {report['passed']} of {report['total']} scenarios "
        f"passed ({report['success_rate'] * 100:.0f} %): overall {overall} (at "
        f"{OVERALL_SUCCESS_RATE * 100:.0f} % or more), readiness {esc(readiness)} (HIGH at "
        f"{HIGH_READINESS_RATE * 100:.0f} % or more).</p>"
        "<h2>Scenarios</h2>"
        "<table><tr><th>scenario</th><th>result</th><th>RTO</th><th>RPO</th><th>integrity</th>"
        f"<th>reason</th></tr>{''.join(_scenario_row(s) for s in rows)}</table>"
        "<h2>Measured against objectives</h2><div class='charts'>"
        + objective_bars(rto, "min", title="Measured RTO against objective")
        + objective_bars(rpo, "min", title="Measured RPO against objective")
        + "</div><p class='muted'>Each row is drawn against its own objective (the black mark); a red bar "
        "missed it.</p><h2>Where the recovery time went</h2>"
        + stacked_phases(phases, PHASES)
        + "<h2>Trend</h2>"
        + trend(
            points,
            threshold=OVERALL_SUCCESS_RATE,
            threshold_label=f"overall success at {OVERALL_SUCCESS_RATE * 100:.0f} %",
        )
        + f"<h2>Recommendations</h2><ul>{advice}</ul>"
        + _impact(report["business_impact"])
        + f"{_simulated(report.get('simulated') or [])}</body></html>"
    )


def _scenario_row(s: Mapping[str, Any]) -> str:
    """A scenario's figures against its objectives, each marked met or missed."""
    met = s.get("compliance") or {}

    def cell(value: Any, text: str, ok: bool | None) -> str:
        if value is None:
            return "<td class='muted'>not measured</td>"
        mark = (
            "" if ok is None else " <span class='ok'>met</span>" if ok else " <span class='bad'>missed</span>"
        )
        return f"<td>{html.escape(text)}{mark}</td>"

    def timed(key: str) -> str:
        objective = s.get(f"{key}_objective_minutes")
        seconds = s.get(f"{key}_seconds")
        text = "" if seconds is None else f"{_fmt(float(seconds))} s"
        return cell(
            seconds, text + ("" if objective is None else f" / {_fmt(objective)} min"), met.get(f"{key}_met")
        )

    integrity = s.get("integrity_score")
    return (
        f"<tr><td>{html.escape(str(s['scenario']))}</td>"
        f"<td class='{'ok' if s['passed'] else 'bad'}'>{'passed' if s['passed'] else 'FAILED'}</td>"
        + timed("rto")
        + timed("rpo")
        + cell(integrity, "" if integrity is None else _fmt(float(integrity)), met.get("integrity_met"))
        + f"<td>{html.escape(str(s.get('reason') or ''))}</td></tr>"
    )


def _impact(impact: Mapping[str, Any]) -> str:
    loss = impact["revenue_loss"]
    tiers = "".join(
        f"<tr><td>{html.escape(str(tier))}</td><td>{html.escape(_money({'total': amount, 'currency': loss['currency']}))}"
        "</td></tr>"
        for tier, amount in (loss.get("by_tier") or {}).items()
    )
    table = f"<table><tr><th>customer tier</th><th>revenue lost</th></tr>{tiers}</table>" if tiers else ""
    return (
        "<h2>Business impact of the simulated outage</h2>"
        f"<p>{html.escape(_money(loss))} over {impact['simulated_outage_hours']} h "
        f"(every scenario's RTO added up){_sla(impact)}.</p>{table}"
    )


def _sla(impact: Mapping[str, Any]) -> str:
    sla = impact.get("sla")
    if not sla:
        return ""
    owed = f"an SLA credit of {sla['credit_share'] * 100:.0f} %" if sla["credit_share"] else "no SLA credit"
    return html.escape(f"; in a 30-day month that is {sla['uptime_percent']:.3f} % uptime and {owed}")


def _simulated(items: Sequence[str]) -> str:
    if not items:
        return ""
    return (
        "<h2>Simulated in this drill</h2><ul>"
        + "".join(f"<li>{html.escape(i)}</li>" for i in items)
        + "</ul>"
    )


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def _money(loss: Mapping[str, Any]) -> str:
    return f"{loss['total']:,.2f} {loss['currency']}"
