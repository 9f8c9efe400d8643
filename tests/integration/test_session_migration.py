"""Session migration between two regions' stores on the machine's real Redis (through Airflow
connections), keys apart by a per-test prefix. Each region's store is its own Redis user; a store refusing writes (that user's writes denied) is
a real fault that touches no other test's Redis traffic."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import yaml

from dr_automation.estate import DEFAULT_ESTATE_PATH
from dr_automation.target_region import (
    TargetRegionError,
    count_sessions,
    migrate_sessions,
    session_prefix,
    sessions_step,
)
from dr_sandbox import sessions
from tests.unit.conftest import load_doc

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace():
    name = f"drtest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    sessions.purge(name)  # keys and users


@pytest.fixture
def store_users(namespace):
    """region -> its session store's own Redis user, allowed only that region's keys."""
    doc = yaml.safe_load(DEFAULT_ESTATE_PATH.read_text(encoding="utf-8"))
    return sessions.region_users(namespace, doc["regions"])


@pytest.fixture
def estate(tmp_path, monkeypatch, namespace, store_users):
    doc = yaml.safe_load(DEFAULT_ESTATE_PATH.read_text(encoding="utf-8"))
    doc["sessions"]["key_prefix"] = f"{namespace}:{{region}}:session:"
    doc["sessions"]["batch_size"] = 7  # several batches
    for name, region in doc["regions"].items():
        user = store_users[name]
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{region['sessions_connection'].upper()}",
            json.dumps(
                {
                    "conn_type": "redis",
                    "host": "127.0.0.1",
                    "port": 6379,
                    "login": user["user"],
                    "password": user["password"],
                }
            ),
        )
    return load_doc(tmp_path, doc)


def test_sessions_are_copied_byte_for_byte_with_their_ttl(estate):
    keys = sessions.seed(session_prefix(estate, "us-east-1"), 25, ttl_seconds=900)
    forever = session_prefix(estate, "us-east-1") + "service-account"
    sessions.client().set(forever, b"\x00\xffbinary")
    result = migrate_sessions(estate, "us-east-1", "us-west-2")
    assert result["status"] == "migrated" and result["migrated"] == 26
    store = sessions.client()
    for key in keys[:5]:
        copied = key.replace(":us-east-1:", ":us-west-2:")
        assert store.hgetall(copied) == store.hgetall(key)
        assert 0 < store.ttl(copied) <= 900
    assert store.get(forever.replace(":us-east-1:", ":us-west-2:")) == b"\x00\xffbinary"
    assert store.ttl(forever.replace(":us-east-1:", ":us-west-2:")) == -1
    assert count_sessions(estate, "us-west-2") == 26
    assert migrate_sessions(estate, "us-east-1", "us-west-2")["migrated"] == 26  # idempotent
    assert count_sessions(estate, "us-west-2") == 26


def test_an_unreachable_source_is_reported_not_fatal(estate, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DR_SESSIONS_US_EAST_1",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": 1}),
    )
    result = sessions_step(estate, "us-west-2", "us-east-1", False)
    assert result["status"] == "source_unreachable" and result["migrated"] == 0
    assert result["target_sessions"] == 0


def test_a_target_that_refuses_writes_fails_the_step_naming_region_and_connection(estate, store_users):
    sessions.seed(session_prefix(estate, "us-east-1"), 5)
    with (
        sessions.writes_refused(store_users["us-west-2"]["user"]),
        pytest.raises(TargetRegionError, match=r"copying to us-west-2 \(dr_sessions_us_west_2\)"),
    ):
        migrate_sessions(estate, "us-east-1", "us-west-2")
    assert count_sessions(estate, "us-west-2") == 0  # refused, not half-written


def test_dry_run_copies_nothing(estate):
    sessions.seed(session_prefix(estate, "us-east-1"), 3)
    assert sessions_step(estate, "us-west-2", "us-east-1", True)["dry_run"] is True
    assert count_sessions(estate, "us-west-2") == 0
