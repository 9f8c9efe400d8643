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


def _bars(title: str, rows: Sequence[tuple[str, float | None, float | None]], unit: str) -> str:
    """A horizontal bar per scenario (measured) with its objective marked; red when over it."""
    width, bar_h, left = 560, 18, 170
    top = max([v for _, v, o in rows for v in (v, o) if v is not None] or [1.0]) or 1.0
    scale = (width - left - 20) / top
    parts = [
        f'<svg role="img" aria-label="{html.escape(title)}" width="{width}" height="{len(rows) * 28 + 30}">'
    ]
    parts.append(f'<text x="0" y="14" font-weight="bold">{html.escape(title)} ({unit})</text>')
    for i, (name, measured, objective) in enumerate(rows):
        y = 24 + i * 28
        parts.append(f'<text x="0" y="{y + 13}">{html.escape(name)}</text>')
        if measured is not None:
            over = objective is not None and measured > objective
            colour = "#c0392b" if over else "#27ae60"
            parts.append(
                f'<rect x="{left}" y="{y}" width="{max(measured * scale, 1):.1f}" height="{bar_h}" fill="{colour}">'
                f"<title>{measured:.2f} {unit}</title></rect>"
            )
        if objective is not None:
            x = left + objective * scale
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 2}" y2="{y + bar_h + 2}" stroke="#000" stroke-width="2">'
                f"<title>objective {objective:.2f} {unit}</title></line>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _trend(points: Sequence[Mapping[str, Any]]) -> str:
    rates = [p.get("success_rate") for p in points if isinstance(p.get("success_rate"), int | float)]
    width, height = 560, 120
    if not rates:
        return "<p>No past drills.</p>"
    step = (width - 40) / max(len(rates) - 1, 1)
    coords = " ".join(
        f"{20 + i * step:.1f},{height - 10 - r * (height - 20):.1f}" for i, r in enumerate(rates)
    )
    return (
        f'<svg role="img" aria-label="success rate across drills" width="{width}" height="{height}">'
        f'<polyline points="{coords}" fill="none" stroke="#2c3e50" stroke-width="2"/>'
        f'<line x1="0" x2="{width}" y1="{height - 10 - OVERALL_SUCCESS_RATE * (height - 20):.1f}" '
        f'y2="{height - 10 - OVERALL_SUCCESS_RATE * (height - 20):.1f}" stroke="#e67e22" stroke-dasharray="4"/>'
        "</svg>"
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained page (inline SVG charts, no scripts, every value escaped)."""
    esc = html.escape
    rows = report["scenarios"]
    rto = [(s["scenario"], _minutes(s.get("rto_seconds")), s.get("rto_objective_minutes")) for s in rows]
    rpo = [(s["scenario"], _minutes(s.get("rpo_seconds")), s.get("rpo_objective_minutes")) for s in rows]
    table = "".join(
        f"<tr><td>{esc(s['scenario'])}</td><td>{'passed' if s['passed'] else 'FAILED'}</td>"
        f"<td>{esc(_fmt(s.get('rto_seconds')))}</td><td>{esc(_fmt(s.get('rpo_seconds')))}</td>"
        f"<td>{esc(_fmt(s.get('integrity_score')))}</td><td>{esc(str(s.get('reason') or ''))}</td></tr>"
        for s in rows
    )
    advice = "".join(f"<li>{esc(line)}</li>" for line in report["recommendations"]) or "<li>None.</li>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>DR drill {esc(str(report['drill_id']))}</title></head><body>"
        f"<h1>DR drill {esc(str(report['drill_id']))}</h1>"
        f"<p>Finished {esc(str(report['finished_at']))}. {report['passed']} of {report['total']} scenarios "
        f"passed ({report['success_rate'] * 100:.0f} %): overall "
        f"{'SUCCESS' if report['overall_success'] else 'FAILURE'}, readiness {esc(report['readiness'])}.</p>"
        "<table border='1'><tr><th>scenario</th><th>result</th><th>RTO (s)</th><th>RPO (s)</th>"
        f"<th>integrity</th><th>reason</th></tr>{table}</table>"
        + _bars("Measured RTO against objective", rto, "min")
        + _bars("Measured RPO against objective", rpo, "min")
        + "<h2>Trend</h2>"
        + _trend(report.get("trend") or [])
        + f"<h2>Recommendations</h2><ul>{advice}</ul>"
        f"<p>Business impact of the simulated outage: {esc(_money(report['business_impact']['revenue_loss']))} "
        f"over {report['business_impact']['simulated_outage_hours']} h{_sla(report['business_impact'])}.</p>"
        f"{_simulated(report.get('simulated') or [])}</body></html>"
    )


def _sla(impact: Mapping[str, Any]) -> str:
    sla = impact.get("sla")
    if not sla:
        return ""
    owed = f"an SLA credit of {sla['credit_share'] * 100:.0f} %" if sla["credit_share"] else "no SLA credit"
    return html.escape(f"; in a 30-day month that is {sla['uptime_percent']} % uptime and {owed}")


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
