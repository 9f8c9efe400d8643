"""Route 53 triggers and sensors against the sandbox's emulator and DNS stand-in (real DNS queries)."""

from __future__ import annotations

import asyncio
import importlib
import json

import boto3
import httpx
import pytest

from dr_automation.hooks.route53 import Route53Hook
from dr_automation.sensors.route53 import DnsAnswerSensor, Route53ChangeInsyncSensor
from dr_automation.triggers.route53 import DnsAnswerTrigger, Route53ChangeInsyncTrigger, parse_nameserver
from dr_sandbox.aws_emulator import start_emulator
from dr_sandbox.dns_server import start_dns_server

pytestmark = pytest.mark.integration

ZONE = "trigger.test"


@pytest.fixture
def aws(monkeypatch):
    handle = start_emulator()
    httpx.post(f"{handle.endpoint_url}/moto-api/reset")  # moto's backends are process-wide
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_SANDBOX",
        json.dumps(
            {"conn_type": "aws", "extra": {"endpoint_url": handle.endpoint_url, "region_name": "us-east-1"}}
        ),
    )
    yield handle
    handle.stop()


@pytest.fixture
def zone(aws):
    client = boto3.client("route53", endpoint_url=aws.endpoint_url, region_name="us-east-1")
    zone_id = client.create_hosted_zone(Name=ZONE, CallerReference="t")["HostedZone"]["Id"].rsplit("/", 1)[-1]
    return client, zone_id


def _upsert(client, zone_id, ip):
    return client.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": f"api.{ZONE}",
                        "Type": "A",
                        "TTL": 30,
                        "ResourceRecords": [{"Value": ip}],
                    },
                }
            ]
        },
    )["ChangeInfo"]["Id"].rsplit("/", 1)[-1]


def _roundtrip(trigger):
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    json.dumps(kwargs)  # plain values only
    return rebuilt


async def _first_event(trigger):
    async for event in trigger.run():
        return event.payload
    return None


def test_change_insync_trigger_serializes_and_fires_success(zone):
    client, zone_id = zone
    change_id = _upsert(client, zone_id, "127.0.1.1")
    trigger = _roundtrip(
        Route53ChangeInsyncTrigger(
            change_id=change_id, waiter_delay=1, waiter_max_attempts=3, aws_conn_id="aws_sandbox"
        )
    )
    payload = asyncio.run(_first_event(trigger))
    assert payload == {"status": "success", "change_id": change_id}


def test_change_insync_sensor_finishes_without_deferring_when_already_insync(zone):
    client, zone_id = zone
    change_id = _upsert(client, zone_id, "127.0.1.1")
    sensor = Route53ChangeInsyncSensor(task_id="insync", change_id=change_id, aws_conn_id="aws_sandbox")
    assert sensor.execute({}) == change_id  # would raise TaskDeferred if it deferred
    nothing = Route53ChangeInsyncSensor(task_id="noop", change_id=None, aws_conn_id="aws_sandbox")
    assert nothing.execute({}) is None
    assert isinstance(sensor.hook, Route53Hook)


def test_dns_answer_trigger_waits_for_the_new_answer_from_a_real_dns_server(zone, aws):
    client, zone_id = zone
    _upsert(client, zone_id, "127.0.1.1")
    dns = start_dns_server(aws.endpoint_url, refresh_seconds=0.2, status_port=None)
    try:
        nameserver = f"{dns.host}:{dns.port}"
        assert parse_nameserver(nameserver) == (dns.host, dns.port)

        async def switch_later():
            await asyncio.sleep(1.0)
            _upsert(client, zone_id, "127.0.2.1")

        async def scenario():
            trigger = _roundtrip(
                DnsAnswerTrigger(
                    name=f"api.{ZONE}",
                    expected=["127.0.2.1"],
                    nameservers=[nameserver],
                    poll_interval=0.2,
                    timeout=15,
                    consecutive=2,
                )
            )
            switch = asyncio.create_task(switch_later())
            payload = await _first_event(trigger)
            await switch
            return payload

        payload = asyncio.run(scenario())
        assert payload["status"] == "success"
        assert payload["answers"] == {nameserver: ["127.0.2.1"]}
        assert payload["elapsed_seconds"] >= 1.0  # it really waited for the switch

        never = DnsAnswerTrigger(
            name=f"api.{ZONE}",
            expected=["127.0.9.9"],
            nameservers=[nameserver],
            poll_interval=0.2,
            timeout=1.0,
        )
        timeout = asyncio.run(_first_event(never))
        assert timeout["status"] == "timeout" and timeout["answers"] == {nameserver: ["127.0.2.1"]}

        sensor = DnsAnswerSensor(
            task_id="dns",
            name=f"api.{ZONE}",
            expected="127.0.2.1",
            nameservers=nameserver,
            check_interval=0.1,
        )
        assert sensor.execute({})["answers"] == {nameserver: ["127.0.2.1"]}
        assert not DnsAnswerSensor(
            task_id="dns2", name=f"api.{ZONE}", expected=["127.0.9.9"], nameservers=[nameserver]
        ).poke({})
    finally:
        dns.stop()
