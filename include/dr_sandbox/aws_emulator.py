"""The sandbox's AWS: moto in server mode behind a fault-injection middleware.

Moto has no fault injection, and DR code is mostly about what happens when AWS misbehaves, so
every request first passes a WSGI middleware that can answer with the service's real throttling or
error shape (which botocore's retry handler recognises) or delay it. The faults are controlled
over HTTP (``/_sandbox/faults``) rather than in-process, so Airflow task subprocesses and the
test process see the same faults.

Run it: ``python -m dr_sandbox.aws_emulator --host 127.0.0.1 --port 5000``.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

from dr_sandbox.netguard import require_loopback

CONTROL_PREFIX = "/_sandbox/"
FAULTS_PATH = "/_sandbox/faults"
HEALTH_PATH = "/_sandbox/health"
CALLS_PATH = "/_sandbox/calls"

MODES = ("throttle", "error", "slow")
MAX_COUNT = 100_000
MAX_DELAY_SECONDS = 120.0
MAX_DRAIN_BYTES = 256 * 1024 * 1024

# Names people use for a service -> the SigV4 signing name the request carries.
SERVICE_ALIASES = {"cloudwatch": "monitoring", "email": "ses", "sesv2": "ses", "eventbridge": "events"}

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FaultSpecError(ValueError):
    """A fault request is invalid; the message names the field and the reason."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field_name = field_name
        super().__init__(f"{field_name}: {reason}")


@dataclass
class Fault:
    """One injected fault: it hits the next ``count`` calls that match service (and action)."""

    id: str
    service: str
    action: str | None
    mode: str
    count: int
    delay_seconds: float = 0.0
    status: int | None = None
    hits: int = 0
    created_at: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return self.hits < self.count

    def matches(self, service: str | None, action: str | None) -> bool:
        if not self.active or service != self.service:
            return False
        return self.action is None or (action is not None and action.lower() == self.action.lower())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service": self.service,
            "action": self.action,
            "mode": self.mode,
            "count": self.count,
            "hits": self.hits,
            "remaining": max(self.count - self.hits, 0),
            "active": self.active,
            "delay_seconds": self.delay_seconds if self.mode == "slow" else None,
            "status": self.status,
        }


