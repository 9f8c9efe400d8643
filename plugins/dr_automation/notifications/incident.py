"""Tell everyone the stakeholder matrix names for an incident level, over their channels, audited.

``notify_incident`` is the one entry point (DAG tasks call it; ``IncidentNotifier`` wraps it for
Airflow callbacks). It validates everything before the first message leaves: the level, every
recipient's address on every channel, the title, summary, incident id and links. Bad input raises
``IncidentInputError`` naming the field, and nothing is sent or audited: a half-sent incident
notification is worse than none, because people act on who they think was told.

Then it delivers in deadline order (immediately first). Recipients that share an address on a
channel (CEO and CTO on one pager topic, two roles in one chat channel) get ONE message there, and
each still gets its own audit row. A failing channel is retried with backoff, audited as failed and
reported; the other deliveries go on.

External audiences get customer-safe wording: no internal links, no RPO, no error text (URLs and
secrets are stripped from what they read; pass ``public_summary`` to word it for customers).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseNotifier

from dr_automation.incidents import IncidentInputError, IncidentLevel, Recipient, incident_level, named, route
from dr_automation.notifications.channels import (
    CHANNEL_NOTIFIERS,
    AuditedNotifier,
    ChatWebhookNotifier,
    Delivery,
    SesEmailNotifier,
    SnsTopicNotifier,
    StatusPageWebhookNotifier,
    context_ids,
    safe_error,
)

if TYPE_CHECKING:
    from dr_automation.audit import AuditLog
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

INCIDENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
MAX_TITLE = 200
MAX_SUMMARY = 4000
MAX_LINKS = 10
AUDIENCES = frozenset({"internal", "external"})
INCIDENT_EVENT = "incident.notified"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_LINK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_CONTROL_IN_LINE = re.compile(r"[\x00-\x1f\x7f]")
_STATUS_PAGE_IMPACTS = ("minor", "major", "critical")


def new_incident_id(now: datetime | None = None) -> str:
    """`INC-20261104-1a2b3c`: sortable by day, unique enough to quote on a call."""
    now = now or datetime.now(UTC)
    return f"INC-{now:%Y%m%d}-{secrets.token_hex(3)}"


def stable_incident_id(*parts: str, now: datetime | None = None) -> str:
    """The same id for the same parts on the same day (e.g. one failed task try)."""
    now = now or datetime.now(UTC)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8]
    return f"INC-{now:%Y%m%d}-{digest}"


def _duration(minutes: int) -> str:
    if minutes == 0:
        return "immediately"
    hours, rest = divmod(minutes, 60)
    if hours == 0:
        return f"{rest} min"
    days, hours = divmod(hours, 24)
    parts = (
        ([f"{days} d"] if days else [])
        + ([f"{hours} h"] if hours else [])
        + ([f"{rest} min"] if rest else [])
    )
    return " ".join(parts)


# -- validation -------------------------------------------------------------------------------


def _require_text(field: str, value: Any, limit: int, *, one_line: bool) -> str:
    if not isinstance(value, str):
        raise IncidentInputError(field, f"must be a string (got {type(value).__name__})")
    text = value.strip()
    if not text:
        raise IncidentInputError(field, "must not be empty")
    if len(text) > limit:
        raise IncidentInputError(field, f"must be at most {limit} characters (got {len(text)})")
    if one_line and _CONTROL_IN_LINE.search(text):
        raise IncidentInputError(field, "must be one line (no newlines or control characters)")
    return text


def _require_links(links: Mapping[str, str] | None) -> dict[str, str]:
    if links is None:
        return {}
    if not isinstance(links, Mapping):
        raise IncidentInputError("links", "must be a mapping of name -> http(s) URL")
    if len(links) > MAX_LINKS:
        raise IncidentInputError("links", f"at most {MAX_LINKS} links")
    out: dict[str, str] = {}
    for name, url in links.items():
        if not isinstance(name, str) or not _LINK_NAME.match(name):
            raise IncidentInputError(
                f"links.{name}", "link names are 1-40 letters, digits, ' ', '_', '.', '-'"
            )
        parsed = urlsplit(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc or " " in url:
            raise IncidentInputError(f"links.{name}", f"must be an http(s) URL (got {url!r})")
        out[name] = url
    return out


def _require_address(recipient: Recipient, channel: str) -> str:
    field = f"notifications.contacts.{recipient.name}.{channel}"
    if channel not in CHANNEL_NOTIFIERS:
        raise IncidentInputError(
            f"stakeholders.{recipient.audience}.{recipient.name}.channels",
            f"unknown channel {channel!r} (known: {', '.join(sorted(CHANNEL_NOTIFIERS))})",
        )
    address = recipient.addresses.get(channel)
    if not isinstance(address, str) or not address.strip():
        raise IncidentInputError(field, f"no address for channel {channel!r}; refusing a partial plan")
    notifier = CHANNEL_NOTIFIERS[channel]
    if notifier is SesEmailNotifier and not _EMAIL.match(address):
        raise IncidentInputError(field, f"{address!r} is not an email address")
    if notifier is SnsTopicNotifier and not _TOPIC.match(address):
        raise IncidentInputError(field, f"{address!r} is not an SNS topic name")
    if _CONTROL_IN_LINE.search(address) or len(address) > 256:
        raise IncidentInputError(field, "must be one line of at most 256 characters")
    return address


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentMessage:
    """The wording for one audience: subject, full text (email, chat, status page), short text (pager)."""

    audience: str
    subject: str
    text: str
    short: str
    title: str


def _customer_safe(text: str) -> str:
    from dr_toolbox.redact import redact

    return re.sub(r"[ \t]{2,}", " ", _URL.sub("", redact(text))).strip()


def build_message(
    estate: Estate,
    level: IncidentLevel,
    *,
    audience: str,
    title: str,
    summary: str,
    incident_id: str,
    links: Mapping[str, str] | None = None,
    public_summary: str | None = None,
) -> IncidentMessage:
    """The message an audience reads. Internal: level, RTO/RPO, summary, links. External: customer-safe."""
    if audience not in AUDIENCES:
        raise IncidentInputError("audience", f"must be one of {sorted(AUDIENCES)} (got {audience!r})")
    tag = f"L{level.level} {level.name}"
    if audience == "internal":
        from dr_toolbox.redact import redact

        title, summary = redact(title), redact(summary)
        lines = [
            f"{level.label} incident {incident_id}: {title}",
            "",
            f"Targets for level {level.level}: RTO {level.rto_minutes} min (service back within "
            f"{_duration(level.rto_minutes)}), RPO {level.rpo_minutes} min (data loss of at most "
            f"{_duration(level.rpo_minutes) if level.rpo_minutes else 'none'}).",
            "",
            summary,
        ]
        if links:
            lines += ["", "Links:", *[f"- {name}: {url}" for name, url in links.items()]]
        lines += ["", f"Incident id: {incident_id}. Sent by {estate.name} DR automation."]
        short = (
            f"[DR {tag}] {incident_id}: {title}. RTO {level.rto_minutes} min, RPO {level.rpo_minutes} min."
        )
        if links:
            short += f" {next(iter(links.values()))}"
        return IncidentMessage(
            audience=audience,
            subject=f"[DR {tag}] {title} ({incident_id})",
            text="\n".join(lines),
            short=short,
            title=title,
        )
    safe_title = _customer_safe(title) or "Service disruption"
    safe_summary = _customer_safe(public_summary or summary) or "We are investigating a service disruption."
    lines = [
        f"{estate.name} service incident ({level.name}): {safe_title}",
        "",
        safe_summary,
        "",
        f"Our target is to restore full service within {_duration(level.rto_minutes)}. "
        "We will keep you updated until it is resolved.",
        "",
        f"Reference: {incident_id}",
    ]
    return IncidentMessage(
        audience=audience,
        subject=f"{estate.name} service incident: {safe_title} ({incident_id})",
        text="\n".join(lines),
        short=f"{estate.name} service incident {incident_id}: {safe_title}. "
        f"Target to restore service: within {_duration(level.rto_minutes)}.",
        title=safe_title,
    )


# -- the plan and its delivery ----------------------------------------------------------------


@dataclass
class _Group:
    """One message to one address on one channel, for every recipient that shares it."""

    channel: str
    target: str
    audience: str
    recipients: list[Recipient]


def _deadline(recipient: Recipient) -> float:
    minutes = recipient.notify_within_minutes
    return float("inf") if minutes is None else float(minutes)


def plan_deliveries(recipients: Sequence[Recipient]) -> list[_Group]:
    """Deadline order (immediately first), one group per (channel, address, audience)."""
    groups: dict[tuple[str, str, str], _Group] = {}
    for recipient in sorted(recipients, key=_deadline):
        for channel in recipient.channels:
            address = _require_address(recipient, channel)
            key = (channel, address, recipient.audience)
            if key not in groups:
                groups[key] = _Group(channel, address, recipient.audience, [])
            groups[key].recipients.append(recipient)
    return list(groups.values())


def _notifier(
    group: _Group,
    message: IncidentMessage,
    level: IncidentLevel,
    incident_id: str,
    common: dict[str, Any],
) -> AuditedNotifier:
    names = [r.name for r in group.recipients]
    kwargs = {**common, "recipient": names, "incident_id": incident_id, "level": level.level}
    cls = CHANNEL_NOTIFIERS[group.channel]
    if cls is SesEmailNotifier:
        return SesEmailNotifier(
            to=group.target, subject=message.subject, body=message.text, channel=group.channel, **kwargs
        )
    if cls is SnsTopicNotifier:
        return SnsTopicNotifier(
            topic=group.target,
            message=message.short,
            subject=message.subject,
            channel=group.channel,
            **kwargs,
        )
    if cls is ChatWebhookNotifier:
        return ChatWebhookNotifier(
            chat_channel=group.target,
            text=message.text,
            fields={"level_name": level.name, "audience": group.audience, "for": names},
            **kwargs,
        )
    impact = level.name if level.name in _STATUS_PAGE_IMPACTS else "critical"
    return StatusPageWebhookNotifier(
        page_id=group.target, title=message.title, body=message.text, impact=impact, **kwargs
    )


def notify_incident(
    level: int,
    title: str,
    summary: str,
    *,
    incident_id: str | None = None,
    estate: Estate | None = None,
    include_as_needed: bool = False,
    include_as_required: bool = False,
    links: Mapping[str, str] | None = None,
    public_summary: str | None = None,
    audiences: Collection[str] | None = None,
    context: Mapping[str, Any] | None = None,
    actor: str | None = None,
    audit: AuditLog | None = None,
    retries: int = 2,
    retry_delay_seconds: float = 1.0,
    stakeholders: Collection[str] | None = None,
) -> dict[str, Any]:
    """Notify the level's route (or the named ``stakeholders`` of the matrix, e.g. a drill report's); validate everything first, then deliver and audit each message.

    Returns ``{"incident_id", "level", "level_name", "deliveries": [per recipient and channel:
    recipient, audience, channel, target, deadline, status, attempts, error], "counts": {"sent",
    "failed", "total"}, "audit_errors"}``. Raises IncidentInputError (nothing sent) on bad input.
    """
    if estate is None:
        from dr_automation.estate import load_estate

        estate = load_estate()
    level_def = incident_level(estate, level)
    title = _require_text("title", title, MAX_TITLE, one_line=True)
    summary = _require_text("summary", summary, MAX_SUMMARY, one_line=False)
    if public_summary is not None:
        public_summary = _require_text("public_summary", public_summary, MAX_SUMMARY, one_line=False)
    if incident_id is None:
        incident_id = new_incident_id()
    elif not isinstance(incident_id, str) or not INCIDENT_ID_PATTERN.match(incident_id):
        raise IncidentInputError(
            "incident_id",
            f"must be 3-64 letters, digits, '.', '_' or '-', starting with a letter or digit (got {incident_id!r})",
        )
    links = _require_links(links)
    wanted = AUDIENCES if audiences is None else frozenset(audiences)
    if isinstance(audiences, str) or not wanted or not wanted <= AUDIENCES:
        raise IncidentInputError("audiences", f"must be a non-empty subset of {sorted(AUDIENCES)}")
    if stakeholders is not None:
        candidates = named(estate, list(stakeholders))
    else:
        candidates = route(
            estate, level, include_as_needed=include_as_needed, include_as_required=include_as_required
        )
    recipients = [r for r in candidates if r.audience in wanted]
    if not recipients:
        raise IncidentInputError(
            "level", f"the level {level} route has no {'/'.join(sorted(wanted))} recipient"
        )
    groups = plan_deliveries(recipients)  # validates every address before anything is sent
    messages = {
        audience: build_message(
            estate,
            level_def,
            audience=audience,
            title=title,
            summary=summary,
            incident_id=incident_id,
            links=links,
            public_summary=public_summary,
        )
        for audience in {g.audience for g in groups}
    }
    if audit is None:
        from dr_automation.audit import AuditLog

        audit = AuditLog.from_estate(estate)
    ids = context_ids(context)
    actor = actor or (f"airflow:{ids['dag_id']}.{ids['task_id']}" if ids["dag_id"] else "dr-automation")
    common = {
        "audit": audit,
        "retries": retries,
        "retry_delay_seconds": retry_delay_seconds,
        "actor": actor,
        "estate": estate,
    }
    # Build every notifier before sending: a bad retries/delay argument fails here, not half-way.
    try:
        notifiers = [(g, _notifier(g, messages[g.audience], level_def, incident_id, common)) for g in groups]
    except ValueError as exc:
        field, _, reason = str(exc).partition(": ")
        raise IncidentInputError(field, reason or str(exc)) from None

    # One provider hook (one boto3 client / HTTP session) per notifier kind, not one per message.
    hooks: dict[type, Any] = {}
    for _, notifier in notifiers:
        notifier.__dict__["hook"] = hooks.setdefault(type(notifier), notifier.hook)

    deliveries: list[dict[str, Any]] = []
    audit_errors: list[str] = []
    for group, notifier in notifiers:
        delivery: Delivery = notifier.deliver(context)
        audit_errors.extend(delivery.audit_errors)
        for recipient in group.recipients:
            deliveries.append(
                {
                    "recipient": recipient.name,
                    "audience": recipient.audience,
                    "channel": group.channel,
                    "target": group.target,
                    "deadline": recipient.deadline_label,
                    "status": delivery.status,
                    "attempts": delivery.attempts,
                    "error": delivery.error,
                    "message_id": delivery.message_id,
                }
            )
    counts = {
        "sent": sum(d["status"] == "sent" for d in deliveries),
        "failed": sum(d["status"] == "failed" for d in deliveries),
        "total": len(deliveries),
    }
    outcome = "sent" if not counts["failed"] else ("failed" if not counts["sent"] else "partial")
    try:
        audit.record(
            INCIDENT_EVENT,
            status=outcome,
            incident_id=incident_id,
            level=level_def.level,
            actor=actor,
            detail={
                "title": title,
                "counts": counts,
                "recipients": sorted({d["recipient"] for d in deliveries}),
            },
            **ids,
        )
    except Exception as exc:
        audit_errors.append(safe_error(exc))
        log.error("could not audit incident %s: %s", incident_id, audit_errors[-1])
    log_fn = log.info if outcome == "sent" else log.warning
    log_fn(
        "incident %s (level %s): %d of %d deliveries sent, %d failed",
        incident_id,
        level_def.level,
        counts["sent"],
        counts["total"],
        counts["failed"],
    )
    return {
        "incident_id": incident_id,
        "level": level_def.level,
        "level_name": level_def.name,
        "title": title,
        "status": outcome,
        "deliveries": deliveries,
        "counts": counts,
        "audit_errors": audit_errors,
    }


class IncidentNotifier(BaseNotifier):
    """An Airflow notifier that runs ``notify_incident`` (e.g. as a DAG's on_failure_callback).

    ``title``, ``summary``, ``incident_id``, ``links`` and ``level`` are templated, so
    ``IncidentNotifier(level="{{ params.level }}", ...)`` works; a templated level must render to
    an integer. Delivery failures are audited and logged, not raised (set raise_on_failure=True to
    fail the caller when any delivery failed).
    """

    template_fields: Sequence[str] = ("level", "title", "summary", "incident_id", "links")

    def __init__(
        self,
        level: int | str,
        title: str,
        summary: str,
        *,
        incident_id: str | None = None,
        estate: Estate | None = None,
        include_as_needed: bool = False,
        include_as_required: bool = False,
        links: Mapping[str, str] | None = None,
        public_summary: str | None = None,
        audiences: Collection[str] | None = None,
        raise_on_failure: bool = False,
        retries: int = 2,
        retry_delay_seconds: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.level = level
        self.title = title
        self.summary = summary
        self.incident_id = incident_id
        self.estate = estate
        self.include_as_needed = include_as_needed
        self.include_as_required = include_as_required
        self.links = links
        self.public_summary = public_summary
        self.audiences = audiences
        self.raise_on_failure = raise_on_failure
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.result: dict[str, Any] | None = None

    def _level(self) -> int:
        level = self.level
        if isinstance(level, str) and level.strip().isdigit():
            return int(level.strip())
        return level  # type: ignore[return-value]  # route() names the field if it is not an int

    def notify(self, context: Mapping[str, Any]) -> None:
        self.result = notify_incident(
            self._level(),
            self.title,
            self.summary,
            incident_id=self.incident_id or None,
            estate=self.estate,
            include_as_needed=self.include_as_needed,
            include_as_required=self.include_as_required,
            links=self.links,
            public_summary=self.public_summary,
            audiences=self.audiences,
            context=context,
            retries=self.retries,
            retry_delay_seconds=self.retry_delay_seconds,
        )
        if self.raise_on_failure and self.result["counts"]["failed"]:
            from dr_automation.notifications.channels import NotificationDeliveryError

            raise NotificationDeliveryError(
                f"incident {self.result['incident_id']}: {self.result['counts']['failed']} of "
                f"{self.result['counts']['total']} deliveries failed"
            )
