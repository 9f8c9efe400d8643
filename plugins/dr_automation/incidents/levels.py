"""Incident levels (the seed's disaster categories) and the classifier that picks one.

Every threshold comes from the estate's `incident_levels` section, never from literals, so another
company's estate file changes the classification without a code change. Pure Python: the notifiers,
the failover DAGs and the UI all call this, some at DAG-parse time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate

# Two shares closer than this count as equal, so a share computed as 0.1 + 0.15 (0.25000000000000006)
# sits exactly on the 25 % boundary instead of tipping over it because of binary floating point.
SHARE_EPSILON = 1e-9


class IncidentInputError(ValueError):
    """A caller passed a bad argument; the message names the field and the reason, like the config errors."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class IncidentLevel:
    level: int
    name: str
    max_infrastructure_share: float
    rto_minutes: int
    rpo_minutes: int
    multi_region_or_security: bool = False

    @property
    def label(self) -> str:
        """`Level 3 (critical)`: how messages and the UI name a level."""
        return f"Level {self.level} ({self.name})"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def require_int(field: str, value: Any) -> int:
    """An int that is not a bool (True would otherwise silently mean level 1)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise IncidentInputError(field, f"must be an integer (got {_describe(value)})")
    return value


def require_number(field: str, value: Any) -> float:
    """A finite real number (bools and numeric strings are refused: they are caller bugs)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IncidentInputError(field, f"must be a number (got {_describe(value)})")
    number = float(value)
    if not math.isfinite(number):
        raise IncidentInputError(field, f"must be a finite number (got {value})")
    return number


def require_share(field: str, value: Any) -> float:
    share = require_number(field, value)
    if not 0.0 <= share <= 1.0:
        raise IncidentInputError(field, f"must be a share between 0 and 1 (got {value})")
    return share


def incident_levels(estate: Estate) -> list[IncidentLevel]:
    """All levels of the estate, lowest first."""
    levels = [
        IncidentLevel(
            level=int(item["level"]),
            name=str(item["name"]),
            max_infrastructure_share=float(item["max_infrastructure_share"]),
            rto_minutes=int(item["rto_minutes"]),
            rpo_minutes=int(item["rpo_minutes"]),
            multi_region_or_security=bool(item.get("multi_region_or_security", False)),
        )
        for item in estate.section("incident_levels")
    ]
    return sorted(levels, key=lambda lv: lv.level)


def incident_level(estate: Estate, level: int) -> IncidentLevel:
    """The level's definition; an unknown level is a caller error naming the defined ones."""
    number = require_int("level", level)
    levels = incident_levels(estate)
    for candidate in levels:
        if candidate.level == number:
            return candidate
    known = ", ".join(str(lv.level) for lv in levels)
    raise IncidentInputError("level", f"unknown incident level {number} (levels: {known})")


def _above(share: float, threshold: float) -> bool:
    return share > threshold and not math.isclose(share, threshold, rel_tol=0.0, abs_tol=SHARE_EPSILON)


def _at_least(share: float, threshold: float) -> bool:
    return share >= threshold or math.isclose(share, threshold, rel_tol=0.0, abs_tol=SHARE_EPSILON)


def classify(
    estate: Estate,
    *,
    infrastructure_share: float,
    regions_affected: int = 0,
    security_incident: bool = False,
) -> IncidentLevel:
    """Pick the incident level for what is known about an incident.

    `infrastructure_share` is the share (0..1) of infrastructure affected; `regions_affected` counts
    regions that failed completely. Rules, first match wins (L1 and L2 are level 1's and level 2's
    `max_infrastructure_share`, 0.05 and 0.25 for LeanVibe):

    - a security incident, or two or more regions down -> level 4 (catastrophic);
    - one region down (a complete regional failure), or share > L2 -> level 3 (critical);
    - share >= L1 -> level 2 (major);
    - otherwise -> level 1 (minor).

    Boundaries: "less than 5 %" is minor, so exactly 5 % is already major; "5-25 %" is major
    inclusive, so exactly 25 % is still major and anything above it is critical. Shares within
    SHARE_EPSILON of a threshold count as exactly on it.
    """
    share = require_share("infrastructure_share", infrastructure_share)
    regions = require_int("regions_affected", regions_affected)
    region_count = len(estate.regions)
    if not 0 <= regions <= region_count:
        raise IncidentInputError(
            "regions_affected",
            f"must be between 0 and the number of regions in the estate, {region_count} (got {regions})",
        )
    if not isinstance(security_incident, bool):
        raise IncidentInputError(
            "security_incident", f"must be true or false (got {_describe(security_incident)})"
        )
    minor, major = incident_level(estate, 1), incident_level(estate, 2)
    if security_incident or regions >= 2:
        return incident_level(estate, 4)
    if regions == 1 or _above(share, major.max_infrastructure_share):
        return incident_level(estate, 3)
    if _at_least(share, minor.max_infrastructure_share):
        return major
    return minor
