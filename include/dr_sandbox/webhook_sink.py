"""The sandbox's stand-in for the chat and status-page webhooks: it records every POST it receives.

Incident notifications leave the bundle through HTTP webhooks; in the sandbox they land here so a
test (or a person) can read exactly what would have been posted, per path. Nothing is forwarded.

    POST   /<any path>          record the request (JSON body, headers without credentials), answer 200
    GET    /messages?path=/chat the recorded requests, oldest first (all paths without ?path=)
    DELETE /messages            forget everything recorded
    GET    /health              {"status": "ok"}
    POST   /_sandbox/faults     {"path": "/chat", "status": 503, "count": 2}: the next 2 POSTs to /chat
                                answer 503 (lets tests prove retries and partial-failure handling)
    DELETE /_sandbox/faults     clear them

Run it: ``python -m dr_sandbox.webhook_sink --host 127.0.0.1 --port 5080``. Loopback only.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dr_sandbox.netguard import LoopbackHTTPServer, require_loopback, send_json, serve_until_signalled

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
MAX_MESSAGES = 10_000  # oldest dropped first: a long-running sandbox must not grow without bound
MAX_FAULT_COUNT = 1000
# Headers that carry credentials are never stored (a webhook's token must not end up in a test log).
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token", "x-webhook-secret"}
)
_RESERVED_PREFIX = "/_sandbox/"


class SinkRequestError(ValueError):
    """A control request is invalid; the message names the field and the reason."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field_name = field_name
        super().__init__(f"{field_name}: {reason}")


@dataclass
class _Fault:
    path: str
    status: int
    count: int
    hits: int = 0


@dataclass
class SinkState:
    """What the sink has received, shared by its request threads."""

    messages: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_MESSAGES))
    faults: list[_Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_id: int = 1

    def record(self, path: str, headers: dict[str, str], body: Any, raw_size: int) -> dict[str, Any]:
        with self.lock:
            entry = {
                "id": self.next_id,
                "path": path,
                "headers": headers,
                "body": body,
                "size": raw_size,
                "received_at": time.time(),
            }
            self.next_id += 1
            self.messages.append(entry)
            return entry

    def list(self, path: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(m) for m in self.messages if path is None or m["path"] == path]

    def clear(self) -> int:
        with self.lock:
            n = len(self.messages)
            self.messages.clear()
            return n

    def add_fault(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise SinkRequestError("body", "must be a JSON object")
        unknown = sorted(set(body) - {"path", "status", "count"})
        if unknown:
            raise SinkRequestError(unknown[0], "unknown field (allowed: count, path, status)")
        path = body.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.startswith(_RESERVED_PREFIX):
            raise SinkRequestError("path", "required; a webhook path such as '/chat'")
        status = body.get("status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise SinkRequestError("status", f"must be an HTTP 4xx/5xx status (got {status!r})")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FAULT_COUNT:
            raise SinkRequestError("count", f"must be an integer from 1 to {MAX_FAULT_COUNT} (got {count!r})")
        with self.lock:
            self.faults.append(_Fault(path=path, status=status, count=count))
        return {"path": path, "status": status, "count": count}

    def claim_fault(self, path: str) -> int | None:
        with self.lock:
            for fault in self.faults:
                if fault.path == path and fault.hits < fault.count:
                    fault.hits += 1
                    return fault.status
            return None

    def clear_faults(self) -> int:
        with self.lock:
            n = len(self.faults)
            self.faults.clear()
            return n


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "DrWebhookSink/1.0"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    state: SinkState  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/health":
            self._send(200, {"status": "ok"})
        elif url.path == "/messages":
            wanted = parse_qs(url.query).get("path", [None])[0]
            self._send(200, {"messages": self.state.list(wanted)})
        elif url.path == "/_sandbox/faults":
            with self.state.lock:
                faults = [vars(f).copy() for f in self.state.faults]
            self._send(200, {"faults": faults})
        else:
            self._send(404, {"error": f"no route for GET {url.path}"})

    def do_DELETE(self) -> None:
        path = urlsplit(self.path).path
        if path == "/messages":
            self._send(200, {"cleared": self.state.clear()})
        elif path == "/_sandbox/faults":
            self._send(200, {"cleared": self.state.clear_faults()})
        else:
            self._send(404, {"error": f"no route for DELETE {path}"})

    def do_PUT(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            raw = self._read_body()
        except SinkRequestError as exc:
            self._send(413 if exc.field_name == "Content-Length" else 400, {"error": str(exc)})
            return
        body: Any
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
            if path.startswith(_RESERVED_PREFIX):
                self._send(400, {"error": "body: not valid JSON", "field": "body"})
                return
            body = {"_raw": raw.decode("utf-8", "replace")}
        if path == "/_sandbox/faults":
            try:
                self._send(201, self.state.add_fault(body))
            except SinkRequestError as exc:
                self._send(400, {"error": str(exc), "field": exc.field_name})
            return
        if path.startswith(_RESERVED_PREFIX):
            self._send(404, {"error": f"no sandbox endpoint {path}"})
            return
        status = self.state.claim_fault(path)
        if status is not None:
            self._send(status, {"error": "injected failure", "path": path})
            return
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in _SECRET_HEADERS}
        entry = self.state.record(path, headers, body, len(raw))
        self._send(200, {"ok": True, "id": entry["id"]})

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise SinkRequestError("Content-Length", "must be an integer") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise SinkRequestError("Content-Length", f"must be between 0 and {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any) -> None:
        send_json(self, status, body)


_Server = LoopbackHTTPServer


class WebhookSinkHandle:
    """A running sink (in-process): its URL, what it received, and a way to stop it."""

    def __init__(self, server: _Server, state: SinkState) -> None:
        self._server = server
        self.state = state
        host, port = server.server_address[:2]
        self.host, self.port = str(host), int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="webhook-sink", daemon=True
        )
        self._thread.start()

    def messages(self, path: str | None = None) -> list[dict[str, Any]]:
        return self.state.list(path)

    def clear(self) -> int:
        return self.state.clear()

    def fail_next(self, path: str, *, status: int = 503, count: int = 1) -> dict[str, Any]:
        return self.state.add_fault({"path": path, "status": status, "count": count})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WebhookSinkHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_webhook_sink(host: str = "127.0.0.1", port: int = 0) -> WebhookSinkHandle:
    """Start the sink in a background thread (port 0 picks a free port); stop it with handle.stop()."""
    require_loopback(host)
    state = SinkState()
    handler = type("WebhookSinkHandler", (_Handler,), {"state": state})
    server_cls = _Server
    if ":" in host:
        server_cls = type("WebhookSinkServer6", (_Server,), {"address_family": socket.AF_INET6})
    return WebhookSinkHandle(server_cls((host, port), handler), state)


# -- client helpers for other processes (tests, demo) -----------------------------------------


def fetch_messages(url: str, path: str | None = None, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """GET {url}/messages from a running sink (another process)."""
    import urllib.parse
    import urllib.request

    query = f"?{urllib.parse.urlencode({'path': path})}" if path else ""
    with urllib.request.urlopen(f"{url.rstrip('/')}/messages{query}", timeout=timeout) as response:
        return json.loads(response.read())["messages"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dr_sandbox.webhook_sink", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=5080)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: {args.port} is not a TCP port number")
    try:
        handle = start_webhook_sink(args.host, args.port)
    except (ValueError, OSError) as exc:
        print(f"webhook_sink: {exc}", file=sys.stderr)
        return 2
    return serve_until_signalled(handle.stop, f"webhook sink listening on {handle.url}")


if __name__ == "__main__":
    sys.exit(main())
