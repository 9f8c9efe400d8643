"""The three checks of one region, as the seed's monitor defines them: API, database, infrastructure.

Every check is async (they run concurrently in the triggerer) and returns a `CheckResult` whether
the region answered or not: a check never raises for a region being unhealthy. Statuses:

- ``passed`` / ``failed``: counted in the region's score;
- ``no_data``: nothing to judge (no metric data points in the window), left out of the score;
- ``not_configured``: the check does not apply to this region (no database there), left out;
- ``error``: the monitor could not ask (CloudWatch throttled, a connection id missing), left out:
  a broken monitoring path is not evidence that the region is down. It is kept in the evidence.

Drivers (httpx, asyncpg, aiobotocore) are imported inside functions: DAG files import this package.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PASSED = "passed"
FAILED = "failed"
NO_DATA = "no_data"
NOT_CONFIGURED = "not_configured"
ERROR = "error"
STATUSES = (PASSED, FAILED, NO_DATA, NOT_CONFIGURED, ERROR)

API = "api"
DATABASE = "database"
INFRASTRUCTURE = "infrastructure"
CHECK_NAMES = (API, DATABASE, INFRASTRUCTURE)

#: CloudWatch metrics the regional apps publish (dimension Region), the statistic read over the
#: window, and the key they get in the evidence. Latency is already a p95 per published period, so
#: the window's worst period counts (Maximum); rates and shares are averaged.
METRIC_QUERIES: tuple[tuple[str, str, str], ...] = (
    ("error_rate", "ErrorRate", "Average"),
    ("latency_ms", "Latency", "Maximum"),
    ("availability", "Availability", "Average"),
    ("request_count", "RequestCount", "Sum"),
)


@dataclass(frozen=True)
class CheckResult:
    """One check of one region in one cycle: what was measured against which threshold."""

    name: str
    status: str
    value: Any = None
    threshold: Any = None
    detail: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: must be one of {STATUSES} (got {self.status!r})")

    @property
    def passed(self) -> bool | None:
        """True/False when the check counts in the score; None when it is left out."""
        return {PASSED: True, FAILED: False}.get(self.status)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "status": self.status,
            "passed": self.passed,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            name=str(data["name"]),
            status=str(data["status"]),
            value=data.get("value"),
            threshold=data.get("threshold"),
            detail=str(data.get("detail") or ""),
            extra=dict(data.get("extra") or {}),
        )


def _error_text(exc: BaseException) -> str:
    """`Type: first line`, redacted: driver messages can carry hosts, users or worse."""
    from dr_toolbox.redact import redact

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:300]


# -- API ---------------------------------------------------------------------------------------
def api_timeout(max_seconds: float) -> float:
    """Give up a little after the threshold: a slower answer fails anyway, and the cycle stays short."""
    return max_seconds + max(0.5, 0.2 * max_seconds)


async def check_api(client: Any, url: str, *, max_seconds: float) -> CheckResult:
    """GET the region's health endpoint: passes on HTTP 200 within `max_seconds`."""
    import httpx

    timeout = api_timeout(max_seconds)
    threshold = {"status_code": 200, "latency_seconds": max_seconds}
    started = time.monotonic()
    try:
        response = await client.get(url, timeout=timeout)
    except (httpx.HTTPError, OSError) as exc:
        no_answer = {"status_code": None, "latency_seconds": round(time.monotonic() - started, 3)}
        reason = (
            f"no answer from {url} within {timeout:.1f}s"
            if isinstance(exc, httpx.TimeoutException)
            else f"{url}: {_error_text(exc)}"
        )
        return CheckResult(API, FAILED, no_answer, threshold, reason)
    latency = time.monotonic() - started
    value = {"status_code": response.status_code, "latency_seconds": round(latency, 3)}
    if response.status_code != 200:
        return CheckResult(API, FAILED, value, threshold, f"{url} answered HTTP {response.status_code}")
    if latency > max_seconds:
        return CheckResult(
            API, FAILED, value, threshold, f"{url} answered in {latency:.3f}s (> {max_seconds}s)"
        )
    return CheckResult(API, PASSED, value, threshold, f"HTTP 200 in {latency:.3f}s")


