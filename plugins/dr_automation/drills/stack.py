"""The regional drills' kit: the standing drill stack, the drill's own Route 53 records, real DNS
queries, a bounded load generator and fault injection.

- Route 53: per-drill health checks (Name ``<drill id>-<region>``, tagged with ``ctx.tags``) on the
  stack endpoints, and a PRIMARY/SECONDARY failover pair named ``ctx.record_name`` in
  ``route53.hosted_zone``, all through :class:`~dr_automation.hooks.route53.Route53Hook`. Cleanup finds
  them from the drill id alone (record name, tag), so a run that died halfway still leaves nothing.
- DNS: what ``route53.verify_nameservers`` answer, asked for real
  (:func:`dr_automation.triggers.route53.resolve_async`, as failover verification asks them).
- Load: a detached process (``python -m dr_automation.drills.stack load ...``, which imports no Airflow)
  so it outlives the task that starts it: it resolves the drill name by real DNS before every attempt, GETs the answered
  stack endpoint over a new connection, retries like a real client (``drills.load.attempts``,
  ``attempt_timeout_seconds``, exponential backoff) and writes every request and attempt with
  timestamps to S3 (``drills/<drill id>/load/load.json`` in the primary backup bucket) every second,
  so the later steps read it on whichever worker they run. It stops by itself after
  ``drills.load.max_seconds`` or when ``load/stop`` appears there. Only its pid and log stay on the
  worker that started it.
- Faults: ``POST <drills.stack.<region>.control_url>/_control`` (modes healthy/down/slow/erroring).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dr_automation.drills.scenario import DrillError

if TYPE_CHECKING:
    from dr_automation.drills.scenario import DrillContext
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

STACK_MODES = ("healthy", "down", "slow", "erroring")
# The AWS calls of this kit (its drill records and health checks, the monitor's metric read).
AWS_ACTIONS: tuple[str, ...] = (
    "route53:ListHostedZonesByName",
    "route53:ListResourceRecordSets",
    "route53:ChangeResourceRecordSets",
    "route53:ListHealthChecks",
    "route53:ListTagsForResources",
    "route53:CreateHealthCheck",
    "route53:ChangeTagsForResource",
    "route53:GetHealthCheck",
    "route53:DeleteHealthCheck",
    "monitoring:GetMetricData",
)
LOAD_PATH = "/api/whoami"
LOAD_PREFIX = "load/"  # the load process's results and stop flag, under the drill's S3 prefix
# A real client's retry: attempt n+1 starts RETRY_BACKOFF_SECONDS * 2**(n-1) after attempt n failed.
RETRY_BACKOFF_SECONDS = 1.0
LOAD_DEFAULTS = {"requests_per_second": 20, "attempts": 3, "attempt_timeout_seconds": 1.0, "max_seconds": 180}


# -- the stack ------------------------------------------------------------------------------------
def stack_endpoint(estate: Estate, region: str) -> dict[str, Any]:
    """``drills.stack.<region>`` (address, port, protocol, control_url)."""
    stack = estate.section("drills").get("stack") or {}
    if region not in stack:
        raise DrillError(
            f"drills.stack.{region}: no drill stack endpoint for {region} (have {sorted(stack)})"
        )
    spec = dict(stack[region])
    spec.setdefault("protocol", "HTTPS")
    return spec


def stack_regions(estate: Estate) -> list[str]:
    """Regions of the estate that have a drill stack endpoint, in the estate's order."""
    stack = estate.section("drills").get("stack") or {}
    return [r for r in estate.regions if r in stack]


def stack_url(estate: Estate, region: str, path: str = "") -> str:
    spec = stack_endpoint(estate, region)
    return f"{spec['protocol'].lower()}://{spec['address']}:{spec['port']}{path}"


def stack_health_url(estate: Estate, region: str) -> str:
    return stack_url(estate, region, estate.route53["health_check"]["resource_path"])


def control_url(estate: Estate, region: str) -> str:
    url = stack_endpoint(estate, region).get("control_url")
    if not url:
        raise DrillError(
            f"drills.stack.{region}.control_url: not set, so the drill cannot fail {region}'s stack"
        )
    return str(url).rstrip("/")


