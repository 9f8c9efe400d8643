"""The region health monitor's trigger: checks every region each interval, in the triggerer.

Fires ONE event and stops:
- ``failover_needed``: the serving region failed `consecutive_failures` cycles in a row and another
  region was healthy in the same cycle;
- ``all_regions_down``: the serving region reached the threshold and no region was healthy;
- ``rotate``: the run has watched for `max_run_seconds` and the serving region is healthy now, so the
  DAG run ends quietly and the next run (schedule @continuous) starts fresh (bounded runs, bounded
  evidence, and a fresh look at which region serves);
- ``error``: the monitor itself broke (the sensor raises; the task retries and continues counting).

Kwargs are plain values (the estate is resolved by the sensor). Clients and counters are rebuilt in
`run()`: counters from the monitor run's history, so a triggerer restart continues the count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dr_automation.health import ERROR, ROTATE
from dr_automation.health.monitor import MonitorSettings, RegionHealthMonitor

DEFAULT_MAX_RUN_SECONDS = 6 * 3600.0


class RegionHealthTrigger(BaseTrigger):
    """Waits, checking every region every `check_interval` seconds, until the serving region fails."""

    def __init__(
        self,
        *,
        monitor_id: str,
        serving_region: str,
        regions: Mapping[str, Mapping[str, Any]],
        thresholds: Mapping[str, float],
        check_interval: float = 30.0,
        consecutive_failures: int = 3,
        healthy_score: float = 0.8,
        metrics_namespace: str = "LeanVibe/API",
        metrics_period_seconds: float = 60.0,
        aws_conn_id: str | None = None,
        history_conn_id: str | None = None,
        evidence_cycles: int = 0,
        started_at: float | None = None,
        max_run_seconds: float = DEFAULT_MAX_RUN_SECONDS,
        initial_state: Mapping[str, Any] | None = None,
        routing: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.monitor_id = monitor_id
        self.serving_region = serving_region
        self.regions = {name: dict(spec) for name, spec in regions.items()}
        self.thresholds = {k: float(v) for k, v in thresholds.items()}
        self.check_interval = float(check_interval)
        self.consecutive_failures = int(consecutive_failures)
        self.healthy_score = float(healthy_score)
        self.metrics_namespace = metrics_namespace
        self.metrics_period_seconds = float(metrics_period_seconds)
        self.aws_conn_id = aws_conn_id
        self.history_conn_id = history_conn_id
        self.evidence_cycles = int(evidence_cycles)
        self.started_at = float(started_at if started_at is not None else time.time())
        self.max_run_seconds = float(max_run_seconds)
        self.initial_state = dict(initial_state) if initial_state else None
        self.routing = dict(routing) if routing else None
        self.settings()  # fail at defer time, in the task, not later in the triggerer

    def settings(self) -> MonitorSettings:
        return MonitorSettings.from_kwargs(
            monitor_id=self.monitor_id,
            serving_region=self.serving_region,
            regions=self.regions,
            thresholds=self.thresholds,
            check_interval=self.check_interval,
            consecutive_failures=self.consecutive_failures,
            healthy_score=self.healthy_score,
            metrics_namespace=self.metrics_namespace,
            metrics_period_seconds=self.metrics_period_seconds,
            aws_conn_id=self.aws_conn_id,
            history_conn_id=self.history_conn_id,
            evidence_cycles=self.evidence_cycles,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "monitor_id": self.monitor_id,
                "serving_region": self.serving_region,
                "regions": self.regions,
                "thresholds": self.thresholds,
                "check_interval": self.check_interval,
                "consecutive_failures": self.consecutive_failures,
                "healthy_score": self.healthy_score,
                "metrics_namespace": self.metrics_namespace,
                "metrics_period_seconds": self.metrics_period_seconds,
                "aws_conn_id": self.aws_conn_id,
                "history_conn_id": self.history_conn_id,
                "evidence_cycles": self.evidence_cycles,
                "started_at": self.started_at,
                "max_run_seconds": self.max_run_seconds,
                "initial_state": self.initial_state,
                "routing": self.routing,
            },
        )

    def _rotation_due(self, monitor: RegionHealthMonitor) -> bool:
        serving = monitor.states[self.serving_region]
        return time.time() - self.started_at >= self.max_run_seconds and serving.consecutive_failures == 0

    def _serving_now(self) -> str | None:
        """Which region serves now, per Route 53 (None when it cannot be read: keep watching)."""
        try:
            from dr_automation.estate import load_estate
            from dr_automation.hooks.route53 import Route53Hook
            from dr_automation.route53_plan import routing_view

            estate = load_estate()
            return routing_view(estate, Route53Hook(aws_conn_id=self.aws_conn_id))["serving_region"]
        except Exception as exc:
            self.log.warning(
                "Region health monitor %s: cannot read the serving region: %s", self.monitor_id, exc
            )
            return None

    async def _watch(self, monitor: RegionHealthMonitor) -> TriggerEvent:
        await monitor.open(self.initial_state)
        while True:
            await asyncio.sleep(monitor.seconds_until_due())
            await monitor.run_cycle()
            kind = monitor.fire_kind()
            if kind is None and self._rotation_due(monitor):
                kind = ROTATE
            if kind is None and self.aws_conn_id:
                # Traffic moved under us (a failback, a manual failover): end this run so the next
                # one watches the region that serves now, instead of a region that no longer does.
                now = await asyncio.to_thread(self._serving_now)
                if now is not None and now != self.serving_region:
                    self.log.info("Serving region changed %s -> %s: rotating", self.serving_region, now)
                    kind = ROTATE
            if kind is not None:
                self.log.info("Region health monitor %s fires %s", self.monitor_id, kind)
                return TriggerEvent(monitor.payload(kind, routing=self.routing))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        monitor = RegionHealthMonitor(self.settings(), log=self.log)
        try:
            event = await self._watch(monitor)
        except Exception as exc:  # CancelledError (triggerer shutdown) is not caught: it restarts us
            from dr_toolbox.redact import redact

            self.log.exception("Region health monitor %s broke", self.monitor_id)
            event = TriggerEvent(
                {
                    "kind": ERROR,
                    "monitor_id": self.monitor_id,
                    "message": redact(f"{type(exc).__name__}: {exc}")[:1000],
                }
            )
        finally:
            # Before the event goes out: the consumer may never resume this generator afterwards.
            await monitor.close()
        yield event
