"""A bounded load generator for the sandbox: customers calling a region, so its metrics have data.

Loopback only, one thread, a fixed pause between requests, and it stops when its block ends; it
counts what it saw so a drill can report the success rate during a switch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

from dr_sandbox.netguard import require_loopback


@dataclass
class TrafficStats:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.ok / self.sent if self.sent else 1.0


@contextmanager
def traffic(url: str, *, pause_seconds: float = 0.05, timeout: float = 2.0) -> Iterator[TrafficStats]:
    """GET `url` every `pause_seconds` until the block ends (at most 1/pause_seconds per second)."""
    import httpx

    require_loopback(urlparse(url).hostname or "")
    stats = TrafficStats()
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(timeout=timeout) as http:
            while not stop.is_set():
                stats.sent += 1
                try:
                    status = str(http.get(url).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
                if status.startswith("2"):
                    stats.ok += 1
                else:
                    stats.failed += 1
                stop.wait(pause_seconds)

    worker = threading.Thread(target=loop, name="dr-sandbox-traffic", daemon=True)
    worker.start()
    try:
        yield stats
    finally:
        stop.set()
        worker.join(timeout=timeout + 1)
