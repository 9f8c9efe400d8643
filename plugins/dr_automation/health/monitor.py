"""One monitoring cycle over every region, and the monitor's memory between cycles.

`RegionHealthMonitor` is what the trigger (and the sensor's first check) runs: it keeps one HTTP
client and one CloudWatch client per region open across cycles, runs every region's checks
concurrently, folds them into per-region counters (`scoring`), persists the cycle (`history`) and
builds the evidence payload. On (re)start it reloads its counters from the history of its monitor
run, so a triggerer restart continues the count instead of starting over or counting twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dr_automation.health.checks import (
    DATABASE,
    ERROR,
    FAILED,
    INFRASTRUCTURE,
    CheckResult,
    api_timeout,
    check_api,
    check_database,
    check_infrastructure,
    metric_window,
)
from dr_automation.health.scoring import RegionState, apply_cycle, fire_kind, iso

THRESHOLD_KEYS = ("error_rate", "response_time_seconds", "availability")


@dataclass(frozen=True)
class RegionSpec:
    """A region as the monitor needs it: plain values only (they travel in trigger kwargs)."""

    name: str
    role: str
    url: str
    database_conn_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "url": self.url, "database_conn_id": self.database_conn_id}


@dataclass(frozen=True)
class MonitorSettings:
    """Everything one monitor run needs, validated (bad values name the field and the reason)."""

    monitor_id: str
    serving_region: str
    regions: tuple[RegionSpec, ...]
    thresholds: Mapping[str, float]
    check_interval: float = 30.0
    consecutive_failures: int = 3
    healthy_score: float = 0.8
    metrics_namespace: str = "LeanVibe/API"
    metrics_period_seconds: float = 60.0
    aws_conn_id: str | None = None
    history_conn_id: str | None = None
    evidence_cycles: int = 0

    def __post_init__(self) -> None:
        names = [r.name for r in self.regions]
        if not self.monitor_id:
            raise ValueError("monitor_id: must not be empty")
        if not names:
            raise ValueError("regions: at least one region is needed")
        if self.serving_region not in names:
            raise ValueError(f"serving_region: {self.serving_region!r} is not one of the regions {names}")
        missing = [k for k in THRESHOLD_KEYS if k not in self.thresholds]
        if missing:
            raise ValueError(f"thresholds: missing {missing}")
        if not self.check_interval > 0:
            raise ValueError(f"check_interval: must be > 0 seconds (got {self.check_interval})")
        if isinstance(self.consecutive_failures, bool) or int(self.consecutive_failures) < 1:
            raise ValueError(f"consecutive_failures: must be >= 1 (got {self.consecutive_failures})")
        if not 0 < self.healthy_score <= 1:
            raise ValueError(f"healthy_score: must be in (0, 1] (got {self.healthy_score})")
        if not self.metrics_period_seconds > 0:
            raise ValueError(f"metrics_period_seconds: must be > 0 (got {self.metrics_period_seconds})")

    @classmethod
    def from_kwargs(cls, *, regions: Mapping[str, Mapping[str, Any]], **kwargs: Any) -> MonitorSettings:
        specs = tuple(
            RegionSpec(
                name=name,
                role=str(spec.get("role", "")),
                url=str(spec["url"]),
                database_conn_id=spec.get("database_conn_id"),
            )
            for name, spec in regions.items()
        )
        return cls(regions=specs, **kwargs)

    @property
    def response_time(self) -> float:
        return float(self.thresholds["response_time_seconds"])

    @property
    def database_timeout(self) -> float:
        """SELECT 1 is instant on a healthy database: a few seconds is plenty, and keeps cycles short."""
        return max(1.0, min(5.0, self.response_time))

    @property
    def metrics_window(self) -> float:
        """Judge the last two metric periods (at least one check interval): recent, not instantaneous."""
        return max(2.0 * self.metrics_period_seconds, self.check_interval)

    @property
    def keep(self) -> int:
        """Cycles of evidence kept per region (at least the failure threshold)."""
        return max(int(self.evidence_cycles or 0), int(self.consecutive_failures), 3)


async def _bounded(coro: Any, name: str, timeout: float, status: str) -> CheckResult:
    """A check that cannot hang the cycle, nor kill the monitor with an unexpected exception."""
    try:
        return await asyncio.wait_for(coro, timeout=timeout)
    except TimeoutError:
        return CheckResult(name, status, None, None, f"check did not finish within {timeout:.1f}s")
    except Exception as exc:
        return CheckResult(name, ERROR, None, None, f"check crashed: {type(exc).__name__}")


class RegionHealthMonitor:
    """Checks every region once per `run_cycle()`; remembers counters and recent evidence."""

    def __init__(self, settings: MonitorSettings, *, history: Any = None, log: Any = None) -> None:
        self.settings = settings
        if history is None and settings.history_conn_id:
            from dr_automation.health.history import HealthHistory

            history = HealthHistory(settings.history_conn_id)
        self.history = history
        self.log = log or logging.getLogger(__name__)
        self.states: dict[str, RegionState] = {r.name: RegionState(r.name) for r in settings.regions}
        self.cycle = 0
        self.last_cycle_at: float | None = None
        self.restored_from: str | None = None
        self._conflict = False
        self._stack: contextlib.AsyncExitStack | None = None
        self._http: Any = None
        self._cloudwatch: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    async def open(self, initial_state: Mapping[str, Any] | None = None) -> None:
        """Open the clients (once for the whole run) and restore the run's counters."""
        import httpx

        self._stack = contextlib.AsyncExitStack()
        # No keep-alive: each probe opens its own connection, like Route 53's checkers, so a dropped
        # pooled connection never fails a healthy region. No proxies from the environment either.
        self._http = await self._stack.enter_async_context(
            httpx.AsyncClient(
                limits=httpx.Limits(max_keepalive_connections=0), follow_redirects=False, trust_env=False
            )
        )
        for spec in self.settings.regions:
            await self._open_cloudwatch(spec.name)
        await self.restore(initial_state)

    async def _open_cloudwatch(self, region: str) -> Any:
        """The region's OWN CloudWatch (apps publish where they run); None (retried next cycle) on error."""
        if self._stack is None:
            return None
        try:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
            from botocore.config import Config

            hook = AwsGenericHook(
                aws_conn_id=self.settings.aws_conn_id,
                client_type="cloudwatch",
                region_name=region,
                config=Config(
                    connect_timeout=3,
                    read_timeout=5,
                    retries={"max_attempts": 2, "mode": "standard"},
                ),
            )
            client = await self._stack.enter_async_context(await hook.get_async_conn())
        except Exception as exc:
            from dr_toolbox.redact import redact

            self.log.warning("CloudWatch client for %s unavailable: %s", region, redact(str(exc)))
            return None
        self._cloudwatch[region] = client
        return client

    async def close(self) -> None:
        if self.history is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.history.close)
        if self._stack is not None:
            stack, self._stack = self._stack, None
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def __aenter__(self) -> RegionHealthMonitor:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- state -------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The monitor's memory as plain values (the shape HealthHistory.load returns)."""
        return {
            "cycle": self.cycle,
            "checked_at": self.last_cycle_at,
            "regions": {
                name: {"state": state.to_state(), "recent": list(state.recent)}
                for name, state in self.states.items()
            },
        }

    async def restore(self, initial_state: Mapping[str, Any] | None = None) -> None:
        """Continue from the newest of: the run's history, and the state handed over at defer time."""
        stored = None
        if self.history is not None:
            try:
                stored = await asyncio.to_thread(
                    self.history.load, self.settings.monitor_id, cycles=self.settings.keep
                )
            except Exception as exc:
                self.log.warning(
                    "health history unavailable, counters start from the handed-over state: %s", exc
                )
        candidates = [
            (source, snap)
            for source, snap in (("history", stored), ("handover", initial_state))
            if snap and snap.get("cycle")
        ]
        if not candidates:
            return
        source, snap = max(candidates, key=lambda item: int(item[1]["cycle"]))
        self._apply_snapshot(snap)
        self.restored_from = source
        self.log.info(
            "Monitor %s continues after cycle %s (from %s): %s",
            self.settings.monitor_id,
            self.cycle,
            source,
            {r: s.consecutive_failures for r, s in self.states.items()},
        )

    def _apply_snapshot(self, snap: Mapping[str, Any]) -> None:
        self.cycle = int(snap["cycle"])
        checked_at = snap.get("checked_at")
        self.last_cycle_at = float(checked_at) if checked_at is not None else None
        regions = snap.get("regions") or {}
        for name in self.states:
            entry = regions.get(name)
            if entry:
                self.states[name] = RegionState.from_state(
                    name, entry.get("state") or {}, list(entry.get("recent") or [])[-self.settings.keep :]
                )

    def seconds_until_due(self, now: float | None = None) -> float:
        if self.last_cycle_at is None:
            return 0.0
        now = time.time() if now is None else now
        return max(0.0, self.last_cycle_at + self.settings.check_interval - now)

    # -- one cycle -------------------------------------------------------------------------------
    async def _check_region(self, spec: RegionSpec, at: float) -> list[CheckResult]:
        s = self.settings
        state = self.states[spec.name]
        window = metric_window(
            at,
            window_seconds=s.metrics_window,
            metrics_period=s.metrics_period_seconds,
            not_before=state.metrics_not_before(s.metrics_period_seconds),
        )
        cloudwatch = self._cloudwatch.get(spec.name) or await self._open_cloudwatch(spec.name)
        checks = await asyncio.gather(
            _bounded(
                check_api(self._http, spec.url, max_seconds=s.response_time),
                "api",
                api_timeout(s.response_time) + 2.0,
                FAILED,
            ),
            _bounded(
                check_database(spec.database_conn_id, timeout=s.database_timeout),
                DATABASE,
                3 * s.database_timeout,
                FAILED,
            ),
            _bounded(
                check_infrastructure(
                    cloudwatch,
                    spec.name,
                    namespace=s.metrics_namespace,
                    thresholds=s.thresholds,
                    window=window,
                    skipped_reason=""
                    if window
                    else "waiting for a whole metric period after the API recovered",
                ),
                INFRASTRUCTURE,
                12.0,
                ERROR,
            ),
        )
        return list(checks)

    async def run_cycle(self) -> dict[str, Any]:
        """Check every region (concurrently), update counters, persist; returns the cycle's summary."""
        if self._http is None:
            raise RuntimeError("open() the monitor before running cycles")
        s = self.settings
        at = time.time()
        cycle = self.cycle + 1
        results = await asyncio.gather(*(self._check_region(spec, at) for spec in s.regions))
        records = {
            spec.name: apply_cycle(
                self.states[spec.name],
                cycle=cycle,
                at=at,
                checks=checks,
                healthy_score=s.healthy_score,
                keep=s.keep,
            )
            for spec, checks in zip(s.regions, results, strict=True)
        }
        self.cycle, self.last_cycle_at = cycle, at
        await self._persist(cycle, at, records)
        summary = {
            "cycle": cycle,
            "at": iso(at),
            "regions": {
                name: {
                    "score": rec["score"],
                    "healthy": rec["healthy"],
                    "consecutive_failures": rec["consecutive_failures"],
                }
                for name, rec in records.items()
            },
        }
        self.log.info("Health cycle %s: %s", cycle, self.describe(summary))
        return summary

    def describe(self, summary: Mapping[str, Any]) -> str:
        parts = []
        for name, rec in summary["regions"].items():
            score = "n/a" if rec["score"] is None else f"{rec['score']:.2f}"
            state = "healthy" if rec["healthy"] else f"UNHEALTHY x{rec['consecutive_failures']}"
            serving = " (serving)" if name == self.settings.serving_region else ""
            parts.append(f"{name}{serving} {score} {state}")
        return " | ".join(parts)

    async def _persist(self, cycle: int, at: float, records: Mapping[str, Mapping[str, Any]]) -> None:
        if self.history is None:
            return
        roles = {r.name: r.role for r in self.settings.regions}
        rows = [
            {
                "region": name,
                "role": roles[name],
                "serving": name == self.settings.serving_region,
                "score": rec["score"],
                "healthy": rec["healthy"],
                "consecutive_failures": rec["consecutive_failures"],
                "checks": rec["checks"],
                "state": self.states[name].to_state(),
            }
            for name, rec in records.items()
        ]
        try:
            inserted = await asyncio.to_thread(
                self.history.record_cycle,
                self.settings.monitor_id,
                cycle,
                datetime.fromtimestamp(at, UTC),
                rows,
            )
        except Exception as exc:  # monitoring goes on without its history; the counters live in memory
            self.log.warning("health history not written for cycle %s: %s", cycle, exc)
            return
        if rows and inserted == 0:
            # Another instance of this monitor run recorded this cycle first (a triggerer hand-over):
            # take its view and leave the decision to it, so the same incident never fires twice.
            self.log.warning(
                "cycle %s of %s was already recorded: reloading", cycle, self.settings.monitor_id
            )
            self._conflict = True
            await self.restore()

    # -- decision and evidence ---------------------------------------------------------------------
    def fire_kind(self) -> str | None:
        if self._conflict:
            self._conflict = False
            return None
        return fire_kind(self.states, self.settings.serving_region, int(self.settings.consecutive_failures))

    def payload(self, kind: str, **extra: Any) -> dict[str, Any]:
        """The evidence: every region's last cycles (every check), scores and counters."""
        s = self.settings
        specs = {r.name: r for r in s.regions}
        return {
            "kind": kind,
            "monitor_id": s.monitor_id,
            "serving_region": s.serving_region,
            "cycle": self.cycle,
            "detected_at": iso(self.last_cycle_at) if self.last_cycle_at else None,
            "check_interval": s.check_interval,
            "consecutive_failures_threshold": int(s.consecutive_failures),
            "healthy_score": s.healthy_score,
            "thresholds": dict(s.thresholds),
            "healthy_regions": sorted(n for n, st in self.states.items() if st.healthy),
            "unhealthy_regions": sorted(n for n, st in self.states.items() if st.healthy is False),
            "regions": {
                name: {
                    "role": specs[name].role,
                    "url": specs[name].url,
                    "healthy": st.healthy,
                    "score": st.recent[-1]["score"] if st.recent else None,
                    "consecutive_failures": st.consecutive_failures,
                    "failing_since": iso(st.failing_since) if st.failing_since else None,
                    "cycles": list(st.recent),
                }
                for name, st in self.states.items()
            },
            **extra,
        }