def set_stack_mode(estate: Estate, region: str, mode: str, **kwargs: float) -> dict[str, Any]:
    """Switch one stack region's app into ``mode`` (the fault injection); returns its answer."""
    import httpx

    if mode not in STACK_MODES:
        raise DrillError(f"mode: must be one of {', '.join(STACK_MODES)}, got {mode!r}")
    url = f"{control_url(estate, region)}/_control"
    try:
        response = httpx.post(url, json={"mode": mode, **kwargs}, timeout=5)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise DrillError(
            f"drills.stack.{region}.control_url: {url} failed ({type(exc).__name__}: {exc})"
        ) from exc
    log.info("drill stack %s -> %s", region, mode)
    return response.json()


def probe_stack(estate: Estate, region: str, *, timeout: float = 3.0) -> dict[str, Any]:
    """One real GET of the stack region's health endpoint."""
    import httpx

    url = stack_health_url(estate, region)
    started = time.monotonic()
    try:
        status: int | str = httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return {
        "region": region,
        "url": url,
        "healthy": status == 200,
        "status": status,
        "latency_ms": round((time.monotonic() - started) * 1000, 1),
    }


def reset_stack(estate: Estate) -> list[str]:
    """Every stack region back to healthy; returns the regions that could not be reset."""
    left = []
    for region in stack_regions(estate):
        try:
            set_stack_mode(estate, region, "healthy")
            if not probe_stack(estate, region)["healthy"]:
                left.append(f"drill stack {region} not healthy")
        except DrillError as exc:
            left.append(f"drill stack {region}: {exc}")
    return left


# -- Route 53 -------------------------------------------------------------------------------------
def route53_hook(estate: Estate) -> Any:
    from dr_automation.hooks.route53 import Route53Hook

    return Route53Hook(aws_conn_id=estate.connections["aws"])


def health_check_name(ctx: DrillContext, region: str) -> str:
    return ctx.name(region)


def health_check_config(estate: Estate, region: str) -> dict[str, Any]:
    """The drill's health check of a stack region: the estate's path, interval and threshold."""
    hc = estate.route53["health_check"]
    spec = stack_endpoint(estate, region)
    return {
        "Type": spec["protocol"],
        "IPAddress": spec["address"],
        "Port": int(spec["port"]),
        "ResourcePath": hc["resource_path"],
        "RequestInterval": int(hc["request_interval_seconds"]),
        "FailureThreshold": int(hc["failure_threshold"]),
    }


def failover_record(
    ctx: DrillContext, role: str, region: str, check_id: str, *, ttl: int | None = None
) -> dict[str, Any]:
    """One half of the drill's failover pair (``role`` PRIMARY or SECONDARY)."""
    from dr_automation.hooks.route53 import fqdn

    if role not in ("PRIMARY", "SECONDARY"):
        raise DrillError(f"role: must be PRIMARY or SECONDARY, got {role!r}")
    spec = stack_endpoint(ctx.estate, region)
    return {
        "Name": fqdn(ctx.record_name),
        "Type": "A",
        "SetIdentifier": f"{role.lower()}-{ctx.drill_id}",
        "Failover": role,
        "TTL": int(ttl if ttl is not None else ctx.estate.route53["manual_override_ttl_seconds"]),
        "ResourceRecords": [{"Value": spec["address"]}],
        "HealthCheckId": check_id,
    }


