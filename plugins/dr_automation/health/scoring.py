"""Scores, consecutive-failure counters and the rule that fires a failover (pure Python).

- A region's score is passed / applicable checks (``no_data``, ``not_configured`` and ``error`` are
  not applicable); it is healthy when the score reaches the estate's ``health.healthy_score`` (0.8).
  With the seed's three checks any failed check makes a region unhealthy (2/3 < 0.8).
- Its counter goes up by one per unhealthy cycle and back to 0 on ONE healthy cycle (flapping never
  adds up to a failover).
- Metric lag: CloudWatch data points describe the period before their timestamp. When a region
  that gave no timely answer answers again, the metrics of that cycle (and of the next whole metric
  period) still describe the outage; they are left out (``no_data``) instead of keeping a recovered
  region unhealthy. Fast error answers (HTTP 5xx) do not reset this: an erroring region's metrics
  are exactly the evidence wanted.
- Fire rule: the serving region's counter reaches the threshold -> ``failover_needed`` when another
  region was healthy in the same cycle, else ``all_regions_down``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dr_automation.health import ALL_REGIONS_DOWN, FAILOVER_NEEDED
from dr_automation.health.checks import INFRASTRUCTURE, NO_DATA, CheckResult, api_unreachable

# Scores such as 4/5 land exactly on 0.8 only up to binary floating point.
_EPSILON = 1e-9


def score(checks: Sequence[CheckResult]) -> float | None:
    """passed / applicable checks; None when no check applies."""
    applicable = [c for c in checks if c.passed is not None]
    if not applicable:
        return None
    return sum(1 for c in applicable if c.passed) / len(applicable)


def is_healthy(value: float | None, healthy_score: float) -> bool:
    return value is not None and value + _EPSILON >= healthy_score


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@dataclass
class RegionState:
    """What the monitor remembers about one region between cycles (persisted with every cycle)."""

    region: str
    consecutive_failures: int = 0
    failing_since: float | None = None
    api_unreachable: bool = False
    api_ok_since: float | None = None
    healthy: bool | None = None
    recent: list[dict[str, Any]] = field(default_factory=list)

    def to_state(self) -> dict[str, Any]:
        return {
            "consecutive_failures": self.consecutive_failures,
            "failing_since": self.failing_since,
            "api_unreachable": self.api_unreachable,
            "api_ok_since": self.api_ok_since,
            "healthy": self.healthy,
        }

    @classmethod
    def from_state(
        cls, region: str, state: Mapping[str, Any], recent: Sequence[Mapping[str, Any]] = ()
    ) -> RegionState:
        return cls(
            region=region,
            consecutive_failures=int(state.get("consecutive_failures") or 0),
            failing_since=state.get("failing_since"),
            api_unreachable=bool(state.get("api_unreachable", False)),
            api_ok_since=state.get("api_ok_since"),
            healthy=state.get("healthy"),
            recent=[dict(r) for r in recent],
        )

    def metrics_not_before(self, metrics_period: float) -> float | None:
        """Metric data points older than this describe an outage the API has since recovered from."""
        return None if self.api_ok_since is None else self.api_ok_since + metrics_period


def apply_cycle(
    state: RegionState,
    *,
    cycle: int,
    at: float,
    checks: Sequence[CheckResult],
    healthy_score: float,
    keep: int,
) -> dict[str, Any]:
    """Fold one cycle's checks into the region's state; returns the cycle's record (evidence row)."""
    api = next((c for c in checks if c.name == "api"), None)
    recovered = api is not None and state.api_unreachable and api.passed is True
    if recovered:
        state.api_ok_since = at
        checks = [
            CheckResult(
                c.name,
                NO_DATA,
                c.value,
                c.threshold,
                "left out: the metrics still cover the outage the API just recovered from "
                f"(was {c.status}: {c.detail})",
            )
            if c.name == INFRASTRUCTURE
            else c
            for c in checks
        ]
    if api is not None:
        state.api_unreachable = api_unreachable(api)
        if state.api_unreachable:
            state.api_ok_since = None
    value = score(checks)
    healthy = is_healthy(value, healthy_score)
    state.healthy = healthy
    if healthy:
        state.consecutive_failures = 0
        state.failing_since = None
    else:
        state.consecutive_failures += 1
        if state.failing_since is None:
            state.failing_since = at
    record = {
        "cycle": cycle,
        "at": iso(at),
        "score": None if value is None else round(value, 4),
        "healthy": healthy,
        "consecutive_failures": state.consecutive_failures,
        "checks": [c.to_dict() for c in checks],
    }
    state.recent.append(record)
    del state.recent[:-keep]
    return record


def fire_kind(states: Mapping[str, RegionState], serving_region: str, threshold: int) -> str | None:
    """`failover_needed`, `all_regions_down` or None (keep watching)."""
    serving = states.get(serving_region)
    if serving is None or serving.consecutive_failures < threshold:
        return None
    others_healthy = any(s.healthy for r, s in states.items() if r != serving_region)
    return FAILOVER_NEEDED if others_healthy else ALL_REGIONS_DOWN
