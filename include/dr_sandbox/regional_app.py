"""Stand-in for one region's LeanVibe API deployment, with switchable failure modes.

A real regional app is needed so the DNS stand-in's health checkers, the region health monitor and
the failover verification all talk HTTP to something that can really fail: a dropped connection, a
slow answer or a share of 500s, switched over ``POST /_control`` while it runs. It also publishes the
metrics a real deployment's load balancer/agent would (namespace ``LeanVibe/API``, dimension
``Region``) to the CloudWatch of its own region, so monitoring reads real data points.

Run: ``python -m dr_sandbox.regional_app --region us-east-1 --host 127.0.1.1 --port 8000``.

Metric definitions for one publish window:
- ``RequestCount`` (Count): requests received, control requests excluded, dropped ones included.
- ``ErrorRate`` (None, 0..1): share of those requests answered 5xx or dropped (what a load balancer
  in front would count as 5xx).
- ``Latency`` (Milliseconds): p95 of the answered requests; omitted when nothing was answered.
- ``Availability`` (None, 0..1): share of the window's wall time the app was serving (not ``down``),
  so a down region reports 0 even when nobody calls it.
"""

from __future__ import annotations

import argparse
import http.server
import json
import logging
import math
import os
import random
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dr_sandbox.netguard import LoopbackHTTPServer, require_loopback, send_json, serve_until_signalled

log = logging.getLogger("dr_sandbox.regional_app")

MODES = ("healthy", "down", "slow", "erroring")
CONTROL_FIELDS = {"mode", "latency_ms", "error_rate"}
MAX_LATENCY_MS = 120_000
NAMESPACE = "LeanVibe/API"
DB_CONNECT_TIMEOUT_S = 3


class ControlError(ValueError):
    """A bad /_control request; the message names the field and the reason."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass
class ModeState:
    """The app's current failure mode."""

    mode: str = "healthy"
    latency_ms: float = 0.0
    error_rate: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "latency_ms": self.latency_ms, "error_rate": self.error_rate}


def parse_control(body: Any) -> ModeState:
    """Validate a /_control body; raises ControlError naming the offending field."""
    if not isinstance(body, dict):
        raise ControlError("body", "must be a JSON object")
    unknown = sorted(set(body) - CONTROL_FIELDS)
    if unknown:
        raise ControlError(unknown[0], f"unknown field (allowed: {', '.join(sorted(CONTROL_FIELDS))})")
    mode = body.get("mode")
    if mode not in MODES:
        raise ControlError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    state = ModeState(mode=mode)
    if "latency_ms" in body or mode == "slow":
        value = body.get("latency_ms")
        if not _is_number(value):
            raise ControlError("latency_ms", "must be a number of milliseconds (required for mode slow)")
        if not 0 <= value <= MAX_LATENCY_MS:
            raise ControlError("latency_ms", f"must be between 0 and {MAX_LATENCY_MS}, got {value}")
        if mode != "slow":
            raise ControlError("latency_ms", "only applies to mode slow")
        state.latency_ms = float(value)
    if "error_rate" in body or mode == "erroring":
        value = body.get("error_rate")
        if not _is_number(value):
            raise ControlError("error_rate", "must be a number between 0 and 1 (required for mode erroring)")
        if not 0 <= value <= 1:
            raise ControlError("error_rate", f"must be between 0 and 1, got {value}")
        if mode != "erroring":
            raise ControlError("error_rate", "only applies to mode erroring")
        state.error_rate = float(value)
    return state


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (the definition CloudWatch uses for pNN statistics)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class MetricsWindow:
    """Counters for one publish window; guarded by the app's lock."""

    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    down_seconds: float = 0.0