def parse_fault_spec(body: Any) -> dict[str, Any]:
    """Validate a POST /_sandbox/faults body; returns the keyword arguments of a Fault."""
    if not isinstance(body, dict):
        raise FaultSpecError("body", "must be a JSON object")
    allowed = {"service", "action", "mode", "count", "delay_seconds", "status"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise FaultSpecError(unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")

    service = body.get("service")
    if not isinstance(service, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", service.strip().lower()):
        raise FaultSpecError("service", "required; an AWS service name such as 'rds' or 's3'")
    service = service.strip().lower()
    service = SERVICE_ALIASES.get(service, service)

    action = body.get("action")
    if action is not None and (not isinstance(action, str) or not re.fullmatch(r"[A-Za-z0-9]+", action)):
        raise FaultSpecError("action", "must be an API operation name such as 'PutObject'")

    mode = body.get("mode")
    if mode not in MODES:
        raise FaultSpecError("mode", f"must be one of {', '.join(MODES)} (got {mode!r})")

    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise FaultSpecError("count", f"must be an integer from 1 to {MAX_COUNT} (got {count!r})")

    delay = body.get("delay_seconds")
    if mode == "slow":
        if (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not 0 < delay <= MAX_DELAY_SECONDS
        ):
            raise FaultSpecError(
                "delay_seconds", f"required for mode slow; a number above 0 and at most {MAX_DELAY_SECONDS:g}"
            )
    elif delay is not None:
        raise FaultSpecError("delay_seconds", "only applies to mode slow")

    status = body.get("status")
    if mode == "error":
        if status is None:
            status = 500
        if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
            raise FaultSpecError("status", f"must be an HTTP 5xx status code (got {status!r})")
    elif status is not None:
        raise FaultSpecError("status", "only applies to mode error")

    return {
        "service": service,
        "action": action,
        "mode": mode,
        "count": count,
        "delay_seconds": float(delay or 0.0),
        "status": status,
    }


class FaultRegistry:
    """The active faults, shared by every request thread of the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: Mapping[str, Any]) -> Fault:
        with self._lock:
            fault = Fault(id=f"fault-{next(self._ids)}", **spec)
            self._faults.append(fault)
            return fault

    def claim(self, service: str | None, action: str | None) -> Fault | None:
        """The first active fault matching the call, with its hit counted (atomically)."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(service, action):
                    fault.hits += 1
                    return fault
        return None

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]

    def clear(self) -> int:
        with self._lock:
            removed = len(self._faults)
            self._faults.clear()
            return removed


class CallLog:
    """Every AWS call the emulator answered: service, action and who made it, counted.

    The Amazon provider's hooks put `Caller/<operator class>` and `DagRunKey/<uuid5 of the dag_id>`
    in the User-Agent, so calls made by Airflow tasks can be told from the sandbox's own (seeding,
    the DNS stand-in's reads) and traced to their DAG: the IAM policy tests compare what each DAG
    family really calls with what its policy allows (dr_automation.iam).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str | None, str | None], int] = {}

    def add(self, service: str | None, action: str | None, user_agent: str | None) -> None:
        caller, dag_key = (_ua_value(user_agent, name) for name in ("Caller", "DagRunKey"))
        key = (service or "?", action or "?", caller, dag_key)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            items = sorted(self._counts.items(), key=lambda kv: tuple(v or "" for v in kv[0]))
        return [
            {"service": s, "action": a, "caller": c, "dag_key": d, "count": n} for (s, a, c, d), n in items
        ]

    def clear(self) -> int:
        with self._lock:
            removed = sum(self._counts.values())
            self._counts.clear()
            return removed


def _ua_value(user_agent: str | None, name: str) -> str | None:
    match = re.search(rf"\b{name}/(\S+)", user_agent or "")
    return match.group(1) if match else None


# -- recognising the call ---------------------------------------------------------------------

_CREDENTIAL_RE = re.compile(r"Credential=([^,\s]+)")


def service_from_auth(authorization: str | None) -> tuple[str | None, str | None]:
    """(signing service, region) from a SigV4 Authorization header's credential scope."""
    if not authorization:
        return None, None
    match = _CREDENTIAL_RE.search(authorization)
    if not match:
        return None, None
    parts = match.group(1).split("/")
    if len(parts) != 5:
        return None, None
    return parts[3].lower(), parts[2]


_S3_BUCKET_SUBRESOURCES = {
    "versioning": "BucketVersioning",
    "encryption": "BucketEncryption",
    "object-lock": "ObjectLockConfiguration",
    "tagging": "BucketTagging",
    "lifecycle": "BucketLifecycleConfiguration",
    "policy": "BucketPolicy",
    "replication": "BucketReplication",
    "acl": "BucketAcl",
    "cors": "BucketCors",
    "website": "BucketWebsite",
    "notification": "BucketNotificationConfiguration",
    "logging": "BucketLogging",
    "location": "BucketLocation",
    "ownershipControls": "BucketOwnershipControls",
    "publicAccessBlock": "PublicAccessBlock",
    "accelerate": "BucketAccelerateConfiguration",
}
_S3_OBJECT_SUBRESOURCES = {
    "tagging": "ObjectTagging",
    "retention": "ObjectRetention",
    "legal-hold": "ObjectLegalHold",
    "acl": "ObjectAcl",
    "attributes": "ObjectAttributes",
}
_VERB = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}


def s3_operation(
    method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]
) -> str | None:
    """The S3 operation of a path-style request (the emulator is always addressed by IP)."""
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0]
    key = parts[1] if len(parts) > 1 else ""
    if not bucket:
        return "ListBuckets" if method == "GET" else None
    if not key:
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        for sub, name in _S3_BUCKET_SUBRESOURCES.items():
            if sub in query and method in _VERB:
                return _VERB[method] + name
        if method == "GET":
            if query.get("list-type") == ["2"]:
                return "ListObjectsV2"
            if "versions" in query:
                return "ListObjectVersions"
            if "uploads" in query:
                return "ListMultipartUploads"
            return "ListObjects"
        return {"PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method)
    if method == "HEAD":
        return "HeadObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "restore" in query:
            return "RestoreObject"
        return None
    for sub, name in _S3_OBJECT_SUBRESOURCES.items():
        if sub in query and method in _VERB:
            return _VERB[method] + name
    if method == "PUT":
        copy = "x-amz-copy-source" in headers
        if "partNumber" in query and "uploadId" in query:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        return "ListParts" if "uploadId" in query else "GetObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in query else "DeleteObject"
    return None


_ROUTE53_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(rf"^/\d{{4}}-\d{{2}}-\d{{2}}/{p}/?$"), op)
    for m, p, op in [
        ("POST", r"hostedzone", "CreateHostedZone"),
        ("GET", r"hostedzone", "ListHostedZones"),
        ("GET", r"hostedzonesbyname", "ListHostedZonesByName"),
        ("GET", r"hostedzonecount", "GetHostedZoneCount"),
        ("GET", r"hostedzone/[^/]+", "GetHostedZone"),
        ("DELETE", r"hostedzone/[^/]+", "DeleteHostedZone"),
        ("POST", r"hostedzone/[^/]+/rrset", "ChangeResourceRecordSets"),
        ("GET", r"hostedzone/[^/]+/rrset", "ListResourceRecordSets"),
        ("GET", r"change/[^/]+", "GetChange"),
        ("POST", r"healthcheck", "CreateHealthCheck"),
        ("GET", r"healthcheck", "ListHealthChecks"),
        ("GET", r"healthcheckcount", "GetHealthCheckCount"),
        ("GET", r"healthcheck/[^/]+", "GetHealthCheck"),
        ("POST", r"healthcheck/[^/]+", "UpdateHealthCheck"),
        ("DELETE", r"healthcheck/[^/]+", "DeleteHealthCheck"),
        ("GET", r"healthcheck/[^/]+/status", "GetHealthCheckStatus"),
        ("GET", r"healthcheck/[^/]+/lastfailurereason", "GetHealthCheckLastFailureReason"),
        ("GET", r"tags/[^/]+/[^/]+", "ListTagsForResource"),
        ("POST", r"tags/[^/]+/[^/]+", "ChangeTagsForResource"),
        ("POST", r"tags/[^/]+", "ListTagsForResources"),
    ]
]