def api_unreachable(result: CheckResult) -> bool:
    """The API gave no timely answer (dropped, refused, timed out or too slow), as opposed to a fast
    error answer. Metrics published while a region was unreachable describe the outage, not the
    region once it answers again (see scoring.apply_cycle)."""
    if result.name != API or result.status != FAILED:
        return False
    value = result.value or {}
    threshold = result.threshold or {}
    answered = value.get("status_code") is not None
    in_time = value.get("latency_seconds", math.inf) <= threshold.get("latency_seconds", math.inf)
    return not (answered and in_time)


# -- database ----------------------------------------------------------------------------------
async def check_database(conn_id: str | None, *, timeout: float) -> CheckResult:
    """Connect to the region's database (an Airflow postgres connection) and run SELECT 1."""
    threshold = {"query": "SELECT 1", "timeout_seconds": timeout}
    if not conn_id:
        return CheckResult(DATABASE, NOT_CONFIGURED, None, None, "no database connection in this region")
    from airflow.sdk import BaseHook

    try:
        conn = await BaseHook.aget_connection(conn_id)
    except Exception as exc:
        return CheckResult(
            DATABASE,
            ERROR,
            None,
            threshold,
            f"connection {conn_id!r} cannot be resolved ({type(exc).__name__})",
        )
    import asyncpg

    extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
    started = time.monotonic()
    try:
        db = await asyncpg.connect(
            host=conn.host or "127.0.0.1",
            port=int(conn.port or 5432),
            user=conn.login or None,
            password=conn.password or None,
            database=conn.schema or "postgres",
            timeout=timeout,
            ssl=extra.get("sslmode") or None,
        )
        try:
            answer = await db.fetchval("SELECT 1", timeout=timeout)
        finally:
            await db.close(timeout=timeout)
    except TimeoutError:
        return CheckResult(
            DATABASE,
            FAILED,
            {"latency_seconds": round(time.monotonic() - started, 3)},
            threshold,
            f"connection {conn_id!r}: no answer within {timeout:.1f}s",
        )
    except Exception as exc:  # refused, authentication, database missing, protocol: all are failures
        return CheckResult(
            DATABASE,
            FAILED,
            {"latency_seconds": round(time.monotonic() - started, 3)},
            threshold,
            f"connection {conn_id!r}: {_error_text(exc)}",
        )
    latency = round(time.monotonic() - started, 3)
    if answer != 1:
        return CheckResult(
            DATABASE, FAILED, {"latency_seconds": latency}, threshold, f"SELECT 1 -> {answer!r}"
        )
    return CheckResult(
        DATABASE, PASSED, {"latency_seconds": latency}, threshold, f"SELECT 1 in {latency:.3f}s"
    )


# -- infrastructure ----------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricWindow:
    """The CloudWatch query window: [start, end) read as ONE period (so each statistic is one value)."""

    start: float
    end: float
    period: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": datetime.fromtimestamp(self.start, UTC).isoformat(),
            "end": datetime.fromtimestamp(self.end, UTC).isoformat(),
            "period": self.period,
        }


def _cloudwatch_period(span: float) -> int:
    """The smallest period CloudWatch accepts (1, 5, 10, 30 or a multiple of 60) covering `span`."""
    for period in (1, 5, 10, 30, 60):
        if period >= span:
            return period
    return math.ceil(span / 60.0) * 60


def metric_window(
    now: float, *, window_seconds: float, metrics_period: float, not_before: float | None = None
) -> MetricWindow | None:
    """The window of data points to judge now; None when no whole period has passed since `not_before`.

    Bounds are aligned like CloudWatch aligns them (whole minutes for periods of a minute or more,
    whole seconds otherwise), rounding the start UP when it is a `not_before` gate so a data point
    from before it never slips in.
    """
    align = 60 if metrics_period >= 60 else 1
    start = math.floor((now - window_seconds) / align) * align
    if not_before is not None:
        start = max(start, math.ceil(not_before / align) * align)
    end = (math.floor(now / align) + 1) * align
    if start >= end or (not_before is not None and not_before > now):
        return None
    return MetricWindow(float(start), float(end), _cloudwatch_period(end - start))


