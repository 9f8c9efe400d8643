"""What every sandbox service shares: it binds loopback only, and runs until told to stop."""

from __future__ import annotations

import ipaddress
import signal
import threading
from collections.abc import Callable


def require_loopback(host: str, *, field: str = "host") -> str:
    """Refuse anything but loopback: no sandbox service may ever be reachable from off the machine."""
    if host == "localhost":
        return host
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{field}: must be a loopback IP address (127.0.0.0/8 or ::1), got {host!r}"
        ) from None
    if not addr.is_loopback:
        raise ValueError(f"{field}: must be a loopback address (127.0.0.0/8 or ::1), got {host}")
    return host


def serve_until_signalled(stop: Callable[[], None], ready_message: str) -> int:
    """Announce readiness, block until SIGTERM/SIGINT (what `make down` sends), then stop cleanly."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    print(ready_message, flush=True)
    stopping.wait()
    stop()
    return 0