def route53_operation(method: str, path: str) -> str | None:
    for route_method, pattern, op in _ROUTE53_ROUTES:
        if route_method == method and pattern.match(path):
            return op
    return None


@dataclass(frozen=True)
class CallInfo:
    """What the middleware knows about one AWS call: enough to match faults and shape errors."""

    service: str | None
    region: str | None
    action: str | None
    protocol: str  # query | ec2 | json | cbor | s3 | route53 | rest-json
    content_type: str | None = None


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back, so moto still sees it."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return b""
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def identify_call(environ: dict[str, Any]) -> CallInfo:
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = unquote(environ.get("PATH_INFO", "") or "")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    headers = {
        k[5:].replace("_", "-").lower(): v
        for k, v in environ.items()
        if k.startswith("HTTP_") and isinstance(v, str)
    }
    content_type = environ.get("CONTENT_TYPE") or None
    service, region = service_from_auth(headers.get("authorization"))

    target = headers.get("x-amz-target")
    if target:
        return CallInfo(service, region, target.rsplit(".", 1)[-1], "json", content_type)
    if headers.get("smithy-protocol") == "rpc-v2-cbor":
        match = re.search(r"/operation/([^/]+)$", path)
        return CallInfo(service, region, match.group(1) if match else None, "cbor", content_type)

    action = (query.get("Action") or [None])[0]
    if action is None and content_type and content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(_read_body(environ).decode("utf-8", "replace"), keep_blank_values=True)
        action = (form.get("Action") or [None])[0]
    if action is not None:
        return CallInfo(service, region, action, "ec2" if service == "ec2" else "query", content_type)
    if service == "s3":
        return CallInfo(service, region, s3_operation(method, path, query, headers), "s3", content_type)
    if service == "route53":
        return CallInfo(service, region, route53_operation(method, path), "route53", content_type)
    return CallInfo(service, region, None, "rest-json", content_type)


# -- answering like AWS does ------------------------------------------------------------------


def _cbor_text(value: str) -> bytes:
    data = value.encode("utf-8")
    n = len(data)
    if n < 24:
        head = bytes([0x60 + n])
    elif n < 256:
        head = bytes([0x78, n])
    else:
        head = bytes([0x79]) + n.to_bytes(2, "big")
    return head + data


