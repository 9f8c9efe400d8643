"""Route53Hook against moto (in process): pagination, idempotent changes, rollback, health checks."""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowNotFoundException
from moto import mock_aws

from dr_automation.hooks.route53 import ChangeResult, Route53Hook, fqdn, record_key

ZONE = "example.test"


@pytest.fixture
def hook(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # mock_aws, not a server
    with mock_aws():
        h = Route53Hook(aws_conn_id=None)
        h.conn.create_hosted_zone(Name=ZONE, CallerReference="zone-1")
        yield h


def _failover(set_id: str, role: str, ip: str, check: str | None = None, ttl: int = 60) -> dict:
    record = {
        "Name": f"api.{ZONE}",
        "Type": "A",
        "SetIdentifier": set_id,
        "Failover": role,
        "TTL": ttl,
        "ResourceRecords": [{"Value": ip}],
    }
    if check:
        record["HealthCheckId"] = check
    return record


def test_zone_lookup_and_not_found(hook):
    zone_id = hook.get_hosted_zone_id(ZONE)
    assert zone_id and "/" not in zone_id
    assert hook.get_hosted_zone_id(ZONE + ".") == zone_id
    with pytest.raises(AirflowNotFoundException, match=r"nope\.test"):
        hook.get_hosted_zone_id("nope.test")


def test_list_record_sets_sees_every_failover_half_across_many_records(hook):
    zone_id = hook.get_hosted_zone_id(ZONE)
    changes = [
        {
            "Action": "CREATE",
            "ResourceRecordSet": {
                "Name": f"h{i}.{ZONE}",
                "Type": "A",
                "TTL": 60,
                "ResourceRecords": [{"Value": f"192.0.2.{i % 250 + 1}"}],
            },
        }
        for i in range(40)
    ]
    changes += [
        {"Action": "CREATE", "ResourceRecordSet": _failover("primary", "PRIMARY", "192.0.2.10")},
        {"Action": "CREATE", "ResourceRecordSet": _failover("secondary", "SECONDARY", "192.0.2.20")},
    ]
    hook.change_record_sets(zone_id, changes)
    everything = hook.list_record_sets(zone_id)
    assert len([r for r in everything if r["Name"].startswith("h")]) == 40
    pair = hook.list_record_sets(zone_id, name=f"api.{ZONE}", record_type="A")
    assert sorted(r["SetIdentifier"] for r in pair) == ["primary", "secondary"]
    assert hook.get_record_set(zone_id, f"api.{ZONE}", "A", "secondary")["ResourceRecords"] == [
        {"Value": "192.0.2.20"}
    ]
    assert hook.get_record_set(zone_id, f"api.{ZONE}", "A", "missing") is None


def test_change_is_idempotent_and_captures_previous_state(hook):
    zone_id = hook.get_hosted_zone_id(ZONE)
    first = hook.change_record_sets(
        zone_id, [{"Action": "UPSERT", "ResourceRecordSet": _failover("primary", "PRIMARY", "192.0.2.10")}]
    )
    assert first.changed and first.change_id
    assert first.previous == {(fqdn(f"api.{ZONE}"), "A", "primary"): None}
    again = hook.change_record_sets(
        zone_id, [{"Action": "UPSERT", "ResourceRecordSet": _failover("primary", "PRIMARY", "192.0.2.10")}]
    )
    assert not again.changed and again.change_id is None
    # a duplicate CREATE does not add a second copy (moto would): it becomes a no-op
    dup = hook.change_record_sets(
        zone_id, [{"Action": "CREATE", "ResourceRecordSet": _failover("primary", "PRIMARY", "192.0.2.10")}]
    )
    assert not dup.changed
    assert len(hook.list_record_sets(zone_id, name=f"api.{ZONE}", record_type="A")) == 1
    # deleting what is absent is a no-op too
    assert not hook.change_record_sets(
        zone_id, [{"Action": "DELETE", "ResourceRecordSet": _failover("x", "SECONDARY", "192.0.2.9")}]
    ).changed


def test_rollback_restores_exactly_what_was_there(hook):
    zone_id = hook.get_hosted_zone_id(ZONE)
    hook.change_record_sets(
        zone_id,
        [
            {"Action": "CREATE", "ResourceRecordSet": _failover("primary", "PRIMARY", "192.0.2.10")},
            {"Action": "CREATE", "ResourceRecordSet": _failover("secondary", "SECONDARY", "192.0.2.20")},
        ],
    )
    before = sorted(hook.list_record_sets(zone_id), key=record_key)
    # a manual override: failover pair out, plain record in (they cannot share a name)
    override = hook.change_record_sets(
        zone_id,
        [
            {"Action": "DELETE", "ResourceRecordSet": _failover("primary", "PRIMARY", "192.0.2.10")},
            {"Action": "DELETE", "ResourceRecordSet": _failover("secondary", "SECONDARY", "192.0.2.20")},
            {
                "Action": "CREATE",
                "ResourceRecordSet": {
                    "Name": f"api.{ZONE}",
                    "Type": "A",
                    "TTL": 30,
                    "ResourceRecords": [{"Value": "192.0.2.20"}],
                },
            },
        ],
        comment="manual failover",
    )
    assert override.changed
    # the result survives a round trip through JSON (it travels in XCom and the failover record)
    restored = ChangeResult.from_dict(override.to_dict())
    hook.rollback(zone_id, restored)
    assert sorted(hook.list_record_sets(zone_id), key=record_key) == before


def test_health_check_ensure_is_idempotent_and_flags_capture_previous(hook):
    config = {
        "Type": "HTTP",
        "IPAddress": "127.0.1.1",
        "Port": 8000,
        "ResourcePath": "/health",
        "RequestInterval": 30,
        "FailureThreshold": 3,
    }
    check_id, created = hook.ensure_health_check("api-us-east-1", config, {"Region": "us-east-1"})
    assert created
    same_id, changed = hook.ensure_health_check("api-us-east-1", config, {"Region": "us-east-1"})
    assert (same_id, changed) == (check_id, False)
    assert len(hook.list_health_checks()) == 1
    updated_id, changed = hook.ensure_health_check("api-us-east-1", {**config, "FailureThreshold": 5})
    assert (updated_id, changed) == (check_id, True)
    assert hook.get_health_check(check_id)["HealthCheckConfig"]["FailureThreshold"] == 5
    with pytest.raises(AirflowException, match="cannot be changed in place"):
        hook.ensure_health_check("api-us-east-1", {**config, "RequestInterval": 10})
    before = hook.set_health_check_flags(check_id, inverted=True)
    assert before == {"Inverted": False, "Disabled": False}
    assert hook.get_health_check(check_id)["HealthCheckConfig"]["Inverted"] is True
    assert hook.set_health_check_flags(check_id, inverted=True) == {"Inverted": True, "Disabled": False}
    assert hook.delete_health_check(check_id) is True
    assert hook.delete_health_check(check_id) is False
    with pytest.raises(AirflowNotFoundException):
        hook.get_health_check(check_id)


def test_change_status_insync_and_unknown_change(hook):
    zone_id = hook.get_hosted_zone_id(ZONE)
    result = hook.change_record_sets(
        zone_id, [{"Action": "UPSERT", "ResourceRecordSet": _failover("primary", "PRIMARY", "192.0.2.10")}]
    )
    hook.wait_for_change_insync(result.change_id, delay=1, max_attempts=3)
    assert hook.get_change_status(result.change_id) == "INSYNC"