def create_routing(
    ctx: DrillContext, primary: str, secondary: str, *, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """Health checks for ``primary``, ``secondary`` (and ``extra``) stack regions and the failover
    pair of ``ctx.record_name``; idempotent (a retried setup finds what the first made)."""
    hook = route53_hook(ctx.estate)
    zone_id = hook.get_hosted_zone_id(ctx.estate.route53["hosted_zone"])
    checks: dict[str, str] = {}
    for region in dict.fromkeys([primary, secondary, *extra]):
        check_id, _ = hook.ensure_health_check(
            health_check_name(ctx, region), health_check_config(ctx.estate, region), ctx.tags
        )
        checks[region] = check_id
    records = [
        failover_record(ctx, "PRIMARY", primary, checks[primary]),
        failover_record(ctx, "SECONDARY", secondary, checks[secondary]),
    ]
    change = hook.change_record_sets(
        zone_id,
        [{"Action": "UPSERT", "ResourceRecordSet": r} for r in records],
        comment=f"drill {ctx.drill_id}: failover pair",
    )
    return {
        "zone_id": zone_id,
        "health_checks": checks,
        "records": records,
        "change_id": change.change_id,
    }


def hold(ctx: DrillContext, until: float) -> None:
    """Let traffic run until ``until`` (epoch seconds), under the stop condition."""
    while time.time() < until:
        ctx.check_stop()
        time.sleep(min(1.0, max(0.0, until - time.time())))


def require_healthy(estate: Estate, regions: Sequence[str]) -> None:
    """A drill starts only from a healthy stack (else what it measures is not its own doing)."""
    for region in regions:
        probe = probe_stack(estate, region)
        if not probe["healthy"]:
            raise DrillError(f"drills.stack.{region}: not healthy before the drill ({probe['status']})")


def route_drill_name(ctx: DrillContext, primary: str, secondary: str, *, extra: Sequence[str] = ()) -> None:
    """The drill's checks and failover pair (kept in ``ctx.state["routing"]`` for later steps, so a
    failure right after still leaves cleanup a trail), then wait until real DNS answers the primary."""
    ctx.state["routing"] = create_routing(ctx, primary, secondary, extra=extra)
    address = stack_endpoint(ctx.estate, primary)["address"]
    timeout = float(ctx.estate.route53["propagation_timeout_seconds"])
    ctx.mark("dns_primary", wait_for_answer(ctx, address, timeout=timeout, what="DNS answers the primary"))


def move_primary(ctx: DrillContext, region: str, check_id: str) -> dict[str, Any]:
    """The control-plane switch (as regional_failover's record_swap): the drill's PRIMARY record
    answers ``region``'s stack; the SECONDARY keeps what it had. Returns the change."""
    hook = route53_hook(ctx.estate)
    zone_id = hook.get_hosted_zone_id(ctx.estate.route53["hosted_zone"])
    record = failover_record(ctx, "PRIMARY", region, check_id)
    change = hook.change_record_sets(
        zone_id,
        [{"Action": "UPSERT", "ResourceRecordSet": record}],
        comment=f"drill {ctx.drill_id}: -> {region}",
    )
    return {"zone_id": zone_id, "change": change.to_dict(), "record": record}


def drill_health_checks(hook: Any, drill: str, tag_key: str) -> list[dict[str, Any]]:
    checks = hook.list_health_checks()
    tags = hook.health_check_tags(c["Id"] for c in checks)
    return [c for c in checks if tags.get(c["Id"], {}).get(tag_key) == drill]


def remove_routing(ctx: DrillContext) -> list[str]:
    """Delete the drill's records (by name) and health checks (by tag); returns what remains."""
    hook = route53_hook(ctx.estate)
    zone_id = hook.get_hosted_zone_id(ctx.estate.route53["hosted_zone"])
    records = hook.list_record_sets(zone_id, name=ctx.record_name)
    if records:
        hook.change_record_sets(
            zone_id,
            [{"Action": "DELETE", "ResourceRecordSet": r} for r in records],
            comment=f"drill {ctx.drill_id}: cleanup",
        )
    for check in drill_health_checks(hook, ctx.drill_id, ctx.tag_key):
        hook.delete_health_check(check["Id"])
    left = [
        f"record {r['Name']} {r.get('SetIdentifier', '')}"
        for r in hook.list_record_sets(zone_id, name=ctx.record_name)
    ]
    left += [f"health check {c['Id']}" for c in drill_health_checks(hook, ctx.drill_id, ctx.tag_key)]
    return left


def audit_dns_change(ctx: DrillContext, status: str, detail: Mapping[str, Any]) -> bool:
    """Record a drill DNS change in the audit log, the way the bundle audits its DNS switches."""
    from dr_automation.audit import audit_step, current_context

    return audit_step(
        ctx.estate,
        "drill.dns_switch",
        status,
        current_context(),
        log=log,
        target=ctx.record_name,
        detail=dict(detail),
    )


# -- detection: the health monitor's own checks and rule, on the drill stack -----------------------
def detect(
    ctx: DrillContext, serving: str, *, regions: Sequence[str] | None = None, timeout: float | None = None
) -> dict[str, Any]:
    """Run the health monitor's cycles (dr_automation.health.monitor) against the drill stack every
    ``health.check_interval_seconds`` until its rule fires (``health.consecutive_failures``).

    The stack publishes no metrics of its own, so the monitor reads an empty namespace and the
    infrastructure check is ``no_data`` (left out of the score); the API check decides. Nothing is
    persisted to the health history and nothing triggers regional_failover: the production monitor
    and failover never see the drill.
    """
    from dr_automation.health.monitor import MonitorSettings, RegionHealthMonitor, RegionSpec

    estate = ctx.estate
    health = estate.health
    names = list(regions or stack_regions(estate))
    settings = MonitorSettings(
        monitor_id=ctx.name("monitor"),
        serving_region=serving,
        regions=tuple(
            RegionSpec(name=r, role=estate.regions[r].role, url=stack_health_url(estate, r)) for r in names
        ),
        thresholds={k: float(v) for k, v in health["thresholds"].items()},
        check_interval=float(health["check_interval_seconds"]),
        consecutive_failures=int(health["consecutive_failures"]),
        healthy_score=float(health["healthy_score"]),
        metrics_namespace=f"{health['metrics_namespace']}/DrillStack",
        metrics_period_seconds=float(health["metrics_period_seconds"]),
        aws_conn_id=estate.connections["aws"],
    )
    limit = timeout or settings.check_interval * (settings.consecutive_failures + 2) + 60

    async def watch() -> dict[str, Any]:
        monitor = RegionHealthMonitor(settings, log=log)
        deadline = time.monotonic() + limit
        async with monitor:
            while True:
                started = time.monotonic()
                await monitor.run_cycle()
                kind = monitor.fire_kind()
                if kind:
                    return {"kind": kind, "event": monitor.payload(kind), "cycles": monitor.cycle}
                if time.monotonic() > deadline:
                    raise DrillError(
                        f"detection: the health monitor's rule did not fire within {limit:.0f}s "
                        f"({monitor.cycle} cycles)"
                    )
                await asyncio.to_thread(ctx.check_stop)
                await asyncio.sleep(max(0.0, settings.check_interval - (time.monotonic() - started)))

    found = asyncio.run(watch())
    event = found["event"]
    return {
        "kind": found["kind"],
        "cycles": found["cycles"],
        "detected_at": _epoch(event.get("detected_at")),
        "healthy_regions": event["healthy_regions"],
        "unhealthy_regions": event["unhealthy_regions"],
        "serving_region": serving,
        "regions": {
            name: {k: r.get(k) for k in ("healthy", "score", "consecutive_failures", "failing_since")}
            for name, r in event["regions"].items()
        },
    }


def _epoch(iso: str | None) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() if iso else time.time()


def clean_up(ctx: DrillContext, *extra: tuple[str, Callable[[], list[str]]]) -> list[str]:
    """Everything a regional drill made, found from its id (load process, records, health checks),
    the stack back to healthy, then ``extra`` parts; each part is attempted even if another fails.
    Returns what remains (or could not be checked)."""
    parts: list[tuple[str, Callable[[], list[str]]]] = [
        ("load", lambda: remove_load(ctx)),
        ("route53", lambda: remove_routing(ctx)),
        ("drill stack", lambda: reset_stack(ctx.estate)),
        *extra,
    ]
    remaining: list[str] = []
    for what, fn in parts:
        try:
            remaining += fn()
        except Exception as exc:
            remaining.append(f"{what}: not checked ({type(exc).__name__}: {str(exc)[:200]})")
    log.info("drill %s cleanup: %s", ctx.drill_id, remaining or "nothing left")
    return remaining


# -- DNS ------------------------------------------------------------------------------------------
def nameservers(estate: Estate) -> list[str]:
    found = list(estate.route53.get("verify_nameservers") or [])
    if not found:
        raise DrillError("route53.verify_nameservers: empty, so the drill cannot ask DNS what clients get")
    return found


def dns_answers(estate: Estate, name: str, *, timeout: float = 2.0) -> dict[str, list[str]]:
    """What every verify nameserver answers for ``name`` now (real queries; [] = no answer)."""
    from dr_automation.triggers.route53 import resolve_async

    servers = nameservers(estate)

    async def ask() -> list[list[str]]:
        return await asyncio.gather(*(resolve_async(name, "A", ns, timeout) for ns in servers))

    return dict(zip(servers, asyncio.run(ask()), strict=True))


def dns_answers_only(estate: Estate, name: str, address: str) -> bool:
    """Every verify nameserver answers exactly ``address``."""
    from dr_automation.triggers.route53 import answers_match

    return all(answers_match(a, [address]) for a in dns_answers(estate, name).values())


def wait_for_answer(ctx: DrillContext, address: str, *, timeout: float, what: str) -> float:
    """Wait until DNS answers ``address`` for the drill record; returns when it was first seen."""
    _, seen = ctx.wait_for(
        what, lambda: dns_answers_only(ctx.estate, ctx.record_name, address), timeout=timeout, interval=0.2
    )
    return seen


# -- load -----------------------------------------------------------------------------------------
def load_settings(estate: Estate) -> dict[str, float]:
    return {**LOAD_DEFAULTS, **(estate.section("drills").get("load") or {})}


def load_dir(drill: str) -> Path:
    """Where the drill's load process keeps its pid and log, on the worker that started it."""
    return Path(tempfile.gettempdir()) / "dr-drills" / drill


class LoadStore:
    """Where a load process's results and stop flag live: S3, under the drill's own prefix in the
    primary backup bucket, so whichever worker runs the next step reads them and can stop it."""

    def __init__(self, client: Any, bucket: str, prefix: str, kms_key: str) -> None:
        self.client, self.bucket, self.prefix, self.kms_key = client, bucket, prefix, kms_key

    @classmethod
    def for_drill(cls, ctx: DrillContext) -> LoadStore:
        primary = ctx.estate.primary_region
        return cls(ctx.aws("s3"), primary.backup_bucket, ctx.prefix + LOAD_PREFIX, primary.kms_key_alias)

    def describe(self) -> dict[str, str]:
        return {"bucket": self.bucket, "prefix": self.prefix, "kms_key": self.kms_key}

    def put(self, name: str, data: Any) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self.prefix + name,
            Body=json.dumps(data).encode(),
            ContentType="application/json",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=self.kms_key,
        )

    def get(self, name: str) -> Any:
        try:
            return json.loads(
                self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read()
            )
        except self.client.exceptions.NoSuchKey:
            return None

    def has(self, name: str) -> bool:
        return bool(
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + name).get("KeyCount")
        )

    def count(self) -> int:
        return int(self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix).get("KeyCount", 0))

    def clear(self, name: str = "") -> None:
        from dr_automation.backup.components import delete_versions

        delete_versions(self.client, self.bucket, self.prefix + name)


