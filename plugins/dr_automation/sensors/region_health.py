"""The region health monitor's sensor: waits in the triggerer until the serving region fails.

`execute()` reads which region serves now (Route 53 control plane), runs ONE monitoring cycle itself
(check once before deferring: a retried task whose history already holds two failures may fire at
once, and Airflow 3.3 mishandles triggers that fire right after the deferral, apache/airflow#72716),
then defers to `RegionHealthTrigger` with the cycle's state handed over. `execute_complete` returns
the trigger's evidence payload, or raises when the monitor itself broke.

The monitor run id is the task instance's dag/run/task ids, NOT the try number: a retry continues
the same count (from the history table) instead of starting over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from dr_automation.health import ALL_REGIONS_DOWN, FAILOVER_NEEDED, ROTATE
from dr_automation.triggers.region_health import DEFAULT_MAX_RUN_SECONDS, RegionHealthTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

FIRED = (FAILOVER_NEEDED, ALL_REGIONS_DOWN, ROTATE)


class RegionHealthSensor(BaseSensorOperator):
    """Wait until the serving region fails `health.consecutive_failures` checks in a row.

    Returns the evidence payload (every region's recent cycles, checks, scores and counters) with
    ``kind`` ``failover_needed``, ``all_regions_down`` or ``rotate``.
    """

    template_fields: Sequence[str] = ("estate_path", "monitor_id")

    def __init__(
        self,
        *,
        estate_path: str | None = None,
        monitor_id: str | None = None,
        max_run_seconds: float = DEFAULT_MAX_RUN_SECONDS,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", max_run_seconds * 2 + 3600)
        super().__init__(**kwargs)
        self.estate_path = estate_path
        self.monitor_id = monitor_id
        self.max_run_seconds = float(max_run_seconds)
        self.deferrable = deferrable
        self._handover: dict[str, Any] | None = None

    def _monitor_id(self, context: Context) -> str:
        if self.monitor_id:
            return str(self.monitor_id)
        ti = context["ti"]
        suffix = f"/{ti.map_index}" if getattr(ti, "map_index", -1) not in (None, -1) else ""
        return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}{suffix}"

    def trigger_kwargs(self, context: Context) -> dict[str, Any]:
        """The trigger's kwargs from the estate as it is NOW, watching the region that serves now."""
        from dr_automation.estate import load_estate
        from dr_automation.health.decision import monitor_kwargs
        from dr_automation.hooks.route53 import Route53Hook
        from dr_automation.route53_plan import routing_view

        estate = load_estate(self.estate_path)
        routing = routing_view(estate, Route53Hook(aws_conn_id=estate.connections["aws"]))
        if routing["note"]:
            self.log.warning("%s", routing["note"])
        self.log.info("Traffic is served by %s (%s routing)", routing["serving_region"], routing["mode"])
        return monitor_kwargs(
            estate,
            monitor_id=self._monitor_id(context),
            serving_region=routing["serving_region"],
            routing=routing,
            max_run_seconds=self.max_run_seconds,
        )

    def _one_cycle(self, kwargs: dict[str, Any]) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
        """One monitoring cycle here, an interval after the run's last one (a retry continues a run).

        Never skipped: the trigger's first cycle is then a full interval after the deferral, so even
        a run already at threshold - 1 never fires right after deferring (apache/airflow#72716).
        """
        from dr_automation.health.monitor import RegionHealthMonitor

        settings = RegionHealthTrigger(**kwargs).settings()

        async def once() -> tuple[str | None, dict[str, Any], dict[str, Any]]:
            monitor = RegionHealthMonitor(settings, log=self.log)
            try:
                await monitor.open()
                await asyncio.sleep(monitor.seconds_until_due())
                await monitor.run_cycle()
                kind = monitor.fire_kind()
                payload = monitor.payload(kind, routing=kwargs.get("routing")) if kind else {}
                return kind, payload, monitor.snapshot()
            finally:
                await monitor.close()

        return asyncio.run(once())

    def poke(self, context: Context) -> PokeReturnValue:
        kwargs = self.trigger_kwargs(context)
        self.poke_interval = float(kwargs["check_interval"])
        kind, payload, snapshot = self._one_cycle(kwargs)
        self._handover = {**kwargs, "initial_state": snapshot}
        return PokeReturnValue(is_done=kind is not None, xcom_value=payload or None)

    def execute(self, context: Context) -> Any:
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        if not self.deferrable:  # poke/reschedule mode: the history carries the counts between pokes
            return super().execute(context)
        kwargs = self._handover or self.trigger_kwargs(context)
        interval = float(kwargs["check_interval"])
        self.defer(
            trigger=RegionHealthTrigger(**kwargs),
            method_name="execute_complete",
            # A safety net only: the trigger ends the wait itself (rotate) after max_run_seconds.
            timeout=timedelta(seconds=self.max_run_seconds + 20 * interval + 600),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("kind") not in FIRED:
            message = (event or {}).get("message", "no event")
            raise AirflowException(f"region health monitor failed: {message}")
        self.log.info(
            "Region health monitor: %s (serving %s, cycle %s)",
            event["kind"],
            event.get("serving_region"),
            event.get("cycle"),
        )
        return event
