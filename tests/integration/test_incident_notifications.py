"""Incident notifications through the real transports: SES and SNS in the AWS emulator (seeded from
the estate), the chat and status-page webhooks in the sink, the audit log in a real PostgreSQL
database; and the failure callback end to end, from a task that really fails under dag.test().
"""

from __future__ import annotations

import email
import json
import os
import secrets
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from dr_automation.audit import AuditLog
from dr_automation.estate import Estate, load_estate
from dr_sandbox.aws_emulator import EmulatorHandle, clear_faults, inject_fault, start_emulator
from dr_sandbox.aws_seed import seed_aws
from dr_sandbox.webhook_sink import WebhookSinkHandle, start_webhook_sink
from tests.integration.scratch import scratch_database

pytestmark = pytest.mark.integration

REGION_ADDRESSES = {"us-east-1": ("127.0.0.41", 18081), "us-west-2": ("127.0.0.42", 18082)}
LEVEL3 = {
    ("CEO", "phone"),
    ("CEO", "email"),
    ("CTO", "phone"),
    ("CTO", "chat"),
    ("VP Engineering", "chat"),
    ("VP Engineering", "email"),
    ("Platform Team Lead", "chat"),
    ("Customer Success", "chat"),
    ("Customer Success", "email"),
    ("Marketing", "email"),
    ("Enterprise Customers", "email"),
    ("Enterprise Customers", "phone"),
    ("Team Customers", "email"),
    ("Team Customers", "status_page"),
    ("Developer Customers", "status_page"),
}
LEVEL3_MAIL = {
    "ceo@leanvibe.ai",
    "vp-engineering@leanvibe.ai",
    "customer-success@leanvibe.ai",
    "marketing@leanvibe.ai",
    "enterprise-notices@leanvibe.ai",
    "team-notices@leanvibe.ai",
}
NEVER_AT_LEVEL3 = {"partners@leanvibe.ai", "compliance@leanvibe.ai", "regulator-notices@leanvibe.ai"}


@pytest.fixture(scope="module")
def estate() -> Estate:
    return load_estate()


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "sandbox")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        handle = start_emulator("127.0.0.1", 0)
        urllib.request.urlopen(
            urllib.request.Request(f"{handle.endpoint_url}/moto-api/reset", method="POST"), timeout=10
        ).close()
        try:
            yield handle
        finally:
            handle.stop()


@pytest.fixture(scope="module")
def seeded(emulator: EmulatorHandle, estate: Estate) -> dict[str, Any]:
    return seed_aws(estate, emulator.endpoint_url, region_addresses=REGION_ADDRESSES)


@pytest.fixture(scope="module")
def sink() -> Iterator[WebhookSinkHandle]:
    handle = start_webhook_sink("127.0.0.1", 0)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def audit_db() -> Iterator[str]:
    with scratch_database("dr_test_incident_audit") as name:
        yield name


@pytest.fixture(scope="module")
def connections(
    estate: Estate, emulator: EmulatorHandle, seeded: dict, sink: WebhookSinkHandle, audit_db: str
) -> Iterator[dict[str, str]]:
    """The estate's connection ids as AIRFLOW_CONN_* env vars pointing at this module's stand-ins."""
    conns = estate.connections
    env = {
        f"AIRFLOW_CONN_{conns['aws'].upper()}": json.dumps(
            {
                "conn_type": "aws",
                "login": "sandbox",
                "password": "sandbox",
                # botocore's own retries off: the notifier's bounded retries are what is under test,
                # and they keep the number of SES calls below the injected fault's count.
                "extra": {
                    "endpoint_url": emulator.endpoint_url,
                    "region_name": "us-east-1",
                    "config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 1}},
                },
            }
        ),
        f"AIRFLOW_CONN_{conns['chat_webhook'].upper()}": json.dumps(
            {"conn_type": "http", "host": f"{sink.url}/chat"}
        ),
        f"AIRFLOW_CONN_{conns['status_page_webhook'].upper()}": json.dumps(
            {"conn_type": "http", "host": f"{sink.url}/status-page"}
        ),
        f"AIRFLOW_CONN_{conns['audit_database'].upper()}": json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "schema": audit_db,
            }
        ),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env


