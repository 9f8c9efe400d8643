"""Business impact: revenue lost per tier and SLA credits, exact to the cent, read from the config."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from dr_automation.estate import Estate
from dr_automation.incidents import (
    IncidentInputError,
    RevenueLoss,
    SlaCredit,
    revenue_loss,
    sla_credit,
    uptime_percent,
)
from tests.unit.conftest import Doc, load_doc

# -- revenue loss ------------------------------------------------------------------------------


def test_seed_example_two_hours_everyone(estate: Estate) -> None:
    """150*0.15*2 + 45*0.35*2 + 15*0.50*2 = 45 + 31.5 + 15 = 91.5, exactly."""
    loss = revenue_loss(estate, outage_hours=2)
    assert isinstance(loss, RevenueLoss)
    assert loss.total == 91.5
    assert dict(loss.by_tier) == {"enterprise": 45.0, "team": 31.5, "developer": 15.0}
    assert list(loss.by_tier) == ["enterprise", "team", "developer"]
    assert (loss.outage_hours, loss.affected_share, loss.currency) == (2.0, 1.0, "USD")
    assert loss.as_dict() == {
        "total": 91.5,
        "by_tier": {"enterprise": 45.0, "team": 31.5, "developer": 15.0},
        "outage_hours": 2.0,
        "affected_share": 1.0,
        "currency": "USD",
    }


@pytest.mark.parametrize(
    ("hours", "share", "by_tier", "total"),
    [
        (1, 1.0, {"enterprise": 22.5, "team": 15.75, "developer": 7.5}, 45.75),
        (0, 1.0, {"enterprise": 0.0, "team": 0.0, "developer": 0.0}, 0.0),
        (2, 0.0, {"enterprise": 0.0, "team": 0.0, "developer": 0.0}, 0.0),
        (2, 0.5, {"enterprise": 22.5, "team": 15.75, "developer": 7.5}, 45.75),
        # team: 45*0.35*1.5*0.2 = 4.725 exactly -> 4.73 half-up (float round() gives 4.72)
        (1.5, 0.2, {"enterprise": 6.75, "team": 4.73, "developer": 2.25}, 13.73),
        (24, 0.25, {"enterprise": 135.0, "team": 94.5, "developer": 45.0}, 274.5),
        (0.1, 1.0, {"enterprise": 2.25, "team": 1.58, "developer": 0.75}, 4.58),
    ],
)
def test_revenue_loss_per_tier(
    estate: Estate, hours: float, share: float, by_tier: dict[str, float], total: float
) -> None:
    loss = revenue_loss(estate, outage_hours=hours, affected_share=share)
    assert dict(loss.by_tier) == by_tier
    assert loss.total == total
    assert round(sum(loss.by_tier.values()), 2) == loss.total


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"outage_hours": -1}, "outage_hours", "must not be negative (got -1)"),
        ({"outage_hours": -0.001}, "outage_hours", "must not be negative"),
        ({"outage_hours": math.nan}, "outage_hours", "must be a finite number (got nan)"),
        ({"outage_hours": math.inf}, "outage_hours", "must be a finite number (got inf)"),
        ({"outage_hours": "2"}, "outage_hours", "must be a number (got '2')"),
        ({"outage_hours": None}, "outage_hours", "must be a number (got None)"),
        ({"outage_hours": 2, "affected_share": -0.1}, "affected_share", "must be a share between 0 and 1"),
        ({"outage_hours": 2, "affected_share": 1.5}, "affected_share", "must be a share between 0 and 1"),
        ({"outage_hours": 2, "affected_share": math.nan}, "affected_share", "must be a finite number"),
    ],
)
def test_revenue_loss_rejects_bad_input(
    estate: Estate, kwargs: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(IncidentInputError) as info:
        revenue_loss(estate, **kwargs)
    assert info.value.field == field
    assert reason in info.value.reason


def test_revenue_loss_reads_config(tmp_path: Path, doc: Doc) -> None:
    doc["business_impact"]["hourly_revenue"]["enterprise"] = 200
    doc["business_impact"]["currency"] = "EUR"
    loss = revenue_loss(load_doc(tmp_path, doc), outage_hours=2)
    assert loss.by_tier["enterprise"] == 60.0
    assert loss.total == 106.5
    assert loss.currency == "EUR"


def test_revenue_loss_reads_distribution_and_tiers_from_config(tmp_path: Path, doc: Doc) -> None:
    impact = doc["business_impact"]
    impact["hourly_revenue"] = {"enterprise": 150, "team": 45, "developer": 15, "free": 0}
    impact["customer_distribution"] = {"enterprise": 0.2, "team": 0.3, "developer": 0.4, "free": 0.1}
    loss = revenue_loss(load_doc(tmp_path, doc), outage_hours=2)
    assert dict(loss.by_tier) == {"enterprise": 60.0, "team": 27.0, "developer": 12.0, "free": 0.0}
    assert loss.total == 99.0


# -- SLA credits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uptime", "credit", "threshold"),
    [
        (100, 0.0, None),
        (99.99, 0.0, None),
        (99.9501, 0.0, None),  # just above the target
        (99.95, 0.0, None),  # exactly the target: not below it
        (99.9499, 0.10, 99.95),  # just below
        (99.92, 0.10, 99.95),
        (99.9001, 0.10, 99.95),
        (99.90, 0.10, 99.95),  # exactly 99.90 is not below 99.90
        (99.8999, 0.25, 99.90),
        (99.5001, 0.25, 99.90),
        (99.50, 0.25, 99.90),
        (99.4999, 0.50, 99.50),
        (99.0001, 0.50, 99.50),
        (99.00, 0.50, 99.50),
        (98.9999, 1.00, 99.00),
        (98.99, 1.00, 99.00),
        (98.7, 1.00, 99.00),
        (0, 1.00, 99.00),
    ],
)
def test_sla_credit_at_every_boundary(
    estate: Estate, uptime: float, credit: float, threshold: float | None
) -> None:
    got = sla_credit(estate, uptime_percent=uptime, monthly_revenue=10_000)
    assert isinstance(got, SlaCredit)
    assert got.credit_share == credit
    assert got.credit_amount == 10_000 * credit
    assert got.threshold_percent == threshold
    assert got.sla_target_percent == 99.95
    assert got.currency == "USD"
    assert got.uptime_percent == uptime
    assert got.sla_met is (uptime >= 99.95)


@pytest.mark.parametrize(
    ("revenue", "uptime", "amount"),
    [
        (12_345.67, 99.8, 3086.42),  # 3086.4175
        (1000.05, 99.92, 100.01),  # 100.005 half-up (round(1000.05 * 0.1, 2) gives 100.0)
        (0, 90.0, 0.0),
        (999.99, 50.0, 999.99),
        (10_000, 99.96, 0.0),
    ],
)
def test_sla_credit_amount_rounds_to_cents(
    estate: Estate, revenue: float, uptime: float, amount: float
) -> None:
    got = sla_credit(estate, uptime_percent=uptime, monthly_revenue=revenue)
    assert got.credit_amount == amount
    assert got.as_dict()["credit_amount"] == amount


def test_sla_credit_as_dict(estate: Estate) -> None:
    assert sla_credit(estate, uptime_percent=99.92, monthly_revenue=1000).as_dict() == {
        "uptime_percent": 99.92,
        "credit_share": 0.1,
        "credit_amount": 100.0,
        "sla_target_percent": 99.95,
        "currency": "USD",
        "threshold_percent": 99.95,
        "sla_met": False,
    }


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"uptime_percent": -0.01}, "uptime_percent", "must be between 0 and 100 (got -0.01)"),
        ({"uptime_percent": 100.01}, "uptime_percent", "must be between 0 and 100 (got 100.01)"),
        ({"uptime_percent": math.nan}, "uptime_percent", "must be a finite number (got nan)"),
        ({"uptime_percent": math.inf}, "uptime_percent", "must be a finite number"),
        ({"uptime_percent": "99.9"}, "uptime_percent", "must be a number (got '99.9')"),
        ({"monthly_revenue": -1}, "monthly_revenue", "must not be negative (got -1)"),
        ({"monthly_revenue": math.nan}, "monthly_revenue", "must be a finite number"),
        ({"monthly_revenue": None}, "monthly_revenue", "must be a number (got None)"),
    ],
)
def test_sla_credit_rejects_bad_input(
    estate: Estate, kwargs: dict[str, Any], field: str, reason: str
) -> None:
    arguments = {"uptime_percent": 99.9, "monthly_revenue": 1000.0, **kwargs}
    with pytest.raises(IncidentInputError) as info:
        sla_credit(estate, **arguments)
    assert info.value.field == field
    assert reason in info.value.reason


def test_sla_credit_reads_schedule_from_config(tmp_path: Path, doc: Doc) -> None:
    impact = doc["business_impact"]
    impact["sla_target_percent"] = 99.99
    impact["sla_credits"] = [
        {"below_uptime_percent": 99.99, "credit": 0.05},
        {"below_uptime_percent": 99.0, "credit": 0.30},
    ]
    estate = load_doc(tmp_path, doc)
    assert sla_credit(estate, uptime_percent=99.99, monthly_revenue=100).credit_share == 0.0
    got = sla_credit(estate, uptime_percent=99.96, monthly_revenue=100)  # no credit with the bundled file
    assert (got.credit_share, got.credit_amount, got.sla_target_percent) == (0.05, 5.0, 99.99)
    assert sla_credit(estate, uptime_percent=99.2, monthly_revenue=100).credit_share == 0.05
    assert sla_credit(estate, uptime_percent=98.0, monthly_revenue=100).credit_share == 0.30


# -- uptime ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "downtime", "expected"),
    [
        (43_200, 0, 100.0),
        (43_200, 43.2, 99.9),
        (43_200, 21.6, 99.95),
        (43_200, 43_200, 0.0),
        (40_320, 20.16, 99.95),  # floats give 99.94999999999999: a 10 % credit owed by mistake
        (3, 1, 66.6666666666),  # non-terminating: cut (never rounded up across a threshold)
        (0.5, 0.25, 50.0),
    ],
)
def test_uptime_percent(period: float, downtime: float, expected: float) -> None:
    assert uptime_percent(period_minutes=period, downtime_minutes=downtime) == expected


def test_uptime_feeds_sla_credit_exactly(estate: Estate) -> None:
    assert (40_320 - 20.16) / 40_320 * 100 < 99.95  # the naive formula
    uptime = uptime_percent(period_minutes=40_320, downtime_minutes=20.16)
    assert sla_credit(estate, uptime_percent=uptime, monthly_revenue=1000).credit_share == 0.0
    uptime = uptime_percent(period_minutes=43_200, downtime_minutes=43.2)
    assert sla_credit(estate, uptime_percent=uptime, monthly_revenue=1000).credit_share == 0.10
    uptime = uptime_percent(period_minutes=43_200, downtime_minutes=43.21)
    assert sla_credit(estate, uptime_percent=uptime, monthly_revenue=1000).credit_share == 0.25


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        ({"period_minutes": 0}, "period_minutes", "must be greater than 0 (got 0)"),
        ({"period_minutes": -10}, "period_minutes", "must be greater than 0"),
        ({"period_minutes": math.nan}, "period_minutes", "must be a finite number"),
        ({"downtime_minutes": -1}, "downtime_minutes", "must be between 0 and period_minutes 100 (got -1)"),
        ({"downtime_minutes": 101}, "downtime_minutes", "must be between 0 and period_minutes 100 (got 101)"),
        ({"downtime_minutes": math.inf}, "downtime_minutes", "must be a finite number"),
        ({"downtime_minutes": "5"}, "downtime_minutes", "must be a number"),
    ],
)
def test_uptime_percent_rejects_bad_input(kwargs: dict[str, Any], field: str, reason: str) -> None:
    arguments = {"period_minutes": 100, "downtime_minutes": 5, **kwargs}
    with pytest.raises(IncidentInputError) as info:
        uptime_percent(**arguments)
    assert info.value.field == field
    assert reason in info.value.reason
