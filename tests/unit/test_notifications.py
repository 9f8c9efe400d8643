"""Incident notifications without any server: wording, validation before sending, retries, callbacks.

Transports are replaced by recorders on the notifier classes' ``_send`` and the audit log by an
in-memory fake, so these tests prove what WOULD be sent and audited, and that bad input sends and
audits nothing. The real transports are exercised in tests/integration/test_incident_notifications.py.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from dr_automation.estate import DEFAULT_ESTATE_PATH, Estate, load_estate
from dr_automation.estate.model import build_estate
from dr_automation.incidents import IncidentInputError, incident_level
from dr_automation.notifications import channels
from dr_automation.notifications.callbacks import describe_error, on_task_failure, task_log_url
from dr_automation.notifications.channels import (
    ChatWebhookNotifier,
    SesEmailNotifier,
    SnsTopicNotifier,
    StatusPageWebhookNotifier,
    safe_error,
)
from dr_automation.notifications.incident import IncidentNotifier, build_message, notify_incident

LEVEL3_EXPECTED = {
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


class FakeAudit:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def record(self, event_type: str, **fields: Any) -> int:
        self.rows.append({"event_type": event_type, **fields})
        return len(self.rows)

    def notifications(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["event_type"] == "notification"]


@pytest.fixture
def estate() -> Estate:
    return load_estate()


@pytest.fixture
def audit() -> FakeAudit:
    return FakeAudit()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every _send call, in order, with what the notifier would have delivered."""
    calls: list[dict[str, Any]] = []

    def recorder(self: channels.AuditedNotifier) -> str:
        entry: dict[str, Any] = {
            "channel": self.channel,
            "target": self.target,
            "recipients": list(self.recipients),
        }
        if isinstance(self, SesEmailNotifier):
            entry.update(subject=self.subject, body=self.body)
        elif isinstance(self, SnsTopicNotifier):
            entry.update(subject=self.subject, message=self.message)
        else:
            entry.update(payload=self.payload())
        calls.append(entry)
        return f"msg-{len(calls)}"

    for cls in (SesEmailNotifier, SnsTopicNotifier, ChatWebhookNotifier, StatusPageWebhookNotifier):
        monkeypatch.setattr(cls, "_send", recorder)
    return calls


def _estate_with(mutate: Any) -> Estate:
    data = yaml.safe_load(DEFAULT_ESTATE_PATH.read_text())
    data = copy.deepcopy(data)
    mutate(data)
    return build_estate("test-estate.yaml", data)  # skip validation: notify_incident must catch it


# -- wording ----------------------------------------------------------------------------------


def test_internal_message_names_level_rto_rpo_title_summary_id_and_links(estate: Estate) -> None:
    msg = build_message(
        estate,
        incident_level(estate, 3),
        audience="internal",
        title="Primary region down",
        summary="us-east-1 API failing; dsn postgresql://dr:hunter2pw@db/x",
        incident_id="INC-20261104-abc123",
        links={"runbook": "https://wiki.internal/dr/failover"},
    )
    assert msg.subject == "[DR L3 critical] Primary region down (INC-20261104-abc123)"
    for part in (
        "Level 3 (critical)",
        "RTO 240 min",
        "RPO 60 min",
        "Primary region down",
        "us-east-1 API failing",
        "INC-20261104-abc123",
        "runbook: https://wiki.internal/dr/failover",
    ):
        assert part in msg.text, part
    assert "hunter2pw" not in msg.text  # secrets never leave, even internally
    assert "INC-20261104-abc123" in msg.short and "RTO 240 min" in msg.short