class RegionalApp:
    """State shared by the request handlers, the control endpoint and the metrics publisher."""

    def __init__(
        self,
        region: str,
        *,
        dsn: str | None = None,
        cloudwatch_endpoint: str | None = None,
        publish_interval: float = 10.0,
        metrics_region: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not region:
            raise ValueError("region: must not be empty")
        if publish_interval <= 0:
            raise ValueError(f"publish_interval: must be > 0 seconds, got {publish_interval}")
        self.region = region
        self._dsn = dsn
        self.cloudwatch_endpoint = cloudwatch_endpoint
        self.metrics_region = metrics_region or region
        self.publish_interval = publish_interval
        self._lock = threading.Lock()
        self._state = ModeState()
        self._down_since: float | None = None
        self._window = MetricsWindow()
        self._random = random.Random(seed)
        self._cw_client: Any = None
        self.publish_stats: dict[str, Any] = {"published": 0, "failures": 0, "last_error": None}

    # ----- mode -----
    @property
    def database_configured(self) -> bool:
        return bool(self._dsn)

    def get_state(self) -> ModeState:
        with self._lock:
            return ModeState(**self._state.as_dict())

    def set_state(self, state: ModeState) -> None:
        now = time.monotonic()
        with self._lock:
            if self._down_since is not None:
                self._window.down_seconds += now - max(self._down_since, self._window.started)
                self._down_since = None
            if state.mode == "down":
                self._down_since = now
            self._state = state
        log.info("region %s mode -> %s", self.region, state.as_dict())

    def roll_error(self, rate: float) -> bool:
        with self._lock:
            return self._random.random() < rate

    # ----- metrics -----
    def record(self, *, error: bool, latency_ms: float | None) -> None:
        with self._lock:
            self._window.requests += 1
            if error:
                self._window.errors += 1
            if latency_ms is not None:
                self._window.latencies_ms.append(latency_ms)

    def take_window(self) -> dict[str, Any]:
        """Close the current window and return its metric values."""
        now = time.monotonic()
        with self._lock:
            window, self._window = self._window, MetricsWindow(started=now)
            down = window.down_seconds
            if self._down_since is not None:
                down += now - max(self._down_since, window.started)
        length = max(now - window.started, 1e-6)
        values: dict[str, Any] = {
            "RequestCount": window.requests,
            "ErrorRate": (window.errors / window.requests) if window.requests else 0.0,
            "Availability": max(0.0, min(1.0, 1.0 - down / length)),
            "Latency": percentile(window.latencies_ms, 95) if window.latencies_ms else None,
            "window_seconds": length,
        }
        return values

    def publish_once(self) -> dict[str, Any]:
        """Publish one window to CloudWatch; failures are logged and counted, never raised."""
        values = self.take_window()
        if not self.cloudwatch_endpoint:
            return values
        dims = [{"Name": "Region", "Value": self.region}]
        data = [
            {
                "MetricName": "RequestCount",
                "Dimensions": dims,
                "Value": values["RequestCount"],
                "Unit": "Count",
            },
            {"MetricName": "ErrorRate", "Dimensions": dims, "Value": values["ErrorRate"], "Unit": "None"},
            {
                "MetricName": "Availability",
                "Dimensions": dims,
                "Value": values["Availability"],
                "Unit": "None",
            },
        ]
        if values["Latency"] is not None:
            data.append(
                {
                    "MetricName": "Latency",
                    "Dimensions": dims,
                    "Value": values["Latency"],
                    "Unit": "Milliseconds",
                }
            )
        try:
            self._cloudwatch().put_metric_data(Namespace=NAMESPACE, MetricData=data)
        except Exception as exc:  # publishing must never take the app down
            self.publish_stats["failures"] += 1
            self.publish_stats["last_error"] = f"{type(exc).__name__}: {exc}"
            log.warning(
                "region %s: publishing metrics failed: %s", self.region, self.publish_stats["last_error"]
            )
        else:
            self.publish_stats["published"] += 1
        return values

    def _cloudwatch(self) -> Any:
        if self._cw_client is None:
            import boto3
            from botocore.config import Config

            self._cw_client = boto3.client(
                "cloudwatch",
                endpoint_url=self.cloudwatch_endpoint,
                region_name=self.metrics_region,
                aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
            )
        return self._cw_client

    # ----- database -----
    def _redact(self, text: str) -> str:
        """Strip the DSN and its password from a driver message before it is logged or returned."""
        if not self._dsn:
            return text
        text = text.replace(self._dsn, "<dsn>")
        try:
            from psycopg2.extensions import parse_dsn

            password = parse_dsn(self._dsn).get("password")
        except Exception:
            password = None
        if password:
            text = text.replace(password, "***")
        return text

    def query_scalar(self, sql: str) -> Any:
        """Run one query on a fresh connection (no pool, so tests can drop the database afterwards)."""
        import psycopg2

        conn = psycopg2.connect(self._dsn, connect_timeout=DB_CONNECT_TIMEOUT_S)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                row = cur.fetchone()
            return row[0] if row else None
        finally:
            conn.close()

    def db_error(self, exc: Exception) -> str:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = self._redact(f"{type(exc).__name__}: {first_line}")
        log.warning("region %s: database check failed: %s", self.region, message)
        return message


class _DroppedConnection(Exception):
    """Raised inside a handler to abort the request without any response."""


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "LeanVibeRegionalApp/1.0"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: avoid 40 ms delayed-ACK stalls
    app: RegionalApp  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _DroppedConnection:
            self.close_connection = True
            self._reset_connection()

    def _reset_connection(self) -> None:
        # SO_LINGER 0 turns close() into a TCP RST: the client sees a reset, not a clean EOF.
        # Close the buffered reader first: while it holds a reference the socket's fd stays open.
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/_control":
            self._control(method)
            return
        app = self.app
        state = app.get_state()
        started = time.monotonic()
        if state.mode == "down":
            app.record(error=True, latency_ms=None)
            raise _DroppedConnection
        if state.mode == "slow":
            time.sleep(state.latency_ms / 1000.0)
        if state.mode == "erroring" and app.roll_error(state.error_rate):
            status, body = 500, {"error": "injected failure", "region": app.region}
        else:
            status, body = self._route(method, path)
        latency_ms = (time.monotonic() - started) * 1000.0
        app.record(error=status >= 500, latency_ms=latency_ms)
        self._send_json(status, body)

    def _route(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        app = self.app
        if method != "GET":
            return 405, {"error": f"method {method} not allowed on {path}"}
        if path == "/health":
            checks: dict[str, str] = {}
            result: dict[str, Any] = {"status": "ok", "region": app.region, "checks": checks}
            if app.database_configured:
                try:
                    app.query_scalar("SELECT 1")
                    checks["database"] = "ok"
                except Exception as exc:
                    checks["database"] = "failed"
                    result["status"] = "failed"
                    result["error"] = app.db_error(exc)
                    return 503, result
            return 200, result
        if path == "/api/whoami":
            return 200, {"region": app.region, "served_at": datetime.now(UTC).isoformat()}
        if path == "/api/tenants/count":
            if not app.database_configured:
                return 503, {"error": "no database configured for this region", "region": app.region}
            try:
                count = app.query_scalar("SELECT count(*) FROM tenants")
            except Exception as exc:
                return 503, {"error": app.db_error(exc), "region": app.region}
            return 200, {"region": app.region, "table": "tenants", "count": int(count)}
        return 404, {"error": f"no route for {path}"}

    def _control(self, method: str) -> None:
        app = self.app
        if method == "GET":
            self._send_json(
                200, {"region": app.region, **app.get_state().as_dict(), "metrics": app.publish_stats}
            )
            return
        if method != "POST":
            self._send_json(405, {"error": f"method {method} not allowed on /_control"})
            return
        length_header = self.headers.get("Content-Length", "0")
        try:
            length = int(length_header)
            if length < 0 or length > 65536:
                raise ValueError
        except ValueError:
            self._send_json(400, {"error": "Content-Length: must be an integer between 0 and 65536"})
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._send_json(400, {"error": f"body: not valid JSON ({exc})", "field": "body"})
            return
        try:
            state = parse_control(body)
        except ControlError as exc:
            self._send_json(400, {"error": str(exc), "field": exc.field})
            return
        app.set_state(state)
        self._send_json(200, {"region": app.region, **state.as_dict()})

    def _send_json(self, status: int, body: Any) -> None:
        send_json(self, status, body)


_Server = LoopbackHTTPServer


class RegionalAppHandle:
    """A running regional app (in-process): its address, its state and a way to stop it."""

    def __init__(self, app: RegionalApp, server: _Server) -> None:
        self.app = app
        self._server = server
        self.host, self.port = server.server_address[:2]
        self.region = app.region
        self.url = f"http://{self.host}:{self.port}"
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
            threading.Thread(target=self._publish_loop, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _publish_loop(self) -> None:
        while not self._stop.wait(self.app.publish_interval):
            self.app.publish_once()

    def set_mode(self, mode: str, **kwargs: float) -> None:
        self.app.set_state(parse_control({"mode": mode, **kwargs}))

    def publish_now(self) -> dict[str, Any]:
        return self.app.publish_once()

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> RegionalAppHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_regional_app(
    region: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    dsn_env: str | None = None,
    dsn: str | None = None,
    cloudwatch_endpoint: str | None = None,
    publish_interval: float = 10.0,
    metrics_region: str | None = None,
    seed: int | None = None,
) -> RegionalAppHandle:
    """Start a regional app in background threads; port 0 picks a free port."""
    require_loopback(host)
    if dsn is None and dsn_env:
        dsn = os.environ.get(dsn_env)
        if not dsn:
            raise ValueError(f"dsn_env: environment variable {dsn_env} is not set or empty")
    app = RegionalApp(
        region,
        dsn=dsn,
        cloudwatch_endpoint=cloudwatch_endpoint,
        publish_interval=publish_interval,
        metrics_region=metrics_region,
        seed=seed,
    )
    handler = type("RegionalAppHandler", (_Handler,), {"app": app})
    server_cls = _Server
    if ":" in host:
        server_cls = type("RegionalAppServer6", (_Server,), {"address_family": socket.AF_INET6})
    server = server_cls((host, port), handler)
    handle = RegionalAppHandle(app, server)
    log.info(
        "regional app %s listening on %s (database: %s, metrics: %s every %ss)",
        region,
        handle.url,
        "configured" if app.database_configured else "none",
        cloudwatch_endpoint or "off",
        publish_interval,
    )
    return handle


def set_app_mode(url: str, mode: str, **kwargs: float) -> None:
    """Switch the regional app serving at `url` (its base URL) into `mode`, from another process."""
    import httpx

    httpx.post(f"{url}/_control", json={"mode": mode, **kwargs}, timeout=5).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dr_sandbox.regional_app", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dsn-env", help="name of the environment variable holding the database DSN")
    parser.add_argument("--cloudwatch-endpoint", help="CloudWatch endpoint URL (the AWS emulator)")
    parser.add_argument("--metrics-region", help="CloudWatch region to publish to (default: --region)")
    parser.add_argument("--publish-interval", type=float, default=10.0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        handle = start_regional_app(
            args.region,
            args.host,
            args.port,
            dsn_env=args.dsn_env,
            cloudwatch_endpoint=args.cloudwatch_endpoint,
            publish_interval=args.publish_interval,
            metrics_region=args.metrics_region,
        )
    except (ValueError, OSError) as exc:
        print(f"regional_app: {exc}", file=sys.stderr)
        return 2
    return serve_until_signalled(handle.stop, f"regional app {args.region} ready on {handle.url}")


if __name__ == "__main__":
    sys.exit(main())
