"""One Airflow notifier per delivery channel, each writing the audit log for every delivery.

Modelled on the Amazon provider's ``SesNotifier`` / ``SnsNotifier``: message parts are template
fields, hooks are built lazily (a cached property, never at import or in ``__init__``), and the
provider's own hooks do the talking (``SesHook``, ``SnsHook``, the HTTP provider's ``HttpHook``).

What they add: bounded retries with exponential backoff, one audit row per recipient per delivery
(``sent`` or ``failed`` with the reason), and ``deliver()``, which never raises, so one failing
channel cannot stop an incident's other deliveries. ``notify()`` (what Airflow calls) raises after
auditing a failure, like the provider's notifiers.

Error text is redacted, and URLs are removed from it: a webhook URL is a credential.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseNotifier

from dr_automation.audit import context_ids

if TYPE_CHECKING:
    from dr_automation.audit import AuditLog
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

NOTIFICATION_EVENT = "notification"
MAX_ERROR_CHARS = 500
MAX_RETRIES = 5
MAX_BACKOFF_SECONDS = 30.0
SNS_SUBJECT_MAX = 100
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class NotificationDeliveryError(RuntimeError):
    """A delivery failed after its retries (already audited as 'failed')."""


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery (one message to one address, possibly for several recipients)."""

    channel: str
    target: str
    recipients: tuple[str, ...]
    status: str  # sent | failed
    attempts: int
    error: str | None = None
    message_id: str | None = None
    audit_errors: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "target": self.target,
            "recipients": list(self.recipients),
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "message_id": self.message_id,
            "audit_errors": list(self.audit_errors),
        }


def safe_error(exc: BaseException) -> str:
    """`Type: message`, secrets and URLs removed, one line, bounded: fit for logs, audit and chat."""
    from dr_toolbox.redact import redact

    text = f"{type(exc).__name__}: {exc}".strip()
    text = _URL.sub("<url>", redact(text))
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _load_estate(estate: Estate | None) -> Estate:
    if estate is not None:
        return estate
    from dr_automation.estate import load_estate

    return load_estate()