def test_external_message_is_customer_safe(estate: Estate) -> None:
    msg = build_message(
        estate,
        incident_level(estate, 3),
        audience="external",
        title="Primary region down",
        summary="Failover in progress, see https://grafana.internal/d/x token=abcd1234secret",
        incident_id="INC-20261104-abc123",
        links={"runbook": "https://wiki.internal/dr/failover"},
    )
    assert "https://" not in msg.text and "wiki.internal" not in msg.text and "grafana" not in msg.text
    assert "abcd1234secret" not in msg.text
    assert "RPO" not in msg.text  # data-loss targets are internal
    assert "within 4 h" in msg.text and "INC-20261104-abc123" in msg.text
    assert msg.subject.startswith("LeanVibe service incident: Primary region down")
    public = build_message(
        estate,
        incident_level(estate, 3),
        audience="external",
        title="t",
        summary="internal detail",
        incident_id="INC-1",
        public_summary="Some customers cannot log in.",
    )
    assert "Some customers cannot log in." in public.text and "internal detail" not in public.text


# -- validation before anything is sent -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"level": 99}, "level"),
        ({"level": True}, "level"),
        ({"level": "3"}, "level"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "two\nlines"}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"summary": ""}, "summary"),
        ({"incident_id": "bad id!"}, "incident_id"),
        ({"incident_id": "x"}, "incident_id"),
        ({"incident_id": "INC-1\nBcc: evil@example.com"}, "incident_id"),
        ({"links": {"runbook": "ftp://wiki/x"}}, "links.runbook"),
        ({"links": {"runbook": "not a url"}}, "links.runbook"),
        ({"audiences": {"partners"}}, "audiences"),
        ({"audiences": "internal"}, "audiences"),
        ({"include_as_needed": "yes"}, "include_as_needed"),
        ({"retries": 99}, "retries"),
        ({"retry_delay_seconds": -1}, "retry_delay_seconds"),
    ],
)
def test_bad_input_names_the_field_and_sends_nothing(
    estate: Estate, audit: FakeAudit, sent: list, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"level": 3, "title": "Region down", "summary": "API failing", **kwargs}
    with pytest.raises(IncidentInputError) as excinfo:
        notify_incident(
            args.pop("level"), args.pop("title"), args.pop("summary"), estate=estate, audit=audit, **args
        )
    assert excinfo.value.field == field
    assert str(excinfo.value).startswith(f"{field}: ")
    assert sent == [] and audit.rows == []


def test_recipient_without_an_address_for_a_channel_sends_nothing(audit: FakeAudit, sent: list) -> None:
    # Marketing (the LAST level-3 internal recipient by deadline) loses its email address: the
    # earlier, immediate recipients must not have been paged either.
    estate = _estate_with(lambda d: d["notifications"]["contacts"]["Marketing"].pop("email"))
    with pytest.raises(IncidentInputError) as excinfo:
        notify_incident(3, "Region down", "API failing", estate=estate, audit=audit)
    assert excinfo.value.field == "notifications.contacts.Marketing.email"
    assert sent == [] and audit.rows == []


@pytest.mark.parametrize(
    ("contact", "channel", "value"),
    [("Marketing", "email", "marketing-at-leanvibe"), ("CEO", "phone", "pager with spaces")],
)
def test_malformed_address_sends_nothing(
    audit: FakeAudit, sent: list, contact: str, channel: str, value: str
) -> None:
    estate = _estate_with(lambda d: d["notifications"]["contacts"][contact].update({channel: value}))
    with pytest.raises(IncidentInputError) as excinfo:
        notify_incident(3, "Region down", "API failing", estate=estate, audit=audit)
    assert excinfo.value.field == f"notifications.contacts.{contact}.{channel}"
    assert sent == [] and audit.rows == []


def test_unknown_channel_in_the_matrix_sends_nothing(audit: FakeAudit, sent: list) -> None:
    def add_pigeon(d: dict) -> None:
        d["stakeholders"]["internal"][0]["channels"].append("pigeon")
        d["notifications"]["contacts"]["CEO"]["pigeon"] = "roof"

    with pytest.raises(IncidentInputError, match="unknown channel 'pigeon'"):
        notify_incident(3, "Region down", "API failing", estate=_estate_with(add_pigeon), audit=audit)
    assert sent == [] and audit.rows == []


