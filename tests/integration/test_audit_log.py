"""The audit log on a real PostgreSQL database (created for this module and dropped after)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from dr_automation.audit import TABLE, AuditError, AuditInputError, AuditLog
from tests.integration.scratch import dsn_for, scratch_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with scratch_database("dr_test_audit") as name:
        yield dsn_for(name)


def test_record_and_filter_events(dsn: str) -> None:
    audit = AuditLog(dsn=dsn)
    incident = f"INC-T-{secrets.token_hex(3)}"
    start = datetime.now(UTC) - timedelta(seconds=1)
    first = audit.record(
        "notification",
        status="sent",
        incident_id=incident,
        level=3,
        actor="tester",
        channel="email",
        recipient="CEO",
        target="ceo@leanvibe.ai",
        detail={"attempts": 1, "subject": "s"},
        dag_id="d",
        run_id="r",
        task_id="t",
    )
    second = audit.record(
        "failover.dns", status="succeeded", incident_id=incident, detail={"region": "us-west-2"}
    )
    audit.record("notification", status="failed", incident_id="INC-OTHER", channel="chat")
    assert second > first
    rows = audit.events(incident_id=incident)
    assert [r["id"] for r in rows] == [first, second]
    row = rows[0]
    assert (row["event_type"], row["status"], row["level"], row["recipient"], row["target"]) == (
        "notification",
        "sent",
        3,
        "CEO",
        "ceo@leanvibe.ai",
    )
    assert row["detail"] == {"attempts": 1, "subject": "s"}
    assert (row["dag_id"], row["run_id"], row["task_id"], row["actor"]) == ("d", "r", "t", "tester")
    assert row["recorded_at"] >= start
    assert [r["id"] for r in audit.events(incident_id=incident, event_type="failover.dns")] == [second]
    assert audit.events(since=datetime.now(UTC) + timedelta(hours=1)) == []


def test_detail_is_redacted_before_it_is_written(dsn: str) -> None:
    audit = AuditLog(dsn=dsn)
    event = audit.record(
        "notification",
        status="failed",
        incident_id="INC-REDACT",
        detail={
            "error": "connect postgresql://dr:hunter2pass@db:5432/x failed",
            "nested": ["password=abc12345"],
        },
    )
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT detail::text FROM {TABLE} WHERE id = %s", (event,))
        stored = cur.fetchone()[0]
    conn.close()
    assert "hunter2pass" not in stored and "abc12345" not in stored
    assert json.loads(stored)["error"].startswith("connect postgresql://dr:***@db")


def test_schema_creation_is_idempotent_and_survives_a_dropped_table(dsn: str) -> None:
    AuditLog(dsn=dsn).ensure_schema()
    AuditLog(dsn=dsn).ensure_schema()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {TABLE}")
    conn.close()
    audit = AuditLog(dsn=dsn)  # this process thinks the table exists: it must recreate it
    audit.record("notification", status="sent", incident_id="INC-AGAIN")
    assert [r["incident_id"] for r in audit.events()] == ["INC-AGAIN"]


def test_concurrent_writers_each_get_their_row(dsn: str) -> None:
    audit = AuditLog(dsn=dsn)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(5):
                audit.record("notification", status="sent", incident_id="INC-CONC", detail={"w": n, "i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    rows = audit.events(incident_id="INC-CONC")
    assert sorted((r["detail"]["w"], r["detail"]["i"]) for r in rows) == [
        (w, i) for w in range(4) for i in range(5)
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_type": "Bad Type", "status": "sent"}, "event_type"),
        ({"event_type": "notification", "status": "SENT!"}, "status"),
        ({"event_type": "notification", "status": "sent", "level": "3"}, "level"),
        ({"event_type": "notification", "status": "sent", "target": "x" * 1001}, "target"),
        ({"event_type": "notification", "status": "sent", "detail": ["not", "a", "mapping"]}, "detail"),
    ],
)
def test_malformed_events_are_refused_naming_the_field(dsn: str, kwargs: dict, field: str) -> None:
    audit = AuditLog(dsn=dsn)
    before = len(audit.events())
    with pytest.raises(AuditInputError) as excinfo:
        audit.record(kwargs.pop("event_type"), **kwargs)
    assert excinfo.value.field == field
    assert len(audit.events()) == before


def test_through_an_airflow_connection(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dbname = dsn.rsplit("dbname=", 1)[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_DR_AUDIT_TEST",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "schema": dbname,
            }
        ),
    )
    audit = AuditLog("dr_audit_test")
    event = audit.record("restore.started", status="started", incident_id="INC-HOOK", actor="tester")
    assert [r["id"] for r in AuditLog(dsn=dsn).events(incident_id="INC-HOOK")] == [event]
    assert "dr_audit_test" in repr(audit)


def test_unreachable_database_raises_audit_error_without_the_password() -> None:
    audit = AuditLog(dsn="host=127.0.0.1 port=1 user=dr password=topsecretpw dbname=x connect_timeout=2")
    with pytest.raises(AuditError) as excinfo:
        audit.record("notification", status="sent")
    assert "topsecretpw" not in str(excinfo.value) and "topsecretpw" not in repr(audit)