def _cbor_map(items: Mapping[str, str]) -> bytes:
    """Encode a small str->str map as CBOR: enough for an rpc-v2-cbor error body (e.g. CloudWatch)."""
    out = bytes([0xA0 + len(items)])
    for key, value in items.items():
        out += _cbor_text(key) + _cbor_text(value)
    return out


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fault_response(call: CallInfo, fault: Fault, method: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of the fault in the service's own error shape."""
    request_id = str(uuid.uuid4())
    throttle = fault.mode == "throttle"
    proto = call.protocol

    if proto == "s3":
        status = 503 if throttle else int(fault.status or 500)
        code = "SlowDown" if throttle else ("ServiceUnavailable" if status == 503 else "InternalError")
        message = "Please reduce your request rate." if throttle else "We encountered an internal error."
    elif proto in ("json", "cbor"):
        status = 400 if throttle else int(fault.status or 500)
        code = (
            "ThrottlingException"
            if throttle
            else ("ServiceUnavailableException" if status == 503 else "InternalFailure")
        )
        message = (
            "Rate exceeded" if throttle else "The request processing has failed because of an unknown error."
        )
    elif proto == "rest-json":
        status = 429 if throttle else int(fault.status or 500)
        code = (
            "TooManyRequestsException"
            if throttle
            else ("ServiceUnavailableException" if status == 503 else "InternalFailure")
        )
        message = (
            "Rate exceeded" if throttle else "The request processing has failed because of an unknown error."
        )
    elif proto == "ec2":
        status = 503 if throttle else int(fault.status or 500)
        code = "RequestLimitExceeded" if throttle else ("Unavailable" if status == 503 else "InternalError")
        message = "Request limit exceeded." if throttle else "An internal error has occurred."
    else:  # query and route53
        status = 400 if throttle else int(fault.status or 500)
        if throttle and proto == "route53" and call.action == "ChangeResourceRecordSets":
            code = "PriorRequestNotComplete"
            message = "The request was rejected because Route 53 was still processing a prior request."
        elif throttle:
            code, message = "Throttling", "Rate exceeded"
        else:
            code = "ServiceUnavailable" if status == 503 else "InternalFailure"
            message = "The request processing has failed because of an unknown error."

    headers: list[tuple[str, str]] = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    if proto == "json":
        body = json.dumps({"__type": code, "message": message}).encode()
        headers += [
            ("Content-Type", call.content_type or "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", code),
        ]
    elif proto == "cbor":
        body = _cbor_map({"__type": code, "message": message})
        headers += [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
    elif proto == "rest-json":
        body = json.dumps({"message": message}).encode()
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
    elif proto == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
        headers.append(("Content-Type", "application/xml"))
    elif proto == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message></Error>"
            f"</Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    else:
        kind = "Sender" if status < 500 else "Receiver"
        xmlns = ' xmlns="https://route53.amazonaws.com/doc/2013-04-01/"' if proto == "route53" else ""
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<ErrorResponse{xmlns}><Error><Type>{kind}</Type><Code>{code}</Code>"
            f"<Message>{_xml_escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    if method == "HEAD":
        body = b""
    headers.append(("Content-Length", str(len(body))))
    return status, headers, body


def _drain(environ: dict[str, Any]) -> None:
    """Consume an unread request body so the client is not reset while still sending it."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    remaining = min(length, MAX_DRAIN_BYTES) if length > 0 else 0
    if environ.get("wsgi.input_terminated") and length <= 0:
        remaining = MAX_DRAIN_BYTES
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)


class FaultInjectionMiddleware:
    """WSGI middleware: serves /_sandbox/* and applies faults before the call reaches moto."""

    def __init__(self, app: WsgiApp, registry: FaultRegistry | None = None) -> None:
        self.app = app
        self.registry = registry or FaultRegistry()
        self.calls = CallLog()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or ""
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response, path)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if not path.startswith("/moto-api"):
            call = identify_call(environ)
            self.calls.add(call.service, call.action, environ.get("HTTP_USER_AGENT"))
            fault = self.registry.claim(call.service, call.action) if call.service else None
            if fault is not None:
                if fault.mode == "slow":
                    time.sleep(fault.delay_seconds)
                else:
                    _drain(environ)
                    status, headers, body = fault_response(call, fault, method)
                    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
                    return [body]
        return self.app(environ, start_response)

    def _control(self, environ: dict[str, Any], start_response: StartResponse, path: str) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = path.rstrip("/")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            return _json(start_response, 200, {"status": "ok"})
        if path == CALLS_PATH and method == "GET":
            return _json(start_response, 200, {"calls": self.calls.list()})
        if path == CALLS_PATH and method == "DELETE":
            return _json(start_response, 200, {"cleared": self.calls.clear()})
        if path != FAULTS_PATH:
            return _json(start_response, 404, {"error": f"no such sandbox endpoint: {path}"})
        if method == "GET":
            return _json(start_response, 200, {"faults": self.registry.list()})
        if method == "DELETE":
            return _json(start_response, 200, {"cleared": self.registry.clear()})
        if method != "POST":
            return _json(start_response, 405, {"error": f"method {method} not allowed on {FAULTS_PATH}"})
        raw = _read_body(environ)
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            return _json(start_response, 400, {"error": f"body: not valid JSON ({exc})", "field": "body"})
        try:
            spec = parse_fault_spec(body)
        except FaultSpecError as exc:
            return _json(start_response, 400, {"error": str(exc), "field": exc.field_name})
        fault = self.registry.add(spec)
        return _json(start_response, 201, fault.to_json())


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _json(start_response: StartResponse, status: int, payload: Any) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        f"{status} {_REASONS.get(status, 'Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


# -- the server -------------------------------------------------------------------------------


def build_app(registry: FaultRegistry | None = None) -> FaultInjectionMiddleware:
    """moto's dispatching WSGI app (every service, routed by SigV4 scope) behind the fault middleware."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return FaultInjectionMiddleware(DomainDispatcherApplication(create_backend_app), registry)


@dataclass
class EmulatorHandle:
    """A running in-process emulator."""

    host: str
    port: int
    registry: FaultRegistry
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def endpoint_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def add_fault(self, **spec: Any) -> Fault:
        """Inject a fault in-process (validated like POST /_sandbox/faults)."""
        return self.registry.add(parse_fault_spec(spec))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_server(host: str, port: int, app: WsgiApp, quiet: bool) -> Any:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    handler = MotoRequestHandler
    if quiet:

        class _QuietHandler(MotoRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                return None

        handler = _QuietHandler
    return make_server(host, port, app, threaded=True, request_handler=handler)


def start_emulator(host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> EmulatorHandle:
    """Start the emulator in a background thread (port 0 picks a free port); stop it with handle.stop().

    moto's backends are process-global: two emulators in one process share AWS state.
    """
    require_loopback(host)
    registry = FaultRegistry()
    server = _make_server(host, port, build_app(registry), quiet)
    thread = threading.Thread(target=server.serve_forever, name=f"aws-emulator-{port}", daemon=True)
    thread.start()
    return EmulatorHandle(
        host=host, port=server.server_address[1], registry=registry, _server=server, _thread=thread
    )


# -- HTTP client for other processes (tests, bench scripts) ------------------------------------


def _control_request(endpoint_url: str, method: str, body: Any = None, path: str = FAULTS_PATH) -> Any:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        endpoint_url.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}")
        if exc.code == 400 and "field" in detail:
            raise FaultSpecError(detail["field"], detail["error"].split(": ", 1)[-1]) from None
        raise


def inject_fault(endpoint_url: str, **spec: Any) -> dict[str, Any]:
    """POST a fault to a running emulator; returns it with its id. Bad specs raise FaultSpecError."""
    return _control_request(endpoint_url, "POST", spec)


def list_faults(endpoint_url: str) -> list[dict[str, Any]]:
    return _control_request(endpoint_url, "GET")["faults"]


def list_calls(endpoint_url: str) -> list[dict[str, Any]]:
    """The AWS calls answered so far: service, action, caller (the Airflow operator or hook), count."""
    return _control_request(endpoint_url, "GET", path=CALLS_PATH)["calls"]


def clear_calls(endpoint_url: str) -> int:
    return _control_request(endpoint_url, "DELETE", path=CALLS_PATH)["cleared"]


def clear_faults(endpoint_url: str) -> int:
    return _control_request(endpoint_url, "DELETE")["cleared"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port to bind (default 5000)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    try:
        require_loopback(args.host)
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 <= args.port <= 65535:
        parser.error(f"port: {args.port} is not a TCP port number")

    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some self-referencing URLs from it
    server = _make_server(args.host, args.port, build_app(), args.quiet)

    def _stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"AWS emulator listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