# -- delivery ---------------------------------------------------------------------------------


def test_level3_plan_reaches_the_matrix_in_deadline_order_with_one_audit_row_each(
    estate: Estate, audit: FakeAudit, sent: list
) -> None:
    result = notify_incident(
        3,
        "Primary region down",
        "API failing",
        incident_id="INC-20261104-unit01",
        estate=estate,
        audit=audit,
        links={"runbook": "https://wiki.internal/dr"},
    )
    pairs = {(d["recipient"], d["channel"]) for d in result["deliveries"]}
    assert pairs == LEVEL3_EXPECTED
    assert result["counts"] == {"sent": 15, "failed": 0, "total": 15}
    assert result["status"] == "sent"
    # immediately-first: the first messages are the CEO/CTO pager and the CEO's email
    assert sent[0]["channel"] == "phone" and sent[0]["target"] == "dr-exec-pager"
    assert sent[0]["recipients"] == ["CEO", "CTO"]  # one page for a shared pager topic
    deadlines = [d["deadline"] for d in result["deliveries"]]
    assert deadlines[0] == "immediately" and deadlines[-1] == "within 2 h"
    # shared addresses get one message: 15 (recipient, channel) pairs, 12 messages
    assert len(sent) == 12
    chats = [s for s in sent if s["channel"] == "chat"]
    assert [c["target"] for c in chats] == ["#incident-command", "#platform-oncall", "#customer-success"]
    # audit: exactly one 'sent' row per (recipient, channel), with incident id and level
    rows = audit.notifications()
    assert sorted((r["recipient"], r["channel"]) for r in rows) == sorted(LEVEL3_EXPECTED)
    assert {(r["status"], r["incident_id"], r["level"]) for r in rows} == {("sent", "INC-20261104-unit01", 3)}
    assert all("@" not in r["target"] or r["channel"] == "email" for r in rows)
    # external readers never see the internal link
    for message in sent:
        text = json.dumps(message)
        if set(message["recipients"]) & {"Enterprise Customers", "Team Customers", "Developer Customers"}:
            assert "wiki.internal" not in text
        else:
            assert "wiki.internal" in text
    summary = [r for r in audit.rows if r["event_type"] == "incident.notified"]
    assert len(summary) == 1 and summary[0]["status"] == "sent"


def test_partners_and_regulators_only_when_asked(estate: Estate, audit: FakeAudit, sent: list) -> None:
    result = notify_incident(
        4, "Breach", "Security incident", estate=estate, audit=audit, include_as_required=True
    )
    recipients = {d["recipient"] for d in result["deliveries"]}
    assert "Regulatory Bodies" in recipients and "Partners/Vendors" not in recipients
    formal = [s for s in sent if s["channel"] == "formal_notice"]
    assert [f["target"] for f in formal] == ["regulator-notices@leanvibe.ai"]


