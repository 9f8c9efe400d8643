"""The Route 53 data-plane stand-in: real DNS over UDP/TCP, failover driven by real HTTP health probes.

Setup: moto (control plane) holds a zone with a PRIMARY/SECONDARY failover pair for api.<zone>, each
with an HTTP health check on its own regional app (127.0.1.1 / 127.0.2.1, same free port). The DNS
stand-in probes those apps every INTERVAL seconds; FailureThreshold is THRESHOLD.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from moto.server import ThreadedMotoServer

from dr_sandbox.dns_server import DnsServerHandle, start_dns_server
from dr_sandbox.regional_app import RegionalAppHandle, start_regional_app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PRIMARY_HOST = "127.0.1.1"
SECONDARY_HOST = "127.0.2.1"
DNS_HOST = "127.0.0.1"
INTERVAL = 0.5
THRESHOLD = 3
MARGIN = 1.5  # scheduling slack on a busy 2-core machine


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def common_free_port(*hosts: str) -> int:
    """A TCP port bindable on every host (the regions share a port, as behind real DNS)."""
    for _ in range(50):
        port = free_port(hosts[0])
        socks = []
        try:
            for host in hosts:
                s = socket.socket()
                socks.append(s)
                s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no common free port")


@dataclass
class Env:
    r53: Any
    zone: str
    zone_id: str
    app_port: int
    primary: RegionalAppHandle
    secondary: RegionalAppHandle
    hc_primary: str
    hc_secondary: str
    dns: DnsServerHandle

    @property
    def api(self) -> str:
        return f"api.{self.zone}"


def query(env: Env, name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
    msg = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(msg, DNS_HOST, port=env.dns.port, timeout=3)
    return dns.query.udp(msg, DNS_HOST, port=env.dns.port, timeout=3)


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset)


def api_answer(env: Env, tcp: bool = False) -> list[str]:
    return addresses(query(env, env.api, tcp=tcp))


def check_status(env: Env, check_id: str) -> dict[str, Any]:
    with urllib.request.urlopen(env.dns.status_url, timeout=5) as resp:
        status = json.loads(resp.read())
    return next(c for c in status["health_checks"] if c["id"] == check_id)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> float:
    """Poll until predicate() is truthy; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def health_check(r53: Any, host: str, port: int, **extra: Any) -> str:
    config = {
        "Type": "HTTP",
        "IPAddress": host,
        "Port": port,
        "ResourcePath": "/health",
        "RequestInterval": 10,
        "FailureThreshold": THRESHOLD,
        **extra,
    }
    return r53.create_health_check(CallerReference=uuid.uuid4().hex, HealthCheckConfig=config)["HealthCheck"][
        "Id"
    ]