def evaluate_metrics(values: Mapping[str, float | None], thresholds: Mapping[str, float]) -> CheckResult:
    """Judge the window's metric values against the estate's thresholds (pure; unit-tested).

    Metrics without data points are skipped (a down region answers nothing, so it has no latency);
    no data at all is ``no_data``: absent metrics are not evidence either way.
    """
    limits = {
        "error_rate": ("<=", float(thresholds["error_rate"])),
        "latency_ms": ("<=", float(thresholds["response_time_seconds"]) * 1000.0),
        "availability": (">=", float(thresholds["availability"])),
    }
    threshold = {key: f"{op} {limit:g}" for key, (op, limit) in limits.items()}
    measured = {k: float(values[k]) for k in limits if values.get(k) is not None}
    value: dict[str, Any] = {k: round(v, 4) for k, v in measured.items()}
    if values.get("request_count") is not None:
        value["request_count"] = values["request_count"]
    missing = [k for k in limits if k not in measured]
    if not measured:
        return CheckResult(INFRASTRUCTURE, NO_DATA, value, threshold, "no metric data points in the window")
    breaches, fine = [], []
    for key, number in measured.items():
        op, limit = limits[key]
        ok = number <= limit if op == "<=" else number >= limit
        (fine if ok else breaches).append(f"{key} {number:.4g} {op if ok else _negate(op)} {limit:g}")
    tail = f" (no data: {', '.join(missing)})" if missing else ""
    if breaches:
        return CheckResult(INFRASTRUCTURE, FAILED, value, threshold, "; ".join(breaches) + tail)
    return CheckResult(INFRASTRUCTURE, PASSED, value, threshold, ", ".join(fine) + tail)


def _negate(op: str) -> str:
    return ">" if op == "<=" else "<"


async def check_infrastructure(
    client: Any,
    region: str,
    *,
    namespace: str,
    thresholds: Mapping[str, float],
    window: MetricWindow | None,
    skipped_reason: str = "",
) -> CheckResult:
    """Read the region's own CloudWatch (one GetMetricData call) and judge error rate, p95 latency
    and availability over `window`."""
    if window is None:
        return CheckResult(INFRASTRUCTURE, NO_DATA, None, None, skipped_reason or "no metric window yet")
    if client is None:
        return CheckResult(
            INFRASTRUCTURE, ERROR, None, None, skipped_reason or f"no CloudWatch client for {region}"
        )
    dims = [{"Name": "Region", "Value": region}]
    queries = [
        {
            "Id": key,
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dims},
                "Period": window.period,
                "Stat": stat,
            },
            "ReturnData": True,
        }
        for key, metric, stat in METRIC_QUERIES
    ]
    try:
        response = await client.get_metric_data(
            MetricDataQueries=queries,
            StartTime=datetime.fromtimestamp(window.start, UTC),
            EndTime=datetime.fromtimestamp(window.end, UTC),
            ScanBy="TimestampDescending",
        )
    except Exception as exc:
        return CheckResult(INFRASTRUCTURE, ERROR, None, None, f"CloudWatch {region}: {_error_text(exc)}")
    values: dict[str, float | None] = {key: None for key, _, _ in METRIC_QUERIES}
    for result in response.get("MetricDataResults", []):
        numbers = [v for v in result.get("Values", []) if v is not None]
        if result.get("Id") in values and numbers:
            values[result["Id"]] = float(numbers[0])
    result = evaluate_metrics(values, thresholds)
    return CheckResult(
        result.name,
        result.status,
        result.value,
        result.threshold,
        result.detail,
        {"window": window.to_dict()},
    )