def test_one_failing_channel_is_retried_audited_and_does_not_stop_the_others(
    estate: Estate, audit: FakeAudit, sent: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []

    def broken(self: ChatWebhookNotifier) -> str:
        attempts.append(self.target)
        raise ConnectionError(
            "POST https://hooks.chat.example/T000/B000/XXXXsecret failed: password=hunter22"
        )

    monkeypatch.setattr(ChatWebhookNotifier, "_send", broken)
    result = notify_incident(
        3, "Region down", "API failing", estate=estate, audit=audit, retries=2, retry_delay_seconds=0
    )
    assert attempts.count("#incident-command") == 3  # 1 + 2 retries
    failed = {(d["recipient"], d["channel"]) for d in result["deliveries"] if d["status"] == "failed"}
    assert failed == {
        ("CTO", "chat"),
        ("VP Engineering", "chat"),
        ("Platform Team Lead", "chat"),
        ("Customer Success", "chat"),
    }
    assert result["counts"] == {"sent": 11, "failed": 4, "total": 15}
    assert result["status"] == "partial"
    assert len(sent) == 9  # every non-chat message still went out
    bad = [r for r in audit.notifications() if r["status"] == "failed"]
    assert len(bad) == 4
    for row in bad:
        assert row["detail"]["attempts"] == 3
        assert "ConnectionError" in row["detail"]["error"]
        assert "XXXXsecret" not in row["detail"]["error"] and "hunter22" not in row["detail"]["error"]


def test_an_unreachable_audit_log_does_not_stop_delivery(estate: Estate, sent: list) -> None:
    class DownAudit:
        def record(self, *args: Any, **kwargs: Any) -> int:
            raise RuntimeError("audit database error: connection refused")

    result = notify_incident(2, "Region degraded", "errors up", estate=estate, audit=DownAudit())  # type: ignore[arg-type]
    assert result["counts"]["failed"] == 0 and result["counts"]["sent"] == result["counts"]["total"] > 0
    assert len(result["audit_errors"]) == result["counts"]["total"] + 1  # one per row + summary row


# -- notifier classes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "notifier",
    [
        SesEmailNotifier(to="a@example.com", subject="s", body="b"),
        SnsTopicNotifier(topic="t", message="m"),
        ChatWebhookNotifier(chat_channel="#c", text="t"),
        StatusPageWebhookNotifier(page_id="p", title="t", body="b"),
        IncidentNotifier(level=3, title="t", summary="s"),
    ],
    ids=lambda n: type(n).__name__,
)
def test_template_fields_are_attributes_set_in_init(notifier: Any) -> None:
    """Like the provider's validate_template_fields: every template field exists and is not private."""
    assert notifier.template_fields
    for name in notifier.template_fields:
        assert not name.startswith("_")
        assert hasattr(notifier, name), name


def test_templates_render_from_the_context() -> None:
    ses = SesEmailNotifier(to="{{ params.to }}", subject="Run {{ run_id }}", body="Level {{ params.level }}")
    ses.render_template_fields({"params": {"to": "ops@example.com", "level": 3}, "run_id": "manual__1"})
    assert (ses.to, ses.subject, ses.body) == ("ops@example.com", "Run manual__1", "Level 3")
    notifier = IncidentNotifier(level="{{ params.level }}", title="{{ params.title }}", summary="s")
    notifier.render_template_fields({"params": {"level": 3, "title": "Region down"}})
    assert notifier._level() == 3 and notifier.title == "Region down"


def test_hooks_are_built_lazily() -> None:
    notifier = SnsTopicNotifier(topic="dr-exec-pager", message="m", estate=load_estate())
    assert "hook" not in notifier.__dict__ and "topic_arn" not in notifier.__dict__


def test_notify_raises_after_auditing_a_failed_delivery(
    audit: FakeAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: Any) -> str:
        raise TimeoutError("webhook timed out")

    monkeypatch.setattr(ChatWebhookNotifier, "_send", fail)
    notifier = ChatWebhookNotifier(chat_channel="#c", text="t", recipient="CTO", audit=audit, retries=0)  # type: ignore[arg-type]
    with pytest.raises(
        channels.NotificationDeliveryError, match="chat delivery to #c failed after 1 attempt"
    ):
        notifier.notify({})
    assert [(r["status"], r["recipient"], r["target"]) for r in audit.rows] == [("failed", "CTO", "#c")]


def test_status_page_payload_refuses_unknown_status() -> None:
    notifier = StatusPageWebhookNotifier(page_id="p", title="t", body="b", status="panicking")
    with pytest.raises(ValueError, match="status: must be one of"):
        notifier.payload()


def test_safe_error_redacts_strips_urls_and_bounds() -> None:
    text = safe_error(RuntimeError("connect https://user:pw@host/x failed password=abc123 " + "y" * 900))
    assert "abc123" not in text and "https://" not in text and text.startswith("RuntimeError: connect")
    assert len(text) <= channels.MAX_ERROR_CHARS and "\n" not in text