class AuditedNotifier(BaseNotifier):
    """Base of the channel notifiers: retries, audit rows, never-raising ``deliver()``.

    :param recipient: who this delivery is for (a stakeholder name, or several sharing one address);
        one audit row is written per name.
    :param incident_id: incident the delivery belongs to (audited).
    :param level: incident level (audited).
    :param audit: an AuditLog, an Airflow connection id of the audit database, or None for the
        estate's ``connections.audit_database``.
    :param retries: extra attempts after a failure (0..5), waiting retry_delay_seconds * 2**n.
    :param actor: who caused the notification (audited), e.g. ``airflow:dag.task``.
    """

    channel: ClassVar[str] = ""

    def __init__(
        self,
        *,
        recipient: str | Sequence[str] | None = None,
        incident_id: str | None = None,
        level: int | None = None,
        audit: AuditLog | str | None = None,
        retries: int = 2,
        retry_delay_seconds: float = 1.0,
        actor: str | None = None,
        estate: Estate | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries: must be an integer from 0 to {MAX_RETRIES} (got {retries!r})")
        if (
            isinstance(retry_delay_seconds, bool)
            or not isinstance(retry_delay_seconds, int | float)
            or not 0 <= retry_delay_seconds <= MAX_BACKOFF_SECONDS
        ):
            raise ValueError(
                f"retry_delay_seconds: must be a number from 0 to {MAX_BACKOFF_SECONDS:g} "
                f"(got {retry_delay_seconds!r})"
            )
        if recipient is None:
            self.recipients: tuple[str, ...] = ()
        elif isinstance(recipient, str):
            self.recipients = (recipient,)
        else:
            self.recipients = tuple(recipient)
        self.incident_id = incident_id
        self.level = level
        self.retries = retries
        self.retry_delay_seconds = float(retry_delay_seconds)
        self.actor = actor
        self._audit = audit
        self._estate = estate

    # -- what subclasses provide --------------------------------------------------------------
    @property
    def target(self) -> str:
        """The address delivered to (never a secret: it is audited)."""
        raise NotImplementedError

    def _send(self) -> str | None:
        """Deliver once; return the provider's message id. Raise on failure."""
        raise NotImplementedError

    def _audit_detail(self) -> dict[str, Any]:
        return {}

    # -- shared behaviour ---------------------------------------------------------------------
    @property
    def estate(self) -> Estate:
        self._estate = _load_estate(self._estate)
        return self._estate

    @cached_property
    def audit_log(self) -> AuditLog:
        from dr_automation.audit import AuditLog

        if isinstance(self._audit, str):
            return AuditLog(self._audit)
        if self._audit is not None:
            return self._audit
        return AuditLog.from_estate(self.estate)

    def deliver(self, context: Mapping[str, Any] | None = None) -> Delivery:
        """Send with bounded retries, audit the outcome once per recipient, never raise."""
        attempts = 0
        error: str | None = None
        message_id: str | None = None
        try:
            target = self.target
        except Exception as exc:  # a bad address is a failed delivery, not a crash of the caller
            target, error = "<unknown>", safe_error(exc)
        else:
            for attempt in range(1, self.retries + 2):
                if attempt > 1:
                    time.sleep(min(self.retry_delay_seconds * 2 ** (attempt - 2), MAX_BACKOFF_SECONDS))
                attempts = attempt
                try:
                    message_id = self._send()
                    error = None
                    break
                except Exception as exc:
                    error = safe_error(exc)
                    self.log.warning(
                        "%s delivery to %s failed (attempt %d of %d): %s",
                        self.channel,
                        target,
                        attempt,
                        self.retries + 1,
                        error,
                    )
        status = "sent" if error is None else "failed"
        audit_errors = self._record(context, target, status, attempts, error, message_id)
        if status == "sent":
            self.log.info("%s delivered to %s (%s)", self.channel, target, ", ".join(self.recipients) or "-")
        return Delivery(
            channel=self.channel,
            target=target,
            recipients=self.recipients,
            status=status,
            attempts=attempts,
            error=error,
            message_id=message_id,
            audit_errors=audit_errors,
        )

    def _record(
        self,
        context: Mapping[str, Any] | None,
        target: str,
        status: str,
        attempts: int,
        error: str | None,
        message_id: str | None,
    ) -> tuple[str, ...]:
        """One audit row per recipient. An unreachable audit DB is logged, never fatal to delivery."""
        ids = context_ids(context)
        detail: dict[str, Any] = {"attempts": attempts, **self._audit_detail()}
        if message_id:
            detail["message_id"] = message_id
        if error:
            detail["error"] = error
        errors: list[str] = []
        for recipient in self.recipients or (None,):
            try:
                self.audit_log.record(
                    NOTIFICATION_EVENT,
                    status=status,
                    incident_id=self.incident_id,
                    level=self.level,
                    actor=self.actor,
                    channel=self.channel,
                    recipient=recipient,
                    target=target,
                    detail=detail,
                    **ids,
                )
            except Exception as exc:
                message = safe_error(exc)
                errors.append(message)
                self.log.error("could not audit %s delivery to %s: %s", self.channel, target, message)
        return tuple(errors)

    def notify(self, context: Mapping[str, Any]) -> None:
        delivery = self.deliver(context)
        if delivery.status != "sent":
            raise NotificationDeliveryError(
                f"{self.channel} delivery to {delivery.target} failed after {delivery.attempts} "
                f"attempt(s): {delivery.error}"
            )


class SesEmailNotifier(AuditedNotifier):
    """Email through Amazon SES (the provider's SesHook), from the estate's verified sender.

    :param to: one address or several.
    :param subject: the subject (one line).
    :param body: plain text; sent as escaped HTML so nothing in it can inject markup.
    :param mail_from: default ``notifications.sender``.
    :param aws_conn_id: default ``connections.aws``. :param region_name: default ``notifications.region``.
    """

    channel: ClassVar[str] = "email"
    template_fields: Sequence[str] = ("to", "subject", "body", "mail_from", "aws_conn_id", "region_name")

    def __init__(
        self,
        *,
        to: str | Sequence[str],
        subject: str,
        body: str,
        mail_from: str | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        channel: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.to = to
        self.subject = subject
        self.body = body
        self.mail_from = mail_from
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        if channel is not None:  # formal_notice is also SES email; audit the matrix's channel name
            self.channel = channel

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.ses import SesHook

        notifications = self.estate.section("notifications")
        return SesHook(
            aws_conn_id=self.aws_conn_id or self.estate.connections["aws"],
            region_name=self.region_name or notifications["region"],
        )

    @property
    def target(self) -> str:
        return self.to if isinstance(self.to, str) else ", ".join(self.to)

    def html(self) -> str:
        paragraphs = [html.escape(p).replace("\n", "<br>\n") for p in str(self.body).split("\n\n")]
        return "<html><body>\n" + "\n".join(f"<p>{p}</p>" for p in paragraphs) + "\n</body></html>"

    def _send(self) -> str | None:
        response = self.hook.send_email(
            mail_from=self.mail_from or self.estate.section("notifications")["sender"],
            to=self.to,
            subject=_CONTROL.sub(" ", str(self.subject)).strip(),
            html_content=self.html(),
        )
        return (response or {}).get("MessageId")

    def _audit_detail(self) -> dict[str, Any]:
        return {"subject": str(self.subject)}


class SnsTopicNotifier(AuditedNotifier):
    """Publish to an SNS topic found by NAME (the pager/SMS subscriptions live on the topic).

    :param topic: topic name, e.g. ``dr-exec-pager`` (looked up in region_name; an unknown name fails
        the delivery, it is never created: a typo must not silently page nobody).
    :param message: the text. :param subject: optional, trimmed to SNS's 100 characters.
    """

    channel: ClassVar[str] = "sns"
    template_fields: Sequence[str] = ("topic", "message", "subject", "aws_conn_id", "region_name")

    def __init__(
        self,
        *,
        topic: str,
        message: str,
        subject: str | None = None,
        aws_conn_id: str | None = None,
        region_name: str | None = None,
        channel: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.topic = topic
        self.message = message
        self.subject = subject
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        if channel is not None:  # phone / sms / sns all go through a topic
            self.channel = channel

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.amazon.aws.hooks.sns import SnsHook

        return SnsHook(
            aws_conn_id=self.aws_conn_id or self.estate.connections["aws"],
            region_name=self.region_name or self.estate.section("notifications")["region"],
        )

    @property
    def target(self) -> str:
        return str(self.topic)

    @cached_property
    def topic_arn(self) -> str:
        wanted = str(self.topic)
        paginator = self.hook.get_conn().get_paginator("list_topics")
        for page in paginator.paginate():
            for topic in page.get("Topics", []):
                if topic["TopicArn"].rsplit(":", 1)[-1] == wanted:
                    return topic["TopicArn"]
        raise NotificationDeliveryError(f"SNS topic {wanted!r} not found in region {self.hook.region_name}")

    def _send(self) -> str | None:
        subject = None
        if self.subject:
            subject = _CONTROL.sub(" ", str(self.subject)).strip()[:SNS_SUBJECT_MAX] or None
        response = self.hook.publish_to_target(
            target_arn=self.topic_arn, message=str(self.message), subject=subject
        )
        return (response or {}).get("MessageId")


class _WebhookNotifier(AuditedNotifier):
    """POST a JSON document through the HTTP provider's HttpHook (the URL lives in the connection)."""

    conn_key: ClassVar[str] = ""

    def __init__(self, *, http_conn_id: str | None = None, timeout_seconds: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.http_conn_id = http_conn_id
        self.timeout_seconds = timeout_seconds

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.http.hooks.http import HttpHook

        return HttpHook(
            method="POST", http_conn_id=self.http_conn_id or self.estate.connections[self.conn_key]
        )

    def payload(self) -> dict[str, Any]:
        raise NotImplementedError

    def _send(self) -> str | None:
        response = self.hook.run(
            endpoint=None,
            json=self.payload(),
            headers={"Content-Type": "application/json"},
            extra_options={"timeout": self.timeout_seconds},
        )
        try:
            body = response.json()
        except ValueError:
            return None
        value = body.get("id") if isinstance(body, dict) else None
        return None if value is None else str(value)


class ChatWebhookNotifier(_WebhookNotifier):
    """A message to a chat channel through the chat webhook (``connections.chat_webhook``).

    Payload: ``{"channel", "text", "incident_id", "level", "fields"}``.
    """

    channel: ClassVar[str] = "chat"
    conn_key: ClassVar[str] = "chat_webhook"
    template_fields: Sequence[str] = ("chat_channel", "text", "fields", "http_conn_id")

    def __init__(
        self, *, chat_channel: str, text: str, fields: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.chat_channel = chat_channel
        self.text = text
        self.fields = dict(fields or {})

    @property
    def target(self) -> str:
        return str(self.chat_channel)

    def payload(self) -> dict[str, Any]:
        return {
            "channel": str(self.chat_channel),
            "text": str(self.text),
            "incident_id": self.incident_id,
            "level": self.level,
            "fields": self.fields,
        }


class StatusPageWebhookNotifier(_WebhookNotifier):
    """An incident update on the public status page (``connections.status_page_webhook``).

    Payload: ``{"page_id", "incident": {"id", "name", "status", "impact", "body"}}``. Customers read
    it: callers pass customer-safe text only.
    """

    channel: ClassVar[str] = "status_page"
    conn_key: ClassVar[str] = "status_page_webhook"
    template_fields: Sequence[str] = ("page_id", "title", "body", "status", "impact", "http_conn_id")
    STATUSES: ClassVar[frozenset[str]] = frozenset({"investigating", "identified", "monitoring", "resolved"})
    IMPACTS: ClassVar[frozenset[str]] = frozenset({"none", "minor", "major", "critical"})

    def __init__(
        self,
        *,
        page_id: str,
        title: str,
        body: str,
        status: str = "investigating",
        impact: str = "major",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.page_id = page_id
        self.title = title
        self.body = body
        self.status = status
        self.impact = impact

    @property
    def target(self) -> str:
        return str(self.page_id)

    def payload(self) -> dict[str, Any]:
        if self.status not in self.STATUSES:
            raise ValueError(f"status: must be one of {sorted(self.STATUSES)} (got {self.status!r})")
        if self.impact not in self.IMPACTS:
            raise ValueError(f"impact: must be one of {sorted(self.IMPACTS)} (got {self.impact!r})")
        return {
            "page_id": str(self.page_id),
            "incident": {
                "id": self.incident_id,
                "name": str(self.title),
                "status": self.status,
                "impact": self.impact,
                "body": str(self.body),
            },
        }


#: The stakeholder matrix's channel names -> the notifier that delivers them.
CHANNEL_NOTIFIERS: Mapping[str, type[AuditedNotifier]] = {
    "email": SesEmailNotifier,
    "formal_notice": SesEmailNotifier,
    "phone": SnsTopicNotifier,
    "sms": SnsTopicNotifier,
    "sns": SnsTopicNotifier,
    "chat": ChatWebhookNotifier,
    "status_page": StatusPageWebhookNotifier,
}