def _load_env(ctx: DrillContext) -> dict[str, str]:
    """The AWS access the load process needs to write its results: the drill connection's own
    credentials, handed over in its environment (never on its command line, never logged)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    region = ctx.estate.primary_region.name
    hook = AwsBaseHook(aws_conn_id=ctx.estate.connections["aws"], client_type="s3", region_name=region)
    creds = hook.get_credentials(region_name=region)
    env = {
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_DEFAULT_REGION": region,
    }
    if creds.token:
        env["AWS_SESSION_TOKEN"] = creds.token
    endpoint = hook.conn_config.endpoint_url
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def load_stats(
    requests: Sequence[Mapping[str, Any]], *, start: float | None = None, end: float | None = None
) -> dict[str, Any]:
    """Request- and attempt-level success over [start, end] (by the request's start time), and which
    address served the successful attempts (pure; unit-tested)."""
    chosen = [
        r
        for r in requests
        if (start is None or r["started"] >= start) and (end is None or r["started"] <= end)
    ]
    attempts = [a for r in chosen for a in r.get("attempts", [])]
    ok_requests = sum(1 for r in chosen if r.get("ok"))
    ok_attempts = sum(1 for a in attempts if a.get("ok"))
    served: dict[str, int] = {}
    for a in attempts:
        if a.get("ok"):
            served[a.get("address") or "?"] = served.get(a.get("address") or "?", 0) + 1
    return {
        "requests": len(chosen),
        "requests_succeeded": ok_requests,
        "request_success_rate": round(ok_requests / len(chosen), 4) if chosen else None,
        "attempts": len(attempts),
        "attempts_succeeded": ok_attempts,
        "attempt_success_rate": round(ok_attempts / len(attempts), 4) if attempts else None,
        "served_by_address": served,
    }


def first_attempt(
    requests: Sequence[Mapping[str, Any]], *, after: float, address: str, ok: bool | None = None
) -> float | None:
    """When the first attempt after ``after`` was sent to ``address`` (DNS answered it); with ``ok``,
    only attempts that succeeded (True) or failed (False)."""
    times = [
        a["at"]
        for r in requests
        for a in r.get("attempts", [])
        if a["at"] >= after and a.get("address") == address and (ok is None or bool(a.get("ok")) == ok)
    ]
    return min(times) if times else None


def start_load(ctx: DrillContext) -> dict[str, Any]:
    """Start the drill's load process (detached); idempotent per drill id on this worker."""
    folder = load_dir(ctx.drill_id)
    folder.mkdir(parents=True, exist_ok=True)
    pid_file = folder / "pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        return {"pid": int(pid_file.read_text()), "dir": str(folder)}
    store = LoadStore.for_drill(ctx)
    store.clear("stop")
    settings = load_settings(ctx.estate)
    stack = {
        spec["address"]: spec for spec in (stack_endpoint(ctx.estate, r) for r in stack_regions(ctx.estate))
    }
    argv = [
        sys.executable,
        "-m",
        "dr_automation.drills.stack",
        "load",
        "--name",
        ctx.record_name,
        "--dir",
        str(folder),
        "--store",
        json.dumps(store.describe()),
        "--nameservers",
        ",".join(nameservers(ctx.estate)),
        "--endpoints",
        json.dumps({a: f"{s['protocol'].lower()}://{a}:{s['port']}" for a, s in stack.items()}),
        "--settings",
        json.dumps(settings),
    ]
    # the package's own location first: a worker puts the plugins folder on sys.path, not on PYTHONPATH
    package_root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        **_load_env(ctx),
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
    }
    with open(folder / "load.log", "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text(str(proc.pid))
    log.info("drill %s: load process %s on %s", ctx.drill_id, proc.pid, ctx.record_name)
    return {
        "pid": proc.pid,
        "dir": str(folder),
        "results": f"s3://{store.bucket}/{store.prefix}",
        "settings": settings,
    }


def load_problem(ctx: DrillContext) -> str:
    """Why the load process serves nothing: its last attempt's error and the end of its log (when
    the log is on this worker)."""
    requests = read_load(ctx)["requests"]
    last = requests[-1]["attempts"][-1] if requests else None
    path = load_dir(ctx.drill_id) / "load.log"
    tail = path.read_text()[-600:].strip() if path.exists() else "on the worker that started it"
    return f"{len(requests)} requests, last attempt {last}; log: {tail}"


def read_load(ctx: DrillContext, store: LoadStore | None = None) -> dict[str, Any]:
    found = (store or LoadStore.for_drill(ctx)).get("load.json")
    return found if isinstance(found, dict) else {"requests": [], "finished": False}


def stop_load(ctx: DrillContext, *, timeout: float = 15.0) -> dict[str, Any]:
    """Tell the load process to stop (wherever it runs) and wait for its final results; a process on
    this worker that will not stop is killed (by pid)."""
    store = LoadStore.for_drill(ctx)
    folder = load_dir(ctx.drill_id)
    if not folder.exists() and not store.count():
        return {"requests": [], "finished": True}
    store.put("stop", {"at": time.time()})
    pid_file = folder / "pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid and not _alive(pid):
            break
        if not pid and read_load(ctx, store).get("finished"):
            break
        time.sleep(0.2)
    if pid and _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return read_load(ctx, store)


def remove_load(ctx: DrillContext) -> list[str]:
    """Stop the load process, then delete its results and files; returns what remains."""
    import shutil

    store = LoadStore.for_drill(ctx)
    folder = load_dir(ctx.drill_id)
    if folder.exists() or store.count():
        stop_load(ctx, timeout=10)
        store.clear()
        shutil.rmtree(folder, ignore_errors=True)
    left = [f"load files {folder}"] if folder.exists() else []
    if store.count():
        left.append(f"load results s3://{store.bucket}/{store.prefix}")
    return left


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our child, exited) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class LoadGenerator:
    """Requests at a fixed rate, each resolving the name by real DNS and retrying like a client."""

    def __init__(
        self,
        name: str,
        *,
        nameservers: Sequence[str],
        endpoints: Mapping[str, str],
        settings: Mapping[str, Any],
        path: str = LOAD_PATH,
    ) -> None:
        self.name = name
        self.nameservers = list(nameservers)
        self.endpoints = dict(endpoints)
        self.rate = float(settings["requests_per_second"])
        self.attempts = int(settings["attempts"])
        self.attempt_timeout = float(settings["attempt_timeout_seconds"])
        self.max_seconds = float(settings["max_seconds"])
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    def resolve(self) -> str | None:
        """One real DNS query, no cache. dnspython directly, not triggers.route53.resolve_async: this
        process must not import Airflow (outside a task it has no metadata database to configure)."""
        import dns.exception
        import dns.resolver

        host, _, port = self.nameservers[0].rpartition(":")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host or self.nameservers[0]]
        resolver.port = int(port) if host else 53
        resolver.lifetime = self.attempt_timeout
        resolver.cache = None
        try:
            answer = resolver.resolve(self.name, "A")
        except (dns.exception.DNSException, OSError):
            return None
        return sorted(rr.to_text() for rr in answer)[0]

    def attempt(self) -> dict[str, Any]:
        import httpx

        at = time.time()
        address = self.resolve()
        if address is None:
            return {"at": at, "ok": False, "address": None, "error": "no DNS answer"}
        base = self.endpoints.get(address)
        if base is None:
            return {"at": at, "ok": False, "address": address, "error": "answer is not a drill stack address"}
        try:
            with httpx.Client(timeout=self.attempt_timeout, trust_env=False) as client:
                status = client.get(f"{base}{self.path}").status_code
        except httpx.HTTPError as exc:
            return {"at": at, "ok": False, "address": address, "error": type(exc).__name__}
        return {"at": at, "ok": status == 200, "address": address, "status": status}

    def request(self) -> None:
        started = time.time()
        attempts = []
        for n in range(self.attempts):
            result = self.attempt()
            attempts.append(result)
            if result["ok"] or n == self.attempts - 1:
                break
            time.sleep(RETRY_BACKOFF_SECONDS * 2**n)
        record = {"started": started, "ended": time.time(), "ok": attempts[-1]["ok"], "attempts": attempts}
        with self._lock:
            self.requests.append(record)

    def snapshot(self, *, finished: bool) -> dict[str, Any]:
        with self._lock:
            requests = sorted(self.requests, key=lambda r: r["started"])
        return {
            "name": self.name,
            "settings": {
                "requests_per_second": self.rate,
                "attempts": self.attempts,
                "attempt_timeout_seconds": self.attempt_timeout,
                "max_seconds": self.max_seconds,
                "retry_backoff_seconds": RETRY_BACKOFF_SECONDS,
            },
            "finished": finished,
            "requests": requests,
        }

    def run(self, folder: Path, store: LoadStore | None = None) -> None:
        """Send until stopped or ``max_seconds``; results to ``store`` every second and at the end."""
        deadline = time.monotonic() + self.max_seconds
        interval = 1.0 / self.rate
        workers = max(4, min(64, int(self.rate * self.attempts * (self.attempt_timeout + 2) + 1)))
        next_at = time.monotonic()
        last_write = 0.0
        stop = False
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drill-load")
        try:
            while time.monotonic() < deadline and not stop and not (folder / "stop").exists():
                pool.submit(self.request)
                next_at += interval
                now = time.monotonic()
                if now - last_write >= 1.0:
                    self._publish(folder, store, finished=False)
                    stop = store is not None and store.has("stop")
                    last_write = now
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:  # requests in flight finish (and count); queued ones were never sent
            pool.shutdown(wait=True, cancel_futures=True)
        self._publish(folder, store, finished=True)

    def _publish(self, folder: Path, store: LoadStore | None, *, finished: bool) -> None:
        snapshot = self.snapshot(finished=finished)
        if store is None:
            _write_json(folder / "load.json", snapshot)
            return
        try:
            store.put("load.json", snapshot)
        except Exception as exc:  # the next second tries again; the final write must succeed
            if finished:
                raise
            log.warning("load results not written: %s", exc)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dr_automation.drills.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load", help="the drill's bounded load generator")
    load.add_argument("--name", required=True)
    load.add_argument("--dir", required=True, type=Path, help="pid and log (this machine)")
    load.add_argument("--store", help="JSON: bucket, prefix, kms_key of the results in S3")
    load.add_argument("--nameservers", required=True)
    load.add_argument("--endpoints", required=True, help="JSON: address -> base URL")
    load.add_argument("--settings", required=True, help="JSON: drills.load")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    generator = LoadGenerator(
        args.name,
        nameservers=args.nameservers.split(","),
        endpoints=json.loads(args.endpoints),
        settings=json.loads(args.settings),
    )
    store = None
    if args.store:
        import boto3  # noqa: TID251 - this process imports no Airflow, so no provider hook

        where = json.loads(args.store)
        store = LoadStore(boto3.client("s3"), where["bucket"], where["prefix"], where["kms_key"])
    generator.run(args.dir, store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