def failover_pair(
    name: str, primary: tuple[str, str | None], secondary: tuple[str, str | None]
) -> list[dict]:
    changes = []
    for role, (address, check_id) in (("PRIMARY", primary), ("SECONDARY", secondary)):
        rrset: dict[str, Any] = {
            "Name": name,
            "Type": "A",
            "SetIdentifier": f"{role.lower()}-{address}",
            "Failover": role,
            "TTL": 60,
            "ResourceRecords": [{"Value": address}],
        }
        if check_id:
            rrset["HealthCheckId"] = check_id
        changes.append({"Action": "CREATE", "ResourceRecordSet": rrset})
    return changes


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto_port}"
    app_port = common_free_port(PRIMARY_HOST, SECONDARY_HOST)
    primary = start_regional_app("us-east-1", PRIMARY_HOST, app_port)
    secondary = start_regional_app("us-west-2", SECONDARY_HOST, app_port)
    r53 = boto3.client(
        "route53",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    zone = f"dnstest-{uuid.uuid4().hex[:8]}.example"
    zone_id = r53.create_hosted_zone(Name=zone, CallerReference=uuid.uuid4().hex)["HostedZone"]["Id"]
    hc_primary = health_check(r53, PRIMARY_HOST, app_port)
    hc_secondary = health_check(r53, SECONDARY_HOST, app_port)
    changes = failover_pair(f"api.{zone}", (PRIMARY_HOST, hc_primary), (SECONDARY_HOST, hc_secondary))
    simple = [
        (f"www.{zone}", "CNAME", 30, [f"api.{zone}"]),
        (zone, "TXT", 120, ['"v=sandbox zone"']),
        (f"v6.{zone}", "AAAA", 45, ["::1"]),
        (f"plain.{zone}", "A", 15, ["127.0.9.1", "127.0.9.2"]),
        (f"*.wild.{zone}", "A", 20, ["127.0.8.1"]),
        (f"deep.sub.{zone}", "A", 20, ["127.0.7.1"]),
    ]
    for name, rtype, ttl, values in simple:
        rrset = {"Name": name, "Type": rtype, "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]}
        changes.append({"Action": "CREATE", "ResourceRecordSet": rrset})
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    dns_handle = start_dns_server(
        endpoint, DNS_HOST, 0, refresh_seconds=0.3, interval_override=INTERVAL, status_port=0
    )
    try:
        yield Env(r53, zone, zone_id, app_port, primary, secondary, hc_primary, hc_secondary, dns_handle)
    finally:
        dns_handle.stop()
        primary.stop()
        secondary.stop()
        moto.stop()


@pytest.fixture(autouse=True)
def baseline(env: Env) -> Iterator[None]:
    """Every test starts from: both apps healthy, checks plain, DNS answering the PRIMARY."""
    for check_id in (env.hc_primary, env.hc_secondary):
        env.r53.update_health_check(HealthCheckId=check_id, Inverted=False, Disabled=False, Port=env.app_port)
    env.primary.set_mode("healthy")
    env.secondary.set_mode("healthy")
    wait_for(
        lambda: (
            all(check_status(env, c)["measured_healthy"] for c in (env.hc_primary, env.hc_secondary))
            and not check_status(env, env.hc_primary)["inverted"]
            and api_answer(env) == [PRIMARY_HOST]
        ),
        timeout=15,
        what="baseline: both healthy, primary answered",
    )
    yield


def test_udp_and_tcp_answer_the_primary_authoritatively(env: Env) -> None:
    for tcp in (False, True):
        response = query(env, env.api, tcp=tcp)
        assert response.rcode() == dns.rcode.NOERROR
        assert response.flags & dns.flags.AA
        assert addresses(response) == [PRIMARY_HOST]
        assert response.answer[0].ttl == 60


def test_failover_after_threshold_failures_and_back(env: Env) -> None:
    env.primary.set_mode("down")
    switched = time.monotonic()
    # One failed probe is not enough: Route 53 waits for FailureThreshold consecutive failures.
    wait_for(lambda: check_status(env, env.hc_primary)["consecutive_failures"] >= 1, 5, "first failed probe")
    assert api_answer(env) == [PRIMARY_HOST]
    assert api_answer(env, tcp=True) == [PRIMARY_HOST]
    status = check_status(env, env.hc_primary)
    assert status["consecutive_failures"] < THRESHOLD and status["healthy"] is True

    wait_for(lambda: api_answer(env) == [SECONDARY_HOST], INTERVAL * THRESHOLD + MARGIN, "failover")
    took = time.monotonic() - switched
    assert took <= INTERVAL * THRESHOLD + MARGIN
    assert took >= INTERVAL * (THRESHOLD - 1) * 0.8, (
        f"failed over after {took:.2f}s: before {THRESHOLD} failures"
    )
    assert api_answer(env, tcp=True) == [SECONDARY_HOST]
    status = check_status(env, env.hc_primary)
    assert status["healthy"] is False and status["consecutive_failures"] >= THRESHOLD
    assert status["last_error"]

    with urllib.request.urlopen(env.dns.status_url, timeout=5) as resp:
        record = next(r for r in json.loads(resp.read())["failover_records"] if r["name"] == env.api + ".")
    assert record["answer"]["failover"] == "SECONDARY" and record["answer"]["values"] == [SECONDARY_HOST]

    env.primary.set_mode("healthy")
    wait_for(lambda: api_answer(env) == [PRIMARY_HOST], INTERVAL * THRESHOLD + MARGIN, "failback")


def test_client_resolves_api_and_reaches_the_answering_region(env: Env) -> None:
    def whoami() -> str:
        (address,) = api_answer(env)
        conn = http.client.HTTPConnection(address, env.app_port, timeout=5)
        try:
            conn.request("GET", "/api/whoami")
            return json.loads(conn.getresponse().read())["region"]
        finally:
            conn.close()

    assert whoami() == "us-east-1"
    env.primary.set_mode("down")
    wait_for(lambda: api_answer(env) == [SECONDARY_HOST], INTERVAL * THRESHOLD + MARGIN, "failover")
    assert whoami() == "us-west-2"


def test_inverted_check_fails_over(env: Env) -> None:
    env.r53.update_health_check(HealthCheckId=env.hc_primary, Inverted=True)
    wait_for(lambda: api_answer(env) == [SECONDARY_HOST], 5, "failover on Inverted")
    status = check_status(env, env.hc_primary)
    assert status["inverted"] is True and status["measured_healthy"] is True and status["healthy"] is False


def test_disabled_check_reads_healthy(env: Env) -> None:
    env.primary.set_mode("down")
    wait_for(lambda: api_answer(env) == [SECONDARY_HOST], INTERVAL * THRESHOLD + MARGIN, "failover")
    env.r53.update_health_check(HealthCheckId=env.hc_primary, Disabled=True)
    wait_for(lambda: api_answer(env) == [PRIMARY_HOST], 5, "Disabled check read as healthy")
    # Disabled stops the probes, as Route 53 stops sending requests.
    probes = check_status(env, env.hc_primary)["probes"]
    time.sleep(INTERVAL * 3)
    status = check_status(env, env.hc_primary)
    assert status["disabled"] is True and status["healthy"] is True and status["probes"] == probes


def test_both_unhealthy_answers_the_primary(env: Env) -> None:
    env.primary.set_mode("down")
    wait_for(lambda: api_answer(env) == [SECONDARY_HOST], INTERVAL * THRESHOLD + MARGIN, "failover")
    env.secondary.set_mode("down")
    wait_for(
        lambda: not check_status(env, env.hc_secondary)["healthy"],
        INTERVAL * THRESHOLD + MARGIN,
        "secondary down",
    )
    assert not check_status(env, env.hc_primary)["healthy"]
    assert api_answer(env) == [PRIMARY_HOST]


def test_updated_port_is_probed_without_restart(env: Env) -> None:
    closed = free_port(PRIMARY_HOST)
    env.r53.update_health_check(HealthCheckId=env.hc_primary, Port=closed)
    wait_for(
        lambda: api_answer(env) == [SECONDARY_HOST], INTERVAL * THRESHOLD + MARGIN + 1, "failover on new port"
    )
    status = check_status(env, env.hc_primary)
    assert status["port"] == closed and "ConnectionRefused" in status["last_error"]


def test_non_loopback_target_is_refused_and_unhealthy(env: Env) -> None:
    outside = health_check(env.r53, "198.51.100.10", 443)
    name = f"guarded.{env.zone}"
    changes = failover_pair(name, ("127.0.5.1", outside), ("127.0.6.1", None))
    env.r53.change_resource_record_sets(HostedZoneId=env.zone_id, ChangeBatch={"Changes": changes})
    try:
        wait_for(
            lambda: addresses(query(env, name)) == ["127.0.6.1"], 5, "refused target treated as unhealthy"
        )
        status = check_status(env, outside)
        assert status["healthy"] is False and status["probes"] == 0
        assert "outside 127.0.0.0/8" in status["last_error"]
    finally:
        deletes = [{**c, "Action": "DELETE"} for c in changes]
        env.r53.change_resource_record_sets(HostedZoneId=env.zone_id, ChangeBatch={"Changes": deletes})
        env.r53.delete_health_check(HealthCheckId=outside)
    env.dns.refresh_now()
    with urllib.request.urlopen(env.dns.status_url, timeout=5) as resp:
        ids = {c["id"] for c in json.loads(resp.read())["health_checks"]}
    assert outside not in ids  # deleted checks stop
    assert query(env, name).rcode() == dns.rcode.NXDOMAIN


def test_record_types_ttls_and_negative_answers(env: Env) -> None:
    zone = env.zone
    txt = query(env, zone, "TXT")
    assert txt.flags & dns.flags.AA and txt.answer[0].ttl == 120
    assert [s.decode() for rd in txt.answer[0] for s in rd.strings] == ["v=sandbox zone"]

    aaaa = query(env, f"v6.{zone}", "AAAA", tcp=True)
    assert [rd.address for rd in aaaa.answer[0]] == ["::1"] and aaaa.answer[0].ttl == 45

    plain = query(env, f"plain.{zone}")
    assert addresses(plain) == ["127.0.9.1", "127.0.9.2"] and plain.answer[0].ttl == 15

    www = query(env, f"www.{zone}")  # CNAME chased inside the zone to the failover answer
    assert www.answer[0].rdtype == dns.rdatatype.CNAME and www.answer[0].ttl == 30
    assert www.answer[0][0].target.to_text() == f"api.{zone}."
    assert addresses(www) == [PRIMARY_HOST]

    wild = query(env, f"anything.wild.{zone}")
    assert addresses(wild) == ["127.0.8.1"] and wild.answer[0].name.to_text() == f"anything.wild.{zone}."

    ns = query(env, zone, "NS")
    assert len(ns.answer[0]) == 4
    soa = query(env, zone, "SOA")
    assert soa.answer[0].rdtype == dns.rdatatype.SOA

    nodata = query(env, env.api, "MX")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA

    ent = query(env, f"sub.{zone}")  # empty non-terminal: exists, no data
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer

    nx = query(env, f"nope.{zone}", tcp=True)
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.flags & dns.flags.AA
    assert nx.authority[0].rdtype == dns.rdatatype.SOA

    refused = query(env, "www.example.org")
    assert refused.rcode() == dns.rcode.REFUSED and not refused.flags & dns.flags.AA
    assert query(env, "leanvibe-not-served.test", tcp=True).rcode() == dns.rcode.REFUSED


def test_new_records_are_served_after_refresh(env: Env) -> None:
    name = f"late.{env.zone}"
    assert query(env, name).rcode() == dns.rcode.NXDOMAIN
    rrset = {"Name": name, "Type": "A", "TTL": 5, "ResourceRecords": [{"Value": "127.0.4.4"}]}
    env.r53.change_resource_record_sets(
        HostedZoneId=env.zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": rrset}]}
    )
    wait_for(lambda: addresses(query(env, name)) == ["127.0.4.4"], 5, "new record served")
    env.r53.change_resource_record_sets(
        HostedZoneId=env.zone_id, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": rrset}]}
    )
    wait_for(lambda: query(env, name).rcode() == dns.rcode.NXDOMAIN, 5, "deleted record gone")


def test_garbage_packets_do_not_break_the_server(env: Env) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(b"\x12\x34" + b"\x00" * 10 + b"\xff\xff\xff", (DNS_HOST, env.dns.port))
        reply = dns.message.from_wire(s.recv(4096), question_only=True)
        assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
    assert api_answer(env) == [PRIMARY_HOST]


def test_cli_serves_and_reports_status(env: Env) -> None:
    port, status_port = free_port(), free_port()
    endpoint = env.dns.server.aws_endpoint
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dr_sandbox.dns_server",
            "--host",
            DNS_HOST,
            "--port",
            str(port),
            "--aws-endpoint",
            endpoint,
            "--interval-override",
            "1.5",
            "--status-port",
            str(status_port),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO / "include")},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert "ready" in proc.stdout.readline()
        msg = dns.message.make_query(env.api, "A")
        assert addresses(dns.query.udp(msg, DNS_HOST, port=port, timeout=3)) == [PRIMARY_HOST]
        with urllib.request.urlopen(f"http://{DNS_HOST}:{status_port}/status", timeout=5) as resp:
            status = json.loads(resp.read())
        assert status["interval_override_seconds"] == 1.5
        assert {c["id"] for c in status["health_checks"]} >= {env.hc_primary, env.hc_secondary}
        assert all(c["effective_interval_seconds"] == 1.5 for c in status["health_checks"])
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def test_weighted_alias_and_truncation(env: Env) -> None:
    zone = env.zone
    big_values = [f'"{i:02d}-' + "x" * 90 + '"' for i in range(12)]
    changes = [
        {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": f"weighted.{zone}",
                "Type": "A",
                "SetIdentifier": ident,
                "Weight": weight,
                "TTL": 10,
                "ResourceRecords": [{"Value": address}],
            },
        }
        for ident, weight, address in (
            ("heavy", 3, "127.0.11.1"),
            ("light", 1, "127.0.12.1"),
            ("off", 0, "127.0.13.1"),
        )
    ]
    changes.append(
        {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": f"alias.{zone}",
                "Type": "A",
                "AliasTarget": {
                    "HostedZoneId": env.zone_id.split("/")[-1],
                    "DNSName": env.api,
                    "EvaluateTargetHealth": False,
                },
            },
        }
    )
    changes.append(
        {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": f"big.{zone}",
                "Type": "TXT",
                "TTL": 10,
                "ResourceRecords": [{"Value": v} for v in big_values],
            },
        }
    )
    env.r53.change_resource_record_sets(HostedZoneId=env.zone_id, ChangeBatch={"Changes": changes})
    env.dns.refresh_now()

    seen = [addresses(query(env, f"weighted.{zone}"))[0] for _ in range(60)]
    assert set(seen) == {"127.0.11.1", "127.0.12.1"}  # weight 0 is never answered while others can be
    assert seen.count("127.0.11.1") > seen.count("127.0.12.1")

    alias = query(env, f"alias.{zone}")  # an alias answers the target's current (failover) choice
    assert addresses(alias) == [PRIMARY_HOST] and alias.answer[0].name.to_text() == f"alias.{zone}."

    udp = query(env, f"big.{zone}", "TXT")  # > 512 bytes without EDNS: truncated, retry over TCP
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = query(env, f"big.{zone}", "TXT", tcp=True)
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 12
