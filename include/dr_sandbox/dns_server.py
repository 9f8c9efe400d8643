"""Stand-in for Route 53's data plane: a real authoritative DNS server plus its health checkers.

moto emulates Route 53's control plane (zones, records, health checks) but nothing answers DNS and
every health check reads as healthy. This server closes that gap so failover is exercised the way it
works in AWS: health checkers probe the regional endpoints, and DNS answers follow their status
through the records' routing policy, without anyone editing a record.

Run: ``python -m dr_sandbox.dns_server --host 127.0.0.1 --port 5353 --aws-endpoint http://127.0.0.1:5000``.

Behaviour, following Route 53's documentation, and where it is simplified:
- Every hosted zone in the emulator is served authoritatively (AA), re-read every ``refresh_seconds``;
  when the emulator cannot be read the last good copy keeps being served (the data plane outlives
  a control plane outage, as in AWS). Names outside every zone get REFUSED, unknown names inside a
  zone NXDOMAIN (with the zone's SOA), existing names without the asked type NOERROR/NODATA.
- Routing: simple; FAILOVER (the PRIMARY when healthy, else the SECONDARY when healthy, else the
  PRIMARY); WEIGHTED (weighted random among healthy records, all records when none is healthy);
  other policies answer one healthy record. A record without a health check is healthy. Aliases to
  names in served zones are followed; CNAMEs inside served zones are chased.
- Health checks (HTTP, HTTPS, *_STR_MATCH, TCP, CALCULATED): one checker per check probes every
  RequestInterval (or ``interval_override``). HTTP(S): TCP connect within 4 s, then a 2xx/3xx status
  within 2 s (STR_MATCH: SearchString in the first 5,120 bytes); TCP: connect within 10 s. A check
  starts healthy (Route 53 treats a new check as healthy until it has enough data) and changes state
  after FailureThreshold consecutive failures or successes. Inverted flips the status; Disabled stops
  probing and reads as healthy whatever Inverted says. Config is re-read on every refresh, so
  UpdateHealthCheck takes effect without a restart; deleted checks stop. Real Route 53 polls from
  many checker regions and aggregates (healthy if >18% say so): here one checker stands for all.
- Safety: only loopback targets are ever probed; any other address is refused, logged and marked
  unhealthy, so the sandbox can never send traffic off the machine.
- ``GET /status`` on the status port reports every check and the current failover answers.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import http.client
import http.server
import ipaddress
import json
import logging
import os
import random
import re
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from dr_sandbox.netguard import require_loopback, serve_until_signalled

log = logging.getLogger("dr_sandbox.dns_server")

HTTP_CONNECT_TIMEOUT_S = 4.0  # Route 53: TCP connection within four seconds
HTTP_RESPONSE_TIMEOUT_S = 2.0  # Route 53: a 2xx/3xx status within two seconds after connecting
TCP_CONNECT_TIMEOUT_S = 10.0  # Route 53: TCP checks connect within ten seconds
STR_MATCH_BYTES = 5120
MAX_CHASE = 8
TARGET_KEYS = (
    "Type",
    "IPAddress",
    "Port",
    "ResourcePath",
    "FullyQualifiedDomainName",
    "SearchString",
    "EnableSNI",
)


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else None


# --------------------------------------------------------------------------- health checks


@dataclass
class CheckState:
    """What one checker has measured so far."""

    measured_healthy: bool = True
    consecutive_successes: int = 0
    consecutive_failures: int = 0
    probes: int = 0
    last_probe_at: float | None = None
    last_latency_ms: float | None = None
    last_result: bool | None = None
    last_error: str | None = None
    refused: str | None = None


def probe_target_error(config: dict[str, Any]) -> str | None:
    """Why this check's target must not be probed (None when it is a loopback address)."""
    ip = config.get("IPAddress")
    if not ip:
        return (
            "refused: no IPAddress (FullyQualifiedDomainName-only checks would resolve and probe off-machine)"
        )
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"refused: IPAddress {ip!r} is not a valid IP address"
    if not addr.is_loopback:
        return f"refused: IPAddress {ip} is outside 127.0.0.0/8; the sandbox probes loopback only"
    return None


def _default_port(check_type: str) -> int:
    return 443 if check_type.startswith("HTTPS") else 80