# -- failure callback -------------------------------------------------------------------------


def test_task_log_url_matches_the_airflow_ui_shape() -> None:
    url = task_log_url(
        "dag_a", "manual__2026-01-01T00:00:00+00:00", "t1", 2, base_url="http://127.0.0.1:8080/"
    )
    assert (
        url
        == "http://127.0.0.1:8080/dags/dag_a/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/t1?try_number=2"
    )
    assert task_log_url("d", "r", "t", 1, 4, base_url="http://x").endswith("/tasks/t/mapped/4?try_number=1")


def test_describe_error_redacts_and_truncates() -> None:
    text = describe_error(RuntimeError("pg_dump: password=s3cretpw host=db " + "z" * 1000))
    assert "s3cretpw" not in text and len(text) <= 500


def test_failure_callback_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import dr_automation.audit
    from dr_automation.notifications import callbacks

    def explode(context: Any, **kwargs: Any) -> dict:
        raise RuntimeError("estate unreadable")

    recorded: list[dict] = []

    class BrokenAudit:
        @classmethod
        def from_estate(cls, estate: Any) -> BrokenAudit:
            return cls()

        def record(self, *args: Any, **kwargs: Any) -> int:
            recorded.append(kwargs)
            raise RuntimeError("audit down too")

    monkeypatch.setattr(callbacks, "notify_task_failure", explode)
    monkeypatch.setattr(dr_automation.audit, "AuditLog", BrokenAudit)
    on_task_failure({"ti": None})  # must not raise
    assert (
        recorded
        and recorded[0]["status"] == "failed"
        and "estate unreadable" in recorded[0]["detail"]["error"]
    )


def test_failure_callback_pages_only_the_internal_route_of_the_dags_level(
    estate: Estate, audit: FakeAudit, sent: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dr_automation.notifications import callbacks, incident

    real = incident.notify_incident
    monkeypatch.setattr(incident, "notify_incident", lambda *a, **k: real(*a, **{**k, "audit": audit}))

    class TI:
        dag_id, run_id, task_id, try_number, map_index = "regional_failover", "manual__1", "shift_dns", 1, -1

    result = callbacks.notify_task_failure(
        {"ti": TI(), "exception": RuntimeError("Route53 said no; token=abcd1234efgh")}, estate=estate
    )
    assert result["level"] == 3  # failure_levels.dags.regional_failover
    assert {d["audience"] for d in result["deliveries"]} == {"internal"}
    chat = next(s for s in sent if s["channel"] == "chat")
    text = chat["payload"]["text"]
    assert "shift_dns" in text and "Route53 said no" in text and "abcd1234efgh" not in text
    assert "/dags/regional_failover/runs/manual__1/tasks/shift_dns?try_number=1" in text


def test_default_args_wire_the_failure_callback(estate: Estate) -> None:
    from dr_automation.dag_defaults import default_args

    assert default_args(estate)["on_failure_callback"] is on_task_failure


# -- import cost ------------------------------------------------------------------------------


def test_dag_defaults_import_stays_cheap() -> None:
    """DAG files import dag_defaults at parse time: no provider, no notifier base, no hooks."""
    code = (
        "import sys, dr_automation.dag_defaults, dr_automation.notifications;"
        "print(','.join(m for m in sys.modules if m.startswith(('airflow', 'boto', 'requests', "
        "'dr_automation.notifications.', 'psycopg'))))"
    )
    env = {**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "dr_automation.notifications.callbacks"
    own = 0
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] in (
            "dr_automation.notifications",
            "dr_automation.notifications.callbacks",
        ):
            own += int(parts[0])  # self time, microseconds
    assert own < 50_000, f"notifications package costs {own} us to import"


@pytest.fixture(autouse=True)
def _no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(channels.time, "sleep", lambda s: None)
    yield
