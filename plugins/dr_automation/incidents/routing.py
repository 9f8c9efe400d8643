"""Who is told about an incident of a given level, over which channels, by when, at which address.

The plan comes from the estate's stakeholder matrix (`stakeholders`) and address book
(`notifications.contacts`). It is all-or-nothing: a recipient whose channel has no address raises
instead of being skipped, because a silently shorter notification plan is how a CEO hears about an
outage from a customer.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from dr_automation.incidents.levels import IncidentInputError, incident_level, incident_levels, require_int

if TYPE_CHECKING:
    from dr_automation.estate import Estate

Audience = Literal["internal", "external"]
AS_NEEDED = "as_needed"
AS_REQUIRED = "as_required"
_NAME_FIELD: Mapping[Audience, str] = {"internal": "role", "external": "group"}


@dataclass(frozen=True)
class Recipient:
    """One line of the notification plan. `addresses` maps each channel to its contact address."""

    audience: Audience
    name: str
    channels: tuple[str, ...]
    notify_within_minutes: int | None
    when: str | None
    addresses: Mapping[str, str] = field(hash=False)
    from_level: int | None = None

    @property
    def deadline_label(self) -> str:
        """`immediately`, `within 15 min`, `within 1 h`, `within 1 h 30 min`, `as needed`, `as required`."""
        minutes = self.notify_within_minutes
        if minutes is None:
            return (self.when or AS_NEEDED).replace("_", " ")
        if minutes == 0:
            return "immediately"
        hours, rest = divmod(minutes, 60)
        if hours == 0:
            return f"within {rest} min"
        return f"within {hours} h" + (f" {rest} min" if rest else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "audience": self.audience,
            "name": self.name,
            "channels": list(self.channels),
            "notify_within_minutes": self.notify_within_minutes,
            "when": self.when,
            "deadline": self.deadline_label,
            "addresses": dict(self.addresses),
            "from_level": self.from_level,
        }


def _recipient(estate: Estate, audience: Audience, item: Mapping[str, Any]) -> Recipient:
    name = str(item[_NAME_FIELD[audience]])
    channels = tuple(str(channel) for channel in item["channels"])
    contacts = estate.section("notifications")["contacts"]
    entry = contacts.get(name) or {}
    addresses: dict[str, str] = {}
    for channel in channels:
        address = entry.get(channel)
        if not address:
            raise IncidentInputError(
                f"notifications.contacts.{name}.{channel}",
                f"no address for channel {channel!r} that the stakeholder matrix uses for {name!r}; "
                "refusing to return a partial notification plan",
            )
        addresses[channel] = str(address)
    minutes = item.get("notify_within_minutes")
    from_level = item.get("from_level")
    return Recipient(
        audience=audience,
        name=name,
        channels=channels,
        notify_within_minutes=None if minutes is None else int(minutes),
        when=item.get("when"),
        addresses=MappingProxyType(addresses),
        from_level=None if from_level is None else int(from_level),
    )


def _urgency(recipient: Recipient) -> float:
    """Timed recipients by deadline; as-needed/as-required groups last (they have no deadline)."""
    minutes = recipient.notify_within_minutes
    return float("inf") if minutes is None else float(minutes)


def route(
    estate: Estate,
    level: int,
    *,
    include_as_needed: bool = False,
    include_as_required: bool = False,
) -> list[Recipient]:
    """The notification plan for an incident of `level`.

    Order: internal recipients first, then external; within each audience by notify_within_minutes
    (stable, so ties keep the matrix order), with `when` groups after the timed ones. A level-driven
    stakeholder is included when its from_level <= level. `when: as_needed` groups (partners,
    vendors) only when include_as_needed; `when: as_required` groups (regulators) only when
    include_as_required, e.g. for a security incident involving customer data.
    """
    number = incident_level(estate, level).level
    for flag_name, flag in (
        ("include_as_needed", include_as_needed),
        ("include_as_required", include_as_required),
    ):
        if not isinstance(flag, bool):
            raise IncidentInputError(flag_name, f"must be true or false (got {flag!r})")
    wanted_when = {AS_NEEDED: include_as_needed, AS_REQUIRED: include_as_required}
    stakeholders = estate.section("stakeholders")
    plan: list[Recipient] = []
    for audience in ("internal", "external"):
        selected: list[Recipient] = []
        for item in stakeholders[audience]:
            when = item.get("when")
            if when is not None:
                if not wanted_when.get(when, False):
                    continue
            elif int(item["from_level"]) > number:
                continue
            selected.append(_recipient(estate, audience, item))
        plan.extend(sorted(selected, key=_urgency))
    return plan


def named(estate: Estate, names: Collection[str]) -> list[Recipient]:
    """The matrix's stakeholders with these role/group names, whatever their level (a drill report
    goes to whom the drills section names, not to an incident level's route)."""
    stakeholders = estate.section("stakeholders")
    found = {
        str(item[_NAME_FIELD[audience]]): _recipient(estate, audience, item)
        for audience in ("internal", "external")
        for item in stakeholders[audience]
    }
    unknown = [n for n in names if n not in found]
    if unknown:
        raise IncidentInputError(
            "stakeholders", f"{unknown[0]!r} is not in the stakeholder matrix (known: {', '.join(found)})"
        )
    return [found[n] for n in names]


def routing_table(
    estate: Estate, *, include_as_needed: bool = False, include_as_required: bool = False
) -> dict[int, list[Recipient]]:
    """The plan of every level, lowest first, for reports and the UI."""
    return {
        lv.level: route(
            estate, lv.level, include_as_needed=include_as_needed, include_as_required=include_as_required
        )
        for lv in incident_levels(estate)
    }


def failure_level(estate: Estate, dag_id: str) -> int:
    """The incident level whose route a failed task of `dag_id` pages (notifications.failure_levels)."""
    if not isinstance(dag_id, str) or not dag_id:
        raise IncidentInputError("dag_id", f"must be a non-empty string (got {dag_id!r})")
    levels = estate.section("notifications")["failure_levels"]
    return require_int("level", levels.get("dags", {}).get(dag_id, levels["default"]))