def probe(config: dict[str, Any], *, connect_timeout: float | None = None) -> tuple[bool, float, str | None]:
    """Probe a (loopback) endpoint once; returns (success, latency ms, error)."""
    check_type = config.get("Type", "HTTP")
    ip = config["IPAddress"]
    port = int(config.get("Port") or _default_port(check_type))
    started = time.monotonic()
    try:
        if check_type == "TCP":
            with socket.create_connection((ip, port), timeout=connect_timeout or TCP_CONNECT_TIMEOUT_S):
                pass
            return True, (time.monotonic() - started) * 1000.0, None
        timeout = connect_timeout or HTTP_CONNECT_TIMEOUT_S
        fqdn = config.get("FullyQualifiedDomainName")
        conn: http.client.HTTPConnection
        if check_type.startswith("HTTPS"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False  # Route 53 does not validate certificates
            ctx.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(ip, port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(ip, port, timeout=timeout)
        try:
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(HTTP_RESPONSE_TIMEOUT_S)
            host_header = fqdn or ip
            if port != _default_port(check_type):
                host_header = f"{host_header}:{port}"
            conn.request(
                "GET",
                config.get("ResourcePath") or "/",
                headers={"Host": host_header, "User-Agent": "Amazon-Route53-Health-Check-Service (sandbox)"},
            )
            response = conn.getresponse()
            body = response.read(STR_MATCH_BYTES) if check_type.endswith("STR_MATCH") else b""
            latency = (time.monotonic() - started) * 1000.0
            if not 200 <= response.status < 400:
                return False, latency, f"HTTP {response.status}"
            search = config.get("SearchString")
            if check_type.endswith("STR_MATCH") and search and search.encode() not in body:
                return False, latency, f"SearchString {search!r} not in the first {STR_MATCH_BYTES} bytes"
            return True, latency, None
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return False, (time.monotonic() - started) * 1000.0, f"{type(exc).__name__}: {exc}"


class HealthChecker:
    """Probes one health check's endpoint on its own thread and keeps its Route 53-style status."""

    def __init__(
        self,
        check_id: str,
        config: dict[str, Any],
        *,
        interval_override: float | None,
        resolve: Callable[[str, int], bool],
    ) -> None:
        self.id = check_id
        self._config = dict(config)
        self._interval_override = interval_override
        self._resolve = resolve
        self._lock = threading.Lock()
        self.state = CheckState()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"healthcheck-{check_id[:8]}", daemon=True)

    # ----- config -----
    @property
    def config(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._config)

    @property
    def interval(self) -> float:
        if self._interval_override:
            return self._interval_override
        return float(self.config.get("RequestInterval") or 30)

    def update_config(self, config: dict[str, Any]) -> None:
        with self._lock:
            old = self._config
            if old == config:
                return
            self._config = dict(config)
            if any(old.get(k) != config.get(k) for k in TARGET_KEYS):
                # A new target has no history: keep the status, restart the consecutive counts.
                self.state.consecutive_failures = 0
                self.state.consecutive_successes = 0
                self.state.refused = None
        log.info("health check %s updated: %s", self.id, _describe(config))
        self._wake.set()

    # ----- status -----
    def healthy(self, depth: int = 0) -> bool:
        """The status DNS answers use: Disabled -> healthy, else measured status, flipped by Inverted."""
        config = self.config
        if config.get("Disabled"):
            return True
        check_type = config.get("Type", "HTTP")
        if check_type == "CALCULATED":
            children = config.get("ChildHealthChecks") or []
            threshold = int(config.get("HealthThreshold") or 0)
            healthy_children = sum(1 for child in children if self._resolve(child, depth + 1))
            measured = healthy_children >= threshold
        elif check_type == "CLOUDWATCH_METRIC":
            measured = config.get("InsufficientDataHealthStatus") != "Unhealthy"
        else:
            with self._lock:
                measured = self.state.measured_healthy
        return (not measured) if config.get("Inverted") else measured

    def snapshot(self) -> dict[str, Any]:
        config = self.config
        with self._lock:
            st = CheckState(**self.state.__dict__)
        check_type = config.get("Type", "HTTP")
        port = config.get("Port") or (
            _default_port(check_type) if check_type.startswith(("HTTP", "TCP")) else None
        )
        target = None
        if check_type.startswith(("HTTP", "TCP")):
            target = (
                f"{check_type} {config.get('IPAddress') or config.get('FullyQualifiedDomainName')}:{port}"
            )
            if check_type != "TCP":
                target += config.get("ResourcePath") or "/"
        return {
            "id": self.id,
            "type": check_type,
            "target": target,
            "ip_address": config.get("IPAddress"),
            "port": port,
            "resource_path": config.get("ResourcePath"),
            "request_interval": config.get("RequestInterval"),
            "effective_interval_seconds": self.interval,
            "failure_threshold": config.get("FailureThreshold"),
            "inverted": bool(config.get("Inverted")),
            "disabled": bool(config.get("Disabled")),
            "healthy": self.healthy(),
            "measured_healthy": st.measured_healthy,
            "consecutive_successes": st.consecutive_successes,
            "consecutive_failures": st.consecutive_failures,
            "probes": st.probes,
            "last_probe_at": _iso(st.last_probe_at),
            "last_probe_latency_ms": None if st.last_latency_ms is None else round(st.last_latency_ms, 2),
            "last_result": st.last_result,
            "last_error": st.refused or st.last_error,
        }

    # ----- probing -----
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            config = self.config
            check_type = config.get("Type", "HTTP")
            if not config.get("Disabled") and check_type.startswith(("HTTP", "TCP")):
                self.probe_once(config)
            self._wake.clear()
            remaining = self.interval - (time.monotonic() - started)
            if remaining > 0:
                self._wake.wait(remaining)

    def probe_once(self, config: dict[str, Any]) -> None:
        refusal = probe_target_error(config)
        if refusal:
            with self._lock:
                first = self.state.refused != refusal
                self.state.refused = refusal
                self.state.measured_healthy = False
                self.state.last_result = False
                self.state.last_probe_at = time.time()
            if first:
                log.warning("health check %s %s: marked unhealthy, not probed", self.id, refusal)
            return
        ok, latency_ms, error = probe(config)
        threshold = max(1, int(config.get("FailureThreshold") or 3))
        with self._lock:
            if any(self._config.get(k) != config.get(k) for k in TARGET_KEYS):
                return  # the target changed while this probe ran: its result belongs to the old one
            st = self.state
            st.probes += 1
            st.last_probe_at = time.time()
            st.last_latency_ms = latency_ms
            st.last_result = ok
            st.last_error = error
            before = st.measured_healthy
            if ok:
                st.consecutive_successes += 1
                st.consecutive_failures = 0
                if not st.measured_healthy and st.consecutive_successes >= threshold:
                    st.measured_healthy = True
            else:
                st.consecutive_failures += 1
                st.consecutive_successes = 0
                if st.measured_healthy and st.consecutive_failures >= threshold:
                    st.measured_healthy = False
            after = st.measured_healthy
        if before != after:
            log.warning(
                "health check %s (%s) is now %s%s",
                self.id,
                _describe(config),
                "HEALTHY" if after else "UNHEALTHY",
                f" ({error})" if error else "",
            )


def _describe(config: dict[str, Any]) -> str:
    return (
        f"{config.get('Type')} {config.get('IPAddress')}:{config.get('Port')}{config.get('ResourcePath') or ''}"
        f" inverted={bool(config.get('Inverted'))} disabled={bool(config.get('Disabled'))}"
    )


# --------------------------------------------------------------------------- zone data


@dataclass(frozen=True)
class RecordSet:
    """One Route 53 resource record set, parsed into DNS terms."""

    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    ttl: int
    rdatas: tuple[dns.rdata.Rdata, ...]
    set_identifier: str | None = None
    failover: str | None = None
    weight: int | None = None
    routing: str = "simple"
    health_check_id: str | None = None
    alias_target: dns.name.Name | None = None
    evaluate_target_health: bool = False


@dataclass
class Zone:
    """A hosted zone's records, indexed by owner name then type."""

    id: str
    name: dns.name.Name
    nodes: dict[dns.name.Name, dict[dns.rdatatype.RdataType, list[RecordSet]]] = field(default_factory=dict)
    existing: set[dns.name.Name] = field(default_factory=set)  # owners plus empty non-terminals
    soa: dns.rrset.RRset | None = None


_OCTAL = re.compile(r"\\([0-7]{3})")


def parse_route53_name(text: str) -> dns.name.Name:
    """Route 53 escapes special characters as octal (\\052 is '*'); dnspython reads \\DDD as decimal."""
    decoded = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)
    return dns.name.from_text(decoded, origin=dns.name.root)


