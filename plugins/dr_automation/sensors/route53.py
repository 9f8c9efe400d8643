"""Sensors for Route 53 change propagation and for what DNS resolvers answer.

Both check once before deferring: a change already INSYNC (or an answer already right) finishes
without a trip through the triggerer, which also keeps clear of Airflow 3.3's stale defer-exit race
for triggers that fire instantly (apache/airflow#72716).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.providers.common.compat.sdk import AirflowException
from airflow.sdk import BaseSensorOperator

from dr_automation.hooks.route53 import ROUTE53_REGION, Route53Hook
from dr_automation.triggers.route53 import DnsAnswerTrigger, Route53ChangeInsyncTrigger, answers_match

if TYPE_CHECKING:
    from airflow.sdk import Context


class Route53ChangeInsyncSensor(AwsBaseSensor[Route53Hook]):
    """Wait until a Route 53 change is INSYNC. A change id of None (nothing changed) is done at once."""

    aws_hook_class = Route53Hook
    template_fields: Sequence[str] = aws_template_fields("change_id")

    def __init__(
        self,
        *,
        change_id: str | None,
        deferrable: bool = True,
        waiter_delay: int = 5,
        waiter_max_attempts: int = 60,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("region_name", ROUTE53_REGION)
        super().__init__(**kwargs)
        self.change_id = change_id
        self.deferrable = deferrable
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def poke(self, context: Context) -> bool:
        if not self.change_id or self.change_id == "None":
            return True
        status = self.hook.get_change_status(self.change_id)
        self.log.info("Route 53 change %s is %s", self.change_id, status)
        return status == "INSYNC"

    def execute(self, context: Context) -> Any:
        if self.poke(context):
            return self.change_id
        if not self.deferrable:
            return super().execute(context)
        self.defer(
            trigger=Route53ChangeInsyncTrigger(
                change_id=self.change_id,
                waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts,
                aws_conn_id=self.aws_conn_id,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str | None:
        if not event or event.get("status") != "success":
            raise AirflowException(f"Route 53 change {self.change_id} did not reach INSYNC: {event}")
        return self.change_id


class DnsAnswerSensor(BaseSensorOperator):
    """Wait until every nameserver answers `name` with exactly the `expected` addresses."""

    template_fields: Sequence[str] = ("name", "expected", "nameservers")

    def __init__(
        self,
        *,
        name: str,
        expected: Sequence[str] | str,
        nameservers: Sequence[str] | str,
        record_type: str = "A",
        consecutive: int = 2,
        check_interval: float = 1.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", check_interval)
        kwargs.setdefault("timeout", 300)
        super().__init__(**kwargs)
        self.name = name
        self.expected = expected
        self.nameservers = nameservers
        self.record_type = record_type
        self.consecutive = consecutive
        self.check_interval = check_interval
        self.deferrable = deferrable

    @staticmethod
    def _as_list(value: Sequence[str] | str) -> list[str]:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)

    def _answers(self) -> dict[str, list[str]]:
        import asyncio

        from dr_automation.triggers.route53 import resolve_async

        async def ask() -> list[list[str]]:
            return await asyncio.gather(
                *(
                    resolve_async(self.name, self.record_type, ns, 2.0)
                    for ns in self._as_list(self.nameservers)
                )
            )

        return dict(zip(self._as_list(self.nameservers), asyncio.run(ask()), strict=True))

    def poke(self, context: Context) -> bool:
        answers = self._answers()
        self.log.info("DNS %s answers %s (want %s)", self.name, answers, self._as_list(self.expected))
        return all(answers_match(a, self._as_list(self.expected)) for a in answers.values())

    def execute(self, context: Context) -> Any:
        # Already right? Confirm it `consecutive` times here rather than deferring for seconds.
        streak = 0
        while streak < self.consecutive and self.poke(context):
            streak += 1
            if streak < self.consecutive:
                time.sleep(self.check_interval)
        if streak >= self.consecutive:
            return {"status": "success", "name": self.name, "answers": self._answers()}
        if not self.deferrable:
            super().execute(context)
            return {"status": "success", "name": self.name, "answers": self._answers()}
        self.defer(
            trigger=DnsAnswerTrigger(
                name=self.name,
                expected=self._as_list(self.expected),
                nameservers=self._as_list(self.nameservers),
                record_type=self.record_type,
                poll_interval=self.check_interval,
                timeout=float(self.timeout),
                consecutive=self.consecutive,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout) + 30),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "success":
            raise AirflowException(f"DNS for {self.name} never answered {self.expected}: {event}")
        return event
