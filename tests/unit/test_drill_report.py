"""The drill report: success rate, readiness, compliance and recommendations from measured results."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from dr_automation.charts import OVER
from dr_automation.drills.report import PHASES, DrillReportError, compliance, render_html, summarise
from dr_automation.estate import DEFAULT_ESTATE_PATH, Estate, load_estate
from dr_automation.status.snapshot import drill_entry


@pytest.fixture(scope="module")
def estate() -> Estate:
    return load_estate(DEFAULT_ESTATE_PATH)


def result(name: str, *, passed: bool = True, rto: float = 300.0, rpo: float = 60.0, **extra) -> dict:
    return {
        "scenario": name,
        "passed": passed,
        "rto_seconds": rto,
        "rto_objective_minutes": 60,
        "rpo_seconds": rpo,
        "rpo_objective_minutes": 5,
        "integrity_score": 1.0,
        "integrity_objective": 0.999,
        "phases": {
            "detect": 10.0,
            "decide": 2.0,
            "switch": 5.0,
            "restore": None if rto is None else rto - 20.0,
            "verify": 3.0,
        },
        **extra,
    }


ALL = ("database_failure", "region_outage", "complete_disaster", "data_corruption", "security_incident")


def report(estate: Estate, results: list[dict], past: list[dict] | None = None) -> dict:
    return summarise(
        estate,
        results,
        drill_id="q4-2026",
        run_id="manual__1",
        finished_at="2026-11-25T05:00:00+00:00",
        past=past or [],
    )


def test_every_scenario_passing_is_high_readiness(estate: Estate) -> None:
    out = report(estate, [result(n) for n in ALL])
    assert (out["success_rate"], out["overall_success"], out["readiness"]) == (1.0, True, "HIGH")
    assert out["recommendations"] == []
    assert all(
        s["compliance"] == {"rto_met": True, "rpo_met": True, "integrity_met": True} for s in out["scenarios"]
    )
    assert out["business_impact"]["simulated_outage_hours"] == pytest.approx(5 * 300 / 3600, abs=1e-4)
    assert out["business_impact"]["revenue_loss"]["total"] > 0
    # 25 min down in a 30-day month: 99.94 % uptime, below the 99.95 % target: the 10 % credit line
    assert out["business_impact"]["sla"]["uptime_percent"] == pytest.approx(99.94, abs=0.01)
    assert out["business_impact"]["sla"]["credit_share"] == 0.10


def test_one_failed_scenario_is_80_percent_medium_with_a_recommendation_naming_it(estate: Estate) -> None:
    results = [result(n) for n in ALL[:4]] + [
        result(ALL[4], passed=False, reason="backup removed: no manifest")
    ]
    out = report(estate, results)
    assert (out["success_rate"], out["overall_success"], out["readiness"]) == (0.8, True, "MEDIUM")
    assert out["recommendations"] == [
        "security_incident: the scenario did not complete (backup removed: no manifest): fix it before "
        "relying on this recovery path"
    ]


def test_two_failed_scenarios_fail_the_drill_low_readiness(estate: Estate) -> None:
    results = [result(n, passed=i > 1) for i, n in enumerate(ALL)]
    out = report(estate, results)
    assert (out["success_rate"], out["overall_success"], out["readiness"]) == (0.6, False, "LOW")


def test_missed_objectives_are_reported_with_the_slowest_phase(estate: Estate) -> None:
    slow = result("database_failure", rto=5000.0, rpo=900.0, integrity_score=0.95)
    out = report(estate, [slow])
    assert out["scenarios"][0]["compliance"] == {"rto_met": False, "rpo_met": False, "integrity_met": False}
    assert any("shorten the slowest phase (restore)" in line for line in out["recommendations"])
    assert len(out["recommendations"]) == 3


def test_trend_appends_this_drill_to_the_past_ones(estate: Estate) -> None:
    past = [{"drill_id": "q3-2026", "finished_at": "2026-08-25T05:00:00+00:00", "success_rate": 0.6}]
    out = report(estate, [result(n) for n in ALL], past)
    assert [p["success_rate"] for p in out["trend"]] == [0.6, 1.0]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"scenario": "meteor"}, "results[0].scenario"),
        ({"rto_seconds": -1}, "results[0].rto_seconds"),
        ({"rpo_seconds": "5"}, "results[0].rpo_seconds"),
        ({"phases": {"detect": True}}, "results[0].phases.detect"),
    ],
)
def test_bad_results_are_refused_by_field(estate: Estate, bad: dict, field: str) -> None:
    with pytest.raises(DrillReportError) as exc:
        report(estate, [{**result("database_failure"), **bad}])
    assert exc.value.field == field
    with pytest.raises(DrillReportError, match="results: a drill needs at least one"):
        report(estate, [])


def test_unmeasured_figures_are_unknown_not_met() -> None:
    assert compliance({"rto_seconds": None, "rto_objective_minutes": 60}) == {
        "rto_met": None,
        "rpo_met": None,
        "integrity_met": None,
    }


class _Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_page_charts_measured_against_objective_and_escapes_text(estate: Estate) -> None:
    results = [result(n) for n in ALL[:4]] + [
        result(ALL[4], passed=False, rto=7200.0, reason="<script>x</script>")
    ]
    page = render_html(report(estate, results, [{"drill_id": "q3", "success_rate": 0.6}]))
    assert "<script>" not in page and "&lt;script&gt;" in page
    parser = _Svg()
    parser.feed(page)
    svgs = [a for t, a in parser.tags if t == "svg"]
    assert [s["aria-label"] for s in svgs] == [
        "Measured RTO against objective",
        "Measured RPO against objective",
        "Recovery time by phase",
        "success rate across drills",
    ]
    bars = [a for t, a in parser.tags if t == "rect" and a.get("class") == "measured"]
    assert len(bars) == 10 and [b["data-measured"] for b in bars if b["fill"] == OVER] == [
        "120"
    ]  # 2 h > 60 min
    assert "readiness MEDIUM" in page and re.search(r"4 of 5 scenarios\s+passed \(80 %\)", page)
    # the table marks each figure against its objective: the RTO missed, the 60 s RPO against 5 min met
    assert page.count("<span class='bad'>missed</span>") == 1 and "7200.00 s / 60 min" in page
    # each scenario's recovery split into its phases, on one scale
    phases = [a for t, a in parser.tags if t == "rect" and a.get("class") == "phase"]
    assert {p["data-phase"] for p in phases} == set(PHASES) and len(phases) == 5 * len(PHASES)
    assert sum(float(p["data-seconds"]) for p in phases[:5]) == pytest.approx(300.0)
    # the trend: one dot per drill, the past one and this one, below/at the 80 % line
    dots = [a for t, a in parser.tags if t == "circle"]
    assert [d["data-share"] for d in dots] == ["0.6", "0.8"] and dots[0]["fill"] == OVER


def test_a_first_drill_still_draws_its_trend_point_and_unmeasured_figures_say_so(estate: Estate) -> None:
    results = [result(n) for n in ALL[:4]] + [result(ALL[4], passed=False, rto=None, rpo=None)]
    results[4]["phases"] = {}
    page = render_html(report(estate, results))
    parser = _Svg()
    parser.feed(page)
    assert [a["data-share"] for t, a in parser.tags if t == "circle"] == ["0.8"]
    assert "not measured" in page
    bars = [a for t, a in parser.tags if t == "rect" and a.get("class") == "measured"]
    assert len(bars) == 8  # the unmeasured scenario draws no bar, only its label


def test_the_report_is_what_the_status_board_reads(estate: Estate) -> None:
    out = json.loads(json.dumps(report(estate, [result(n) for n in ALL])))
    entry = drill_entry(out, {"Key": "reports/drills/q4-2026.json"}, "bucket", "us-east-1")
    assert entry["drill_id"] == "q4-2026" and entry["readiness"] == "HIGH" and len(entry["scenarios"]) == 5
