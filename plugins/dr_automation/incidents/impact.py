"""Business impact of an outage: revenue lost per customer tier and the SLA credit owed.

Money is computed in Decimal from each float's shortest repr (so 0.35 means 0.35, not
0.34999999999999997...) and rounded to cents half-up only at the end: the seed's example
(2 h, everyone affected: 45 + 31.5 + 15) must come out as exactly 91.5, not 91.49999999999999.
Rates, the customer mix, the SLA target and the credit schedule all come from `business_impact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from dr_automation.incidents.levels import IncidentInputError, require_number, require_share

if TYPE_CHECKING:
    from dr_automation.estate import Estate

CENT = Decimal("0.01")
# uptime_percent() keeps this many decimals, rounding DOWN: a threshold such as 99.9 is never crossed
# upwards by rounding, so the customer never loses a credit to arithmetic noise.
UPTIME_QUANTUM = Decimal("1e-10")


def _dec(value: float | int) -> Decimal:
    return Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class RevenueLoss:
    """Revenue lost by an outage. `total` is the sum of the (cent-rounded) per-tier amounts."""

    total: float
    by_tier: Mapping[str, float] = field(hash=False)
    outage_hours: float
    affected_share: float
    currency: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_tier": dict(self.by_tier),
            "outage_hours": self.outage_hours,
            "affected_share": self.affected_share,
            "currency": self.currency,
        }


def revenue_loss(estate: Estate, *, outage_hours: float, affected_share: float = 1.0) -> RevenueLoss:
    """Per tier: hourly_revenue * customer_distribution * outage_hours * affected_share."""
    hours = require_number("outage_hours", outage_hours)
    if hours < 0:
        raise IncidentInputError("outage_hours", f"must not be negative (got {outage_hours})")
    share = require_share("affected_share", affected_share)
    impact = estate.section("business_impact")
    rates, mix = impact["hourly_revenue"], impact["customer_distribution"]
    scale = _dec(hours) * _dec(share)
    by_tier = {tier: _money(_dec(rate) * _dec(mix[tier]) * scale) for tier, rate in rates.items()}
    total = sum(by_tier.values(), Decimal(0))
    return RevenueLoss(
        total=float(total),
        by_tier=MappingProxyType({tier: float(amount) for tier, amount in by_tier.items()}),
        outage_hours=hours,
        affected_share=share,
        currency=str(impact["currency"]),
    )


@dataclass(frozen=True)
class SlaCredit:
    """The credit owed for a month. `threshold_percent` is the schedule line that applied (None: none)."""

    uptime_percent: float
    credit_share: float
    credit_amount: float
    sla_target_percent: float
    currency: str
    threshold_percent: float | None = None

    @property
    def sla_met(self) -> bool:
        return self.uptime_percent >= self.sla_target_percent

    def as_dict(self) -> dict[str, Any]:
        return {
            "uptime_percent": self.uptime_percent,
            "credit_share": self.credit_share,
            "credit_amount": self.credit_amount,
            "sla_target_percent": self.sla_target_percent,
            "currency": self.currency,
            "threshold_percent": self.threshold_percent,
            "sla_met": self.sla_met,
        }


def sla_credit(estate: Estate, *, uptime_percent: float, monthly_revenue: float) -> SlaCredit:
    """The largest credit whose `below_uptime_percent` the uptime is strictly below.

    With LeanVibe's schedule: 99.95 and above -> 0; [99.90, 99.95) -> 10 %; [99.50, 99.90) -> 25 %;
    [99.00, 99.50) -> 50 %; below 99.00 -> 100 %. Exactly on a threshold is NOT below it.
    """
    uptime = require_number("uptime_percent", uptime_percent)
    if not 0.0 <= uptime <= 100.0:
        raise IncidentInputError("uptime_percent", f"must be between 0 and 100 (got {uptime_percent})")
    revenue = require_number("monthly_revenue", monthly_revenue)
    if revenue < 0:
        raise IncidentInputError("monthly_revenue", f"must not be negative (got {monthly_revenue})")
    impact = estate.section("business_impact")
    share, threshold = Decimal(0), None
    for line in impact["sla_credits"]:
        below = _dec(line["below_uptime_percent"])
        credit = _dec(line["credit"])
        if _dec(uptime) < below and credit > share:
            share, threshold = credit, float(below)
    return SlaCredit(
        uptime_percent=uptime,
        credit_share=float(share),
        credit_amount=float(_money(_dec(revenue) * share)),
        sla_target_percent=float(impact["sla_target_percent"]),
        currency=str(impact["currency"]),
        threshold_percent=threshold,
    )


def uptime_percent(*, period_minutes: float, downtime_minutes: float) -> float:
    """Uptime of a period in percent, exact for decimal inputs (43200 min, 43.2 down -> 99.9)."""
    period = require_number("period_minutes", period_minutes)
    if period <= 0:
        raise IncidentInputError("period_minutes", f"must be greater than 0 (got {period_minutes})")
    down = require_number("downtime_minutes", downtime_minutes)
    if not 0 <= down <= period:
        raise IncidentInputError(
            "downtime_minutes",
            f"must be between 0 and period_minutes {period_minutes} (got {downtime_minutes})",
        )
    value = (_dec(period) - _dec(down)) / _dec(period) * 100
    return float(value.quantize(UPTIME_QUANTUM, rounding=ROUND_FLOOR))