def _rdata_value(rtype: str, value: str) -> str:
    # moto returns the zone's SOA value as the repr of a dict: {'Value': '...'}
    if value.startswith("{") and "Value" in value:
        try:
            parsed = ast.literal_eval(value)
            if isinstance(parsed, dict) and isinstance(parsed.get("Value"), str):
                return parsed["Value"]
        except (ValueError, SyntaxError):
            pass
    return value


def build_zone(zone_id: str, zone_name: str, record_sets: Iterable[dict[str, Any]]) -> Zone:
    """Turn Route 53 ListResourceRecordSets output into a lookup structure; bad values are skipped."""
    origin = parse_route53_name(zone_name)
    zone = Zone(id=zone_id, name=origin)
    keyed: dict[tuple[dns.name.Name, dns.rdatatype.RdataType, str | None], RecordSet] = {}
    for raw in record_sets:
        try:
            name = parse_route53_name(raw["Name"])
            rdtype = dns.rdatatype.from_text(raw["Type"])
        except (dns.exception.DNSException, KeyError, ValueError) as exc:
            log.warning("zone %s: skipping record %r: %s", zone_name, raw.get("Name"), exc)
            continue
        if not name.is_subdomain(origin):
            continue
        rdatas = []
        for rr in raw.get("ResourceRecords") or []:
            value = _rdata_value(raw["Type"], rr.get("Value", ""))
            try:
                rdatas.append(
                    dns.rdata.from_text(
                        dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False
                    )
                )
            except dns.exception.DNSException as exc:
                log.warning(
                    "zone %s: skipping %s %s value %r: %s", zone_name, raw["Name"], raw["Type"], value, exc
                )
        alias = raw.get("AliasTarget")
        routing = "simple"
        if raw.get("Failover"):
            routing = "failover"
        elif raw.get("Weight") is not None:
            routing = "weighted"
        elif raw.get("Region"):
            routing = "latency"
        elif raw.get("GeoLocation"):
            routing = "geolocation"
        elif raw.get("MultiValueAnswer"):
            routing = "multivalue"
        record = RecordSet(
            name=name,
            rdtype=rdtype,
            ttl=int(raw["TTL"]) if raw.get("TTL") is not None else 60,
            rdatas=tuple(rdatas),
            set_identifier=raw.get("SetIdentifier"),
            failover=raw.get("Failover"),
            weight=raw.get("Weight"),
            routing=routing,
            health_check_id=raw.get("HealthCheckId"),
            alias_target=parse_route53_name(alias["DNSName"]) if alias else None,
            evaluate_target_health=bool(alias.get("EvaluateTargetHealth")) if alias else False,
        )
        if not record.rdatas and record.alias_target is None:
            continue
        # moto stores a duplicate CREATE as a second copy: the last one wins, as an UPSERT would.
        keyed[(name, rdtype, record.set_identifier)] = record
    for record in keyed.values():
        zone.nodes.setdefault(record.name, {}).setdefault(record.rdtype, []).append(record)
        node = record.name
        while node != origin and node.is_subdomain(origin):
            zone.existing.add(node)
            node = node.parent()
    zone.existing.add(origin)
    soa_sets = zone.nodes.get(origin, {}).get(dns.rdatatype.SOA)
    if soa_sets and soa_sets[0].rdatas:
        soa = soa_sets[0]
        zone.soa = dns.rrset.from_rdata_list(origin, soa.ttl, list(soa.rdatas[:1]))
    else:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            f"ns-1.sandbox.invalid. hostmaster.{origin} 1 7200 900 1209600 86400",
        )
        zone.soa = dns.rrset.from_rdata_list(origin, 900, [rdata])
    return zone