def _sent_mail(incident_id: str) -> list[dict[str, Any]]:
    """SES mail moto accepted (read from its in-process backend: the emulator runs in this process,
    and GET /moto-api/data.json breaks on the seeded RDS instances)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    mails = []
    for m in backend.sent_messages:
        parsed = email.message_from_string(getattr(m, "raw_data", ""))
        if incident_id not in str(parsed["Subject"]):
            continue
        text = "".join(
            part.get_payload(decode=True).decode()
            for part in parsed.walk()
            if part.get_content_type() == "text/html"
        )
        mails.append({"source": m.source, "destinations": list(m.destinations), "text": text})
    return mails


def _inbox(emulator: EmulatorHandle, seeded: dict, topic: str, incident_id: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", endpoint_url=emulator.endpoint_url, region_name="us-east-1")
    found: list[dict[str, Any]] = []
    for _ in range(3):
        batch = sqs.receive_message(
            QueueUrl=seeded["queue_urls"][topic], MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            body = json.loads(message["Body"])
            if incident_id in body["Message"]:
                found.append(body)
            sqs.delete_message(QueueUrl=seeded["queue_urls"][topic], ReceiptHandle=message["ReceiptHandle"])
    return found


def _chat(sink: WebhookSinkHandle, incident_id: str, path: str = "/chat") -> list[dict[str, Any]]:
    return [m["body"] for m in sink.messages(path) if incident_id in json.dumps(m["body"])]


def test_level3_incident_reaches_exactly_the_matrix(
    estate: Estate, emulator: EmulatorHandle, seeded: dict, sink: WebhookSinkHandle, connections: dict
) -> None:
    from dr_automation.notifications import notify_incident

    incident = f"INC-IT-{secrets.token_hex(3)}"
    result = notify_incident(
        3,
        "Primary region us-east-1 down",
        "Health checks failing in us-east-1; failing over to us-west-2.",
        incident_id=incident,
        links={"runbook": "https://wiki.leanvibe.internal/dr/regional-failover"},
        retry_delay_seconds=0.05,
        estate=estate,
    )
    assert result["counts"] == {"sent": 15, "failed": 0, "total": 15}, result

    # SES: one mail per address, from the verified sender; partners/regulators untouched
    mails = _sent_mail(incident)
    assert sorted(d for m in mails for d in set(m["destinations"])) == sorted(LEVEL3_MAIL)
    assert {m["source"] for m in mails} == {estate.section("notifications")["sender"]}
    assert not {d for m in mails for d in m["destinations"]} & NEVER_AT_LEVEL3
    for mail in mails:
        internal = not (
            {"enterprise-notices@leanvibe.ai", "team-notices@leanvibe.ai"} & set(mail["destinations"])
        )
        assert ("wiki.leanvibe.internal" in mail["text"]) is internal
        assert ("RTO 240 min" in mail["text"]) is internal

    # SNS: one page on the shared exec pager (CEO + CTO), one call-out for enterprise customers
    exec_pages = _inbox(emulator, seeded, "dr-exec-pager", incident)
    assert len(exec_pages) == 1 and "L3 critical" in exec_pages[0]["Message"]
    callouts = _inbox(emulator, seeded, "dr-enterprise-callout", incident)
    assert len(callouts) == 1 and "wiki.leanvibe.internal" not in callouts[0]["Message"]
    assert _inbox(emulator, seeded, "dr-oncall", incident) == []

    # chat and status page in the sink
    chats = _chat(sink, incident)
    assert sorted(c["channel"] for c in chats) == [
        "#customer-success",
        "#incident-command",
        "#platform-oncall",
    ]
    assert all("RTO 240 min" in c["text"] and "wiki.leanvibe.internal" in c["text"] for c in chats)
    pages = _chat(sink, incident, "/status-page")
    assert len(pages) == 1 and pages[0]["page_id"] == "leanvibe-status"
    assert pages[0]["incident"]["impact"] == "critical" and "wiki" not in json.dumps(pages[0])

    # audit: exactly one 'sent' row per (recipient, channel), with incident id and level
    rows = AuditLog(estate.connections["audit_database"]).events(
        incident_id=incident, event_type="notification"
    )
    assert sorted((r["recipient"], r["channel"]) for r in rows) == sorted(LEVEL3)
    assert {(r["status"], r["level"]) for r in rows} == {("sent", 3)}
    assert all(r["detail"].get("message_id") for r in rows)


def test_ses_outage_fails_email_only_and_is_audited(
    estate: Estate, emulator: EmulatorHandle, seeded: dict, sink: WebhookSinkHandle, connections: dict
) -> None:
    from dr_automation.notifications import notify_incident

    incident = f"INC-IT-{secrets.token_hex(3)}"
    inject_fault(emulator.endpoint_url, service="ses", mode="error", count=50)
    try:
        result = notify_incident(
            3,
            "Primary region down",
            "Failing over.",
            incident_id=incident,
            retries=2,
            retry_delay_seconds=0.01,
            estate=estate,
        )
    finally:
        clear_faults(emulator.endpoint_url)
    failed = {(d["recipient"], d["channel"]) for d in result["deliveries"] if d["status"] == "failed"}
    assert failed == {pair for pair in LEVEL3 if pair[1] == "email"}
    assert result["counts"] == {"sent": 9, "failed": 6, "total": 15}
    assert _sent_mail(incident) == []
    assert len(_inbox(emulator, seeded, "dr-exec-pager", incident)) == 1
    assert len(_chat(sink, incident)) == 3 and len(_chat(sink, incident, "/status-page")) == 1

    rows = AuditLog(estate.connections["audit_database"]).events(
        incident_id=incident, event_type="notification"
    )
    by_status: dict[str, set] = {}
    for row in rows:
        by_status.setdefault(row["status"], set()).add((row["recipient"], row["channel"]))
    assert by_status == {"failed": failed, "sent": LEVEL3 - failed}
    for row in rows:
        if row["status"] == "failed":
            assert row["detail"]["attempts"] == 3 and "InternalFailure" in row["detail"]["error"]


FAILING_DAG = textwrap.dedent(
    '''
    """A DAG whose only task fails, to exercise the bundle's failure callback."""
    from __future__ import annotations

    from airflow.sdk import dag, task

    from dr_automation.dag_defaults import dag_tags, default_args
    from dr_automation.estate import load_estate

    estate = load_estate()


    @dag(
        dag_id="dr_callback_probe",
        schedule=None,
        catchup=False,
        default_args={**default_args(estate), "retries": 0},
        tags=dag_tags("drill"),
    )
    def dr_callback_probe():
        @task
        def restore_scratch_database():
            raise RuntimeError(
                "restore target unreachable: postgresql://dr_admin:Hunter2Secret@db.internal:5432/app"
            )

        restore_scratch_database()


    probe = dr_callback_probe()

    if __name__ == "__main__":
        run = probe.test()
        print("RUN_STATE", run.state)
    '''
)


def test_failed_task_pages_the_oncall_route_end_to_end(
    tmp_path: Path,
    estate: Estate,
    sink: WebhookSinkHandle,
    connections: dict,
    airflow_env: dict[str, str],
    airflow_db: str,
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    dag_file = dags / "dr_callback_probe.py"
    dag_file.write_text(FAILING_DAG)
    base_url = "http://127.0.0.1:18080"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        **airflow_env,
        **connections,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__API__BASE_URL": base_url,
    }
    sink.clear()
    proc = subprocess.run(
        [sys.executable, str(dag_file)], env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path
    )
    output = proc.stdout + proc.stderr
    assert "RUN_STATE failed" in proc.stdout, output[-4000:]

    # level 2 (the default failure level): CTO, VP Engineering, Platform Team Lead, Customer Success
    chats = [m["body"] for m in sink.messages("/chat")]
    assert sorted(c["channel"] for c in chats) == [
        "#customer-success",
        "#incident-command",
        "#platform-oncall",
    ]
    text = chats[0]["text"]
    assert "restore_scratch_database" in text
    assert "restore target unreachable" in text
    assert "Hunter2Secret" not in json.dumps(chats)
    assert f"{base_url}/dags/dr_callback_probe/runs/" in text
    assert "/tasks/restore_scratch_database?try_number=1" in text
    assert "Level 2 (major)" in text
    assert sink.messages("/status-page") == []  # customers never hear about a failed task

    rows = AuditLog(estate.connections["audit_database"]).events(event_type="notification")
    mine = [r for r in rows if r["dag_id"] == "dr_callback_probe"]
    assert {(r["recipient"], r["channel"]) for r in mine} == {
        ("CTO", "phone"),
        ("CTO", "chat"),
        ("VP Engineering", "chat"),
        ("VP Engineering", "email"),
        ("Platform Team Lead", "chat"),
        ("Customer Success", "chat"),
        ("Customer Success", "email"),
    }
    assert {(r["status"], r["task_id"], r["level"], r["actor"]) for r in mine} == {
        ("sent", "restore_scratch_database", 2, "airflow:on_failure_callback")
    }
    # Airflow's own traceback of the task prints the exception as raised; what WE log must not.
    ours = [line for line in output.splitlines() if "dr_automation" in line]
    assert ours and not [line for line in ours if "Hunter2Secret" in line]
