"""What every sandbox service shares: it binds loopback only, and runs until told to stop."""

from __future__ import annotations

import http.server
import ipaddress
import json
import signal
import threading
from collections.abc import Callable
from typing import Any


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


class LoopbackHTTPServer(http.server.ThreadingHTTPServer):
    """The threaded HTTP server the stand-ins share (daemon threads: `stop()` never hangs on a client)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def send_json(handler: http.server.BaseHTTPRequestHandler, status: int, body: Any) -> None:
    """Answer a request with a JSON body and an exact Content-Length."""
    payload = json.dumps(body, default=str).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
