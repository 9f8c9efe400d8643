"""Deferrable waits for DNS: a Route 53 change reaching INSYNC, and resolvers answering the target.

Triggers serialize only plain values and rebuild their clients in `run()`, like the Amazon
provider's, so they survive a triggerer restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from dr_automation.hooks.route53 import ROUTE53_REGION, Route53Hook


class Route53ChangeInsyncTrigger(AwsBaseWaiterTrigger):
    """Fires when a Route 53 change has propagated to every authoritative server (GetChange INSYNC)."""

    aws_hook_class = Route53Hook

    def __init__(
        self,
        *,
        change_id: str,
        waiter_delay: int = 5,
        waiter_max_attempts: int = 60,
        aws_conn_id: str | None = "aws_default",
        **kwargs: Any,
    ) -> None:
        kwargs.pop("region_name", None)
        super().__init__(
            serialized_fields={"change_id": change_id},
            waiter_name="resource_record_sets_changed",
            waiter_args={"Id": change_id},
            failure_message=f"Route 53 change {change_id} did not reach INSYNC",
            status_message=f"Route 53 change {change_id} status",
            status_queries=["ChangeInfo.Status"],
            return_key="change_id",
            return_value=change_id,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=ROUTE53_REGION,
            **kwargs,
        )


def parse_nameserver(value: str) -> tuple[str, int]:
    """'127.0.0.1:5353' or '192.0.2.53' -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or "." not in host:
        return value, 53
    return host, int(port)


def answers_match(answers: Sequence[str], expected: Sequence[str]) -> bool:
    return bool(answers) and sorted(answers) == sorted(expected)


async def resolve_async(name: str, record_type: str, nameserver: str, timeout: float) -> list[str]:
    """One real DNS query (UDP, TCP on truncation) to one nameserver; [] when it does not answer."""
    import dns.asyncresolver
    import dns.exception
    import dns.resolver

    host, port = parse_nameserver(nameserver)
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.lifetime = timeout
    resolver.cache = None
    try:
        answer = await resolver.resolve(name, record_type)
    except (dns.exception.DNSException, OSError):
        return []
    return sorted(rr.to_text() for rr in answer)


class DnsAnswerTrigger(BaseTrigger):
    """Fires once every nameserver answers `name` with exactly `expected`, `consecutive` times running.

    This is the seed's "monitor DNS propagation": what clients will actually be told, asked of the
    resolvers themselves rather than inferred from the control plane.
    """

    def __init__(
        self,
        *,
        name: str,
        expected: Sequence[str],
        nameservers: Sequence[str],
        record_type: str = "A",
        poll_interval: float = 1.0,
        timeout: float = 300.0,
        consecutive: int = 2,
        query_timeout: float = 2.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.expected = list(expected)
        self.nameservers = list(nameservers)
        self.record_type = record_type
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.consecutive = consecutive
        self.query_timeout = query_timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "name": self.name,
                "expected": self.expected,
                "nameservers": self.nameservers,
                "record_type": self.record_type,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "consecutive": self.consecutive,
                "query_timeout": self.query_timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        streak = 0
        last: dict[str, list[str]] = {}
        while True:
            results = await asyncio.gather(
                *(
                    resolve_async(self.name, self.record_type, ns, self.query_timeout)
                    for ns in self.nameservers
                )
            )
            last = dict(zip(self.nameservers, results, strict=True))
            if all(answers_match(r, self.expected) for r in results):
                streak += 1
                if streak >= self.consecutive:
                    yield TriggerEvent(
                        {
                            "status": "success",
                            "name": self.name,
                            "answers": last,
                            "elapsed_seconds": round(time.monotonic() - started, 3),
                        }
                    )
                    return
            else:
                streak = 0
            if time.monotonic() - started > self.timeout:
                yield TriggerEvent(
                    {
                        "status": "timeout",
                        "name": self.name,
                        "expected": self.expected,
                        "answers": last,
                        "elapsed_seconds": round(time.monotonic() - started, 3),
                    }
                )
                return
            self.log.info("DNS %s answers %s; waiting for %s", self.name, last, self.expected)
            await asyncio.sleep(self.poll_interval)