# --------------------------------------------------------------------------- the server


class DnsServer:
    """Zone snapshot, health checkers, query answering and the refresh loop."""

    def __init__(
        self,
        aws_endpoint: str,
        *,
        refresh_seconds: float = 1.0,
        interval_override: float | None = None,
        aws_region: str = "us-east-1",
    ) -> None:
        if refresh_seconds <= 0:
            raise ValueError(f"refresh_seconds: must be > 0, got {refresh_seconds}")
        if interval_override is not None and interval_override <= 0:
            raise ValueError(f"interval_override: must be > 0 seconds, got {interval_override}")
        self.aws_endpoint = aws_endpoint
        self.aws_region = aws_region
        self.refresh_seconds = refresh_seconds
        self.interval_override = interval_override
        self._zones: list[Zone] = []
        self._checkers: dict[str, HealthChecker] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._client: Any = None
        self._random = random.Random()
        self.refresh_count = 0
        self.last_refresh_at: float | None = None
        self.last_refresh_error: str | None = None
        self.queries = 0
        self.servfail_until = 0.0  # fault: answer SERVFAIL until this monotonic time

    # ----- refresh from the emulator -----
    def _route53(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "route53",
                endpoint_url=self.aws_endpoint,
                region_name=self.aws_region,
                aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}),
            )
        return self._client

    def refresh(self) -> None:
        """Re-read zones and health checks; on failure keep serving the last good copy."""
        with self._refresh_lock:
            try:
                zones = self._fetch_zones()
                checks = self._fetch_health_checks()
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                if message != self.last_refresh_error:
                    log.warning(
                        "refresh from %s failed, serving the last good data: %s", self.aws_endpoint, message
                    )
                self.last_refresh_error = message
                return
            if self.last_refresh_error:
                log.info("refresh from %s works again", self.aws_endpoint)
            self.last_refresh_error = None
            self._zones = sorted(zones, key=lambda z: len(z.name), reverse=True)
            self._sync_checkers(checks)
            self.refresh_count += 1
            self.last_refresh_at = time.time()

    def _fetch_zones(self) -> list[Zone]:
        client = self._route53()
        zones: list[Zone] = []
        kwargs: dict[str, Any] = {"MaxItems": "100"}
        seen_markers: set[str] = set()
        while True:
            page = client.list_hosted_zones(**kwargs)
            for hz in page.get("HostedZones", []):
                zones.append(build_zone(hz["Id"], hz["Name"], self._fetch_records(hz["Id"])))
            marker = page.get("NextMarker")
            if not page.get("IsTruncated") or not marker or marker in seen_markers:
                return zones
            seen_markers.add(marker)
            kwargs["Marker"] = marker

    def _fetch_records(self, zone_id: str) -> list[dict[str, Any]]:
        # moto's paginator breaks on failover pairs: ask for everything in one large page.
        client = self._route53()
        records: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "MaxItems": "1000"}
        seen: set[tuple[Any, ...]] = set()
        while True:
            page = client.list_resource_record_sets(**kwargs)
            records.extend(page.get("ResourceRecordSets", []))
            nxt = (page.get("NextRecordName"), page.get("NextRecordType"), page.get("NextRecordIdentifier"))
            if not page.get("IsTruncated") or not nxt[0] or nxt in seen:
                return records
            seen.add(nxt)
            kwargs.update(StartRecordName=nxt[0], StartRecordType=nxt[1])
            if nxt[2]:
                kwargs["StartRecordIdentifier"] = nxt[2]

    def _fetch_health_checks(self) -> dict[str, dict[str, Any]]:
        client = self._route53()
        checks: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"MaxItems": "1000"}
        seen: set[str] = set()
        while True:
            page = client.list_health_checks(**kwargs)
            for hc in page.get("HealthChecks", []):
                checks[hc["Id"]] = dict(hc.get("HealthCheckConfig") or {})
            marker = page.get("NextMarker")
            if not page.get("IsTruncated") or not marker or marker in seen:
                return checks
            seen.add(marker)
            kwargs["Marker"] = marker

    def _sync_checkers(self, checks: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            gone = [cid for cid in self._checkers if cid not in checks]
            removed = [self._checkers.pop(cid) for cid in gone]
            for cid, config in checks.items():
                checker = self._checkers.get(cid)
                if checker is None:
                    checker = HealthChecker(
                        cid, config, interval_override=self.interval_override, resolve=self.check_healthy
                    )
                    self._checkers[cid] = checker
                    checker.start()
                    log.info("health check %s started: %s", cid, _describe(config))
                else:
                    checker.update_config(config)
        for checker in removed:
            checker.stop()
            log.info("health check %s deleted: stopped", checker.id)

    def check_healthy(self, check_id: str, depth: int = 0) -> bool:
        """Health of a check by id; unknown ids (not loaded yet) and runaway nesting read as healthy."""
        with self._lock:
            checker = self._checkers.get(check_id)
        if checker is None or depth > 5:
            return True
        return checker.healthy(depth)

    def stop_checkers(self) -> None:
        with self._lock:
            checkers = list(self._checkers.values())
            self._checkers.clear()
        for checker in checkers:
            checker.stop()
        for checker in checkers:
            checker.join(timeout=HTTP_CONNECT_TIMEOUT_S + HTTP_RESPONSE_TIMEOUT_S + 1)

    # ----- routing -----
    def _record_healthy(self, record: RecordSet, depth: int) -> bool:
        if record.health_check_id and not self.check_healthy(record.health_check_id):
            return False
        if record.alias_target is not None and record.evaluate_target_health:
            return bool(self._alias_rdatas(record, depth + 1)[0])
        return True

    def choose(self, records: list[RecordSet], depth: int = 0) -> list[RecordSet]:
        """Apply the routing policy to the record sets of one name and type."""
        if len(records) <= 1 and (not records or records[0].routing == "simple"):
            return records
        routing = records[0].routing
        if routing == "failover":
            primary = next((r for r in records if r.failover == "PRIMARY"), None)
            secondary = next((r for r in records if r.failover == "SECONDARY"), None)
            if primary is not None and self._record_healthy(primary, depth):
                return [primary]
            if secondary is not None and self._record_healthy(secondary, depth):
                return [secondary]
            return [primary or secondary] if (primary or secondary) else []
        healthy = [r for r in records if self._record_healthy(r, depth)]
        pool = healthy or records
        if routing == "weighted":
            weighted = [r for r in pool if (r.weight or 0) > 0]
            if weighted:
                return self._random.choices(weighted, weights=[r.weight or 0 for r in weighted], k=1)
            return [self._random.choice(pool)]
        if routing == "multivalue":
            return pool[:8]
        return pool[:1]

    def _alias_rdatas(self, record: RecordSet, depth: int) -> tuple[list[dns.rdata.Rdata], int]:
        if record.alias_target is None or depth > MAX_CHASE:
            return list(record.rdatas), record.ttl
        zone = self._zone_for(record.alias_target)
        if zone is None:
            log.debug("alias %s -> %s is outside the served zones", record.name, record.alias_target)
            return [], record.ttl
        rdatas: list[dns.rdata.Rdata] = []
        ttl = record.ttl
        for chosen in self.choose(zone.nodes.get(record.alias_target, {}).get(record.rdtype, []), depth + 1):
            got, ttl = self._alias_rdatas(chosen, depth + 1)
            rdatas.extend(got)
        return rdatas, ttl

    def _rrset_for(self, owner: dns.name.Name, records: list[RecordSet]) -> dns.rrset.RRset | None:
        rdatas: list[dns.rdata.Rdata] = []
        ttl = None
        for chosen in self.choose(records):
            got, got_ttl = self._alias_rdatas(chosen, 0)
            rdatas.extend(got)
            ttl = got_ttl if ttl is None else min(ttl, got_ttl)
        if not rdatas:
            return None
        unique = list(dict.fromkeys(rdatas))
        return dns.rrset.from_rdata_list(owner, ttl or 0, unique)

    def _zone_for(self, qname: dns.name.Name) -> Zone | None:
        for zone in self._zones:  # deepest zone first
            if qname.is_subdomain(zone.name):
                return zone
        return None

    def current_answer(self, name: str, rdtype: str = "A") -> dict[str, Any] | None:
        """What a query would get right now (for /status and tests), without touching counters."""
        qname = dns.name.from_text(name)
        zone = self._zone_for(qname)
        if zone is None:
            return None
        records = zone.nodes.get(qname, {}).get(dns.rdatatype.from_text(rdtype), [])
        chosen = self.choose(records)
        return {
            "set_identifiers": [r.set_identifier for r in chosen],
            "failover": [r.failover for r in chosen],
            "values": [rd.to_text() for r in chosen for rd in self._alias_rdatas(r, 0)[0]],
        }

    # ----- answering -----
    def resolve(self, query: dns.message.Message) -> dns.message.Message:
        """Build the authoritative response to a parsed query."""
        self.queries += 1
        response = dns.message.make_response(query)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if time.monotonic() < self.servfail_until:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        zone = self._zone_for(question.name)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        self._answer(response, zone, question.name, question.rdtype, 0)
        return response

    def _answer(
        self,
        response: dns.message.Message,
        zone: Zone,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
        depth: int,
    ) -> None:
        node = zone.nodes.get(qname)
        owner = qname
        if node is None and qname not in zone.existing:
            node = self._wildcard(zone, qname)
            if node is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(zone.soa)
                return
        node = node or {}
        cname = node.get(dns.rdatatype.CNAME)
        if cname and qtype not in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
            rrset = self._rrset_for(owner, cname)
            if rrset is not None:
                response.answer.append(rrset)
                target = rrset[0].target
                target_zone = self._zone_for(target)
                if target_zone is not None and depth < MAX_CHASE:
                    self._answer(response, target_zone, target, qtype, depth + 1)
                return
        types = list(node) if qtype == dns.rdatatype.ANY else [qtype]
        found = False
        for rdtype in types:
            rrset = self._rrset_for(owner, node.get(rdtype, []))
            if rrset is not None:
                response.answer.append(rrset)
                found = True
        if not found and depth == 0:
            response.authority.append(zone.soa)  # NODATA

    def _wildcard(
        self, zone: Zone, qname: dns.name.Name
    ) -> dict[dns.rdatatype.RdataType, list[RecordSet]] | None:
        encloser = qname.parent()
        while encloser.is_subdomain(zone.name):
            if encloser in zone.existing:
                return zone.nodes.get(dns.name.Name((b"*", *encloser.labels)))
            if encloser == zone.name:
                break
            encloser = encloser.parent()
        return None

    def handle_wire(self, data: bytes, max_size: int | None) -> bytes | None:
        """Wire in, wire out; None means drop (too short to even carry an id)."""
        try:
            query = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            return None
        except dns.exception.DNSException:
            if len(data) < 12:
                return None
            (qid, flags) = struct.unpack("!HH", data[:4])
            if flags & dns.flags.QR:
                return None
            bad = dns.message.Message(id=qid)
            bad.flags = dns.flags.QR
            bad.set_rcode(dns.rcode.FORMERR)
            return bad.to_wire()
        if query.flags & dns.flags.QR:
            return None  # never answer a response (reflection loops)
        try:
            response = self.resolve(query)
        except Exception:
            log.exception("answering %s failed", query.question)
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
        if max_size is None:
            return response.to_wire()
        limit = max(512, query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit)

    # ----- status -----
    def status(self) -> dict[str, Any]:
        with self._lock:
            checkers = list(self._checkers.values())
        failover: list[dict[str, Any]] = []
        for zone in list(self._zones):
            for name, types in zone.nodes.items():
                for rdtype, records in types.items():
                    if not any(r.routing == "failover" for r in records):
                        continue
                    chosen = self.choose(records)
                    failover.append(
                        {
                            "zone": zone.name.to_text(),
                            "name": name.to_text(),
                            "type": dns.rdatatype.to_text(rdtype),
                            "answer": {
                                "set_identifier": chosen[0].set_identifier if chosen else None,
                                "failover": chosen[0].failover if chosen else None,
                                "values": [
                                    rd.to_text() for r in chosen for rd in self._alias_rdatas(r, 0)[0]
                                ],
                            },
                            "records": [
                                {
                                    "set_identifier": r.set_identifier,
                                    "failover": r.failover,
                                    "health_check_id": r.health_check_id,
                                    "healthy": self._record_healthy(r, 0),
                                    "values": [rd.to_text() for rd in r.rdatas],
                                }
                                for r in records
                            ],
                        }
                    )
        return {
            "aws_endpoint": self.aws_endpoint,
            "refresh_seconds": self.refresh_seconds,
            "interval_override_seconds": self.interval_override,
            "refresh_count": self.refresh_count,
            "last_refresh_at": _iso(self.last_refresh_at),
            "last_refresh_error": self.last_refresh_error,
            "queries": self.queries,
            "zones": [z.name.to_text() for z in self._zones],
            "health_checks": [c.snapshot() for c in sorted(checkers, key=lambda c: c.id)],
            "failover_records": failover,
        }


# --------------------------------------------------------------------------- sockets


class _UdpHandler(socketserver.BaseRequestHandler):
    dns: DnsServer

    def handle(self) -> None:
        data, sock = self.request
        reply = self.dns.handle_wire(data, max_size=512)
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.BaseRequestHandler):
    dns: DnsServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            while True:
                header = _recv_exact(sock, 2)
                if header is None:
                    return
                (length,) = struct.unpack("!H", header)
                data = _recv_exact(sock, length)
                if data is None:
                    return
                reply = self.dns.handle_wire(data, max_size=None)
                if reply is None:
                    return
                sock.sendall(struct.pack("!H", len(reply)) + reply)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _status_handler(server: DnsServer) -> type[http.server.BaseHTTPRequestHandler]:
    class StatusHandler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("status %s", format % args)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/status":
                code, body = 200, server.status()
            elif path == "/health":
                code, body = 200, {"status": "ok"}
            else:
                code, body = 404, {"error": f"no route for {path}"}
            self._send(code, body)

        def do_POST(self) -> None:
            """POST /_sandbox/faults {"servfail_seconds": N}: every query gets SERVFAIL for N seconds
            (a resolver outage; it stops by itself). N = 0 ends it."""
            if self.path.split("?", 1)[0] != "/_sandbox/faults":
                self._send(404, {"error": f"no route for {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(min(length, 4096)) or b"{}")
                seconds = body["servfail_seconds"]
                if (
                    isinstance(seconds, bool)
                    or not isinstance(seconds, (int, float))
                    or not 0 <= seconds <= 600
                ):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                self._send(400, {"error": "servfail_seconds: must be a number of seconds from 0 to 600"})
                return
            server.servfail_until = time.monotonic() + seconds
            self._send(200, {"servfail_seconds": seconds})

        def _send(self, code: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return StatusHandler


class DnsServerHandle:
    """A running DNS stand-in (in-process): addresses, the server object and stop()."""

    def __init__(
        self,
        server: DnsServer,
        udp: _UdpServer,
        tcp: _TcpServer,
        status: http.server.ThreadingHTTPServer | None,
    ) -> None:
        self.server = server
        self.host, self.port = udp.server_address[:2]
        self.status_port = status.server_address[1] if status else None
        self.status_url = f"http://{self.host}:{self.status_port}/status" if status else None
        self._servers: list[socketserver.BaseServer] = [s for s in (udp, tcp, status) if s is not None]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            for s in self._servers
        ]
        self._threads.append(threading.Thread(target=self._refresh_loop, name="dns-refresh", daemon=True))
        for thread in self._threads:
            thread.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.server.refresh_seconds):
            self.server.refresh()

    def refresh_now(self) -> None:
        self.server.refresh()

    def status(self) -> dict[str, Any]:
        return self.server.status()

    def stop(self) -> None:
        self._stop.set()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.server.stop_checkers()

    def __enter__(self) -> DnsServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _bind_pair(host: str, port: int, dns_server: DnsServer) -> tuple[_UdpServer, _TcpServer]:
    """Bind UDP and TCP on the same port (with port 0, retry until both get the same one)."""
    udp_handler = type("UdpHandler", (_UdpHandler,), {"dns": dns_server})
    tcp_handler = type("TcpHandler", (_TcpHandler,), {"dns": dns_server})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    udp_cls = type("Udp", (_UdpServer,), {"address_family": family})
    tcp_cls = type("Tcp", (_TcpServer,), {"address_family": family})
    attempts = 20 if port == 0 else 1
    last: OSError | None = None
    for _ in range(attempts):
        udp = udp_cls((host, port), udp_handler)
        try:
            tcp = tcp_cls((host, udp.server_address[1]), tcp_handler)
        except OSError as exc:
            udp.server_close()
            last = exc
            continue
        return udp, tcp
    raise OSError(f"port: cannot bind UDP and TCP on {host}:{port}: {last}")


def start_dns_server(
    aws_endpoint: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    refresh_seconds: float = 1.0,
    interval_override: float | None = None,
    status_port: int | None = 0,
    aws_region: str = "us-east-1",
) -> DnsServerHandle:
    """Start the DNS stand-in in background threads (port 0 = free port; status_port None = no status)."""
    require_loopback(host)
    server = DnsServer(
        aws_endpoint,
        refresh_seconds=refresh_seconds,
        interval_override=interval_override,
        aws_region=aws_region,
    )
    server.refresh()  # serve real data from the first query on
    udp, tcp = _bind_pair(host, port, server)
    status = None
    if status_port is not None:
        try:
            status = http.server.ThreadingHTTPServer((host, status_port), _status_handler(server))
            status.daemon_threads = True
        except OSError:
            udp.server_close()
            tcp.server_close()
            server.stop_checkers()
            raise
    handle = DnsServerHandle(server, udp, tcp, status)
    log.info(
        "DNS stand-in on %s:%s (udp+tcp), status %s, zones %s, interval override %s",
        handle.host,
        handle.port,
        handle.status_url,
        [z.name.to_text() for z in server._zones],
        interval_override,
    )
    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dr_sandbox.dns_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=5353)
    parser.add_argument("--aws-endpoint", required=True, help="Route 53 endpoint URL (the AWS emulator)")
    parser.add_argument("--refresh-seconds", type=float, default=1.0)
    parser.add_argument("--interval-override", type=float, default=None, help="probe every S seconds")
    parser.add_argument("--status-port", type=int, default=5354)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        handle = start_dns_server(
            args.aws_endpoint,
            args.host,
            args.port,
            refresh_seconds=args.refresh_seconds,
            interval_override=args.interval_override,
            status_port=args.status_port,
        )
    except (ValueError, OSError) as exc:
        print(f"dns_server: {exc}", file=sys.stderr)
        return 2
    return serve_until_signalled(
        handle.stop, f"DNS stand-in ready on {handle.host}:{handle.port}, status {handle.status_url}"
    )


if __name__ == "__main__":
    sys.exit(main())
