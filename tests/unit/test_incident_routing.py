"""Stakeholder routing: the seed's communication matrix, level by level, read from the estate config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dr_automation.estate import Estate
from dr_automation.estate.model import build_estate
from dr_automation.incidents import (
    IncidentInputError,
    Recipient,
    failure_level,
    route,
    routing_table,
)
from tests.unit.conftest import Doc, load_doc

# The seed's matrix: (name, channels, deadline, from level). None = only on request (when: ...).
CEO = ("CEO", ("phone", "email"), "immediately")
CTO = ("CTO", ("phone", "chat"), "immediately")
VP_ENGINEERING = ("VP Engineering", ("chat", "email"), "within 15 min")
PLATFORM_LEAD = ("Platform Team Lead", ("chat",), "within 5 min")
CUSTOMER_SUCCESS = ("Customer Success", ("chat", "email"), "within 30 min")
MARKETING = ("Marketing", ("email",), "within 1 h")
ENTERPRISE = ("Enterprise Customers", ("email", "phone"), "within 30 min")
TEAM = ("Team Customers", ("email", "status_page"), "within 1 h")
DEVELOPER = ("Developer Customers", ("status_page",), "within 2 h")
PARTNERS = ("Partners/Vendors", ("email",), "as needed")
REGULATORS = ("Regulatory Bodies", ("email", "formal_notice"), "as required")

EXPECTED_BY_LEVEL = {
    1: [PLATFORM_LEAD],
    2: [CTO, PLATFORM_LEAD, VP_ENGINEERING, CUSTOMER_SUCCESS, ENTERPRISE],
    3: [CEO, CTO, PLATFORM_LEAD, VP_ENGINEERING, CUSTOMER_SUCCESS, MARKETING, ENTERPRISE, TEAM, DEVELOPER],
    4: [CEO, CTO, PLATFORM_LEAD, VP_ENGINEERING, CUSTOMER_SUCCESS, MARKETING, ENTERPRISE, TEAM, DEVELOPER],
}
INTERNAL = {"CEO", "CTO", "VP Engineering", "Platform Team Lead", "Customer Success", "Marketing"}


def lines(plan: list[Recipient]) -> list[tuple[str, tuple[str, ...], str]]:
    return [(r.name, r.channels, r.deadline_label) for r in plan]


def stakeholder(doc: Doc, name: str) -> Doc:
    items = doc["stakeholders"]["internal"] + doc["stakeholders"]["external"]
    return next(item for item in items if item.get("role", item.get("group")) == name)


# -- the seed matrix, every level --------------------------------------------------------------


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_route_matches_seed_matrix(estate: Estate, level: int) -> None:
    plan = route(estate, level)
    assert set(lines(plan)) == set(EXPECTED_BY_LEVEL[level])
    assert len(plan) == len(EXPECTED_BY_LEVEL[level])  # no duplicates either
    for recipient in plan:
        assert recipient.audience == ("internal" if recipient.name in INTERNAL else "external")
        assert recipient.when is None
        assert recipient.from_level is not None and recipient.from_level <= level


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_route_order_internal_first_then_by_deadline(estate: Estate, level: int) -> None:
    """Internal before external; within each, by deadline, ties in matrix order (CEO before CTO)."""
    assert lines(route(estate, level)) == EXPECTED_BY_LEVEL[level]


def test_route_addresses_come_from_contacts(estate: Estate) -> None:
    by_name = {r.name: r for r in route(estate, 4, include_as_needed=True, include_as_required=True)}
    assert dict(by_name["CEO"].addresses) == {"phone": "dr-exec-pager", "email": "ceo@leanvibe.ai"}
    assert dict(by_name["Team Customers"].addresses) == {
        "email": "team-notices@leanvibe.ai",
        "status_page": "leanvibe-status",
    }
    assert dict(by_name["Regulatory Bodies"].addresses) == {
        "email": "compliance@leanvibe.ai",
        "formal_notice": "regulator-notices@leanvibe.ai",
    }
    for recipient in by_name.values():
        assert set(recipient.addresses) == set(recipient.channels)
    with pytest.raises(TypeError):
        by_name["CEO"].addresses["phone"] = "x"  # type: ignore[index]


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_as_needed_and_as_required_groups_only_on_request(estate: Estate, level: int) -> None:
    base = lines(route(estate, level))
    assert lines(route(estate, level, include_as_needed=True)) == [*base, PARTNERS]
    assert lines(route(estate, level, include_as_required=True)) == [*base, REGULATORS]
    both = route(estate, level, include_as_needed=True, include_as_required=True)
    assert lines(both) == [*base, PARTNERS, REGULATORS]
    assert [(r.when, r.notify_within_minutes, r.from_level) for r in both[-2:]] == [
        ("as_needed", None, None),
        ("as_required", None, None),
    ]


def test_internal_as_needed_stays_with_internal(tmp_path: Path, doc: Doc) -> None:
    """A `when` group sorts after the timed recipients of its own audience, not after everyone."""
    doc["stakeholders"]["internal"].append({"role": "Legal", "channels": ["email"], "when": "as_required"})
    doc["notifications"]["contacts"]["Legal"] = {"email": "legal@leanvibe.ai"}
    estate = load_doc(tmp_path, doc)
    names = [r.name for r in route(estate, 2, include_as_required=True)]
    assert names == [
        "CTO",
        "Platform Team Lead",
        "VP Engineering",
        "Customer Success",
        "Legal",
        "Enterprise Customers",
        "Regulatory Bodies",
    ]


def test_routing_table_has_every_level(estate: Estate) -> None:
    table = routing_table(estate)
    assert list(table) == [1, 2, 3, 4]
    for level, plan in table.items():
        assert plan == route(estate, level)
    with_all = routing_table(estate, include_as_needed=True, include_as_required=True)
    assert [r.name for r in with_all[1]] == ["Platform Team Lead", "Partners/Vendors", "Regulatory Bodies"]


@pytest.mark.parametrize(
    ("minutes", "when", "label"),
    [
        (0, None, "immediately"),
        (1, None, "within 1 min"),
        (5, None, "within 5 min"),
        (15, None, "within 15 min"),
        (59, None, "within 59 min"),
        (60, None, "within 1 h"),
        (90, None, "within 1 h 30 min"),
        (120, None, "within 2 h"),
        (None, "as_needed", "as needed"),
        (None, "as_required", "as required"),
    ],
)
def test_deadline_label(minutes: int | None, when: str | None, label: str) -> None:
    recipient = Recipient("internal", "X", ("chat",), minutes, when, {"chat": "#x"})
    assert recipient.deadline_label == label
    assert recipient.as_dict()["deadline"] == label


def test_recipient_is_hashable_and_serialisable(estate: Estate) -> None:
    plan = route(estate, 3)
    assert len(set(plan)) == len(plan)
    assert plan[0].as_dict() == {
        "audience": "internal",
        "name": "CEO",
        "channels": ["phone", "email"],
        "notify_within_minutes": 0,
        "when": None,
        "deadline": "immediately",
        "addresses": {"phone": "dr-exec-pager", "email": "ceo@leanvibe.ai"},
        "from_level": 3,
    }


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 5, -1, "2", 2.0, True, None])
def test_route_rejects_unknown_level(estate: Estate, level: Any) -> None:
    with pytest.raises(IncidentInputError) as info:
        route(estate, level)
    assert info.value.field == "level"


def test_route_rejects_non_bool_flags(estate: Estate) -> None:
    with pytest.raises(IncidentInputError) as info:
        route(estate, 2, include_as_needed="yes")  # type: ignore[arg-type]
    assert info.value.field == "include_as_needed"


def _unvalidated(doc: Doc) -> Estate:
    """The validator refuses a missing address; build the Estate directly to prove route refuses too."""
    return build_estate("unvalidated.yaml", doc)


def test_missing_address_never_returns_partial_plan(doc: Doc) -> None:
    del doc["notifications"]["contacts"]["CEO"]["phone"]
    estate = _unvalidated(doc)
    assert "CEO" not in [r.name for r in route(estate, 2)]  # CEO is not routed below level 3
    for level in (3, 4):
        with pytest.raises(IncidentInputError) as info:
            route(estate, level)
        assert info.value.field == "notifications.contacts.CEO.phone"
        assert "no address for channel 'phone'" in info.value.reason
    with pytest.raises(IncidentInputError):
        routing_table(estate)


def test_missing_contact_entry_for_on_request_group(doc: Doc) -> None:
    del doc["notifications"]["contacts"]["Regulatory Bodies"]
    estate = _unvalidated(doc)
    assert len(route(estate, 4)) == 9
    with pytest.raises(IncidentInputError) as info:
        route(estate, 1, include_as_required=True)
    assert info.value.field == "notifications.contacts.Regulatory Bodies.email"


# -- driven by the config ----------------------------------------------------------------------


def test_route_reads_matrix_from_config(tmp_path: Path, doc: Doc) -> None:
    stakeholder(doc, "Marketing")["from_level"] = 1
    stakeholder(doc, "CTO")["notify_within_minutes"] = 90
    stakeholder(doc, "Developer Customers")["from_level"] = 2
    stakeholder(doc, "Platform Team Lead")["channels"] = ["chat", "phone"]
    doc["notifications"]["contacts"]["Platform Team Lead"]["phone"] = "platform-pager"
    estate = load_doc(tmp_path, doc)
    assert lines(route(estate, 1)) == [
        ("Platform Team Lead", ("chat", "phone"), "within 5 min"),
        MARKETING,
    ]
    assert lines(route(estate, 2)) == [
        ("Platform Team Lead", ("chat", "phone"), "within 5 min"),
        VP_ENGINEERING,
        CUSTOMER_SUCCESS,
        MARKETING,
        ("CTO", ("phone", "chat"), "within 1 h 30 min"),
        ENTERPRISE,
        DEVELOPER,
    ]
    assert route(estate, 1)[0].addresses["phone"] == "platform-pager"


def test_route_reads_addresses_from_config(tmp_path: Path, doc: Doc) -> None:
    doc["notifications"]["contacts"]["Platform Team Lead"]["chat"] = "#sre-pager"
    estate = load_doc(tmp_path, doc)
    assert route(estate, 1)[0].addresses == {"chat": "#sre-pager"}


# -- failure levels ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dag_id", "level"),
    [
        ("regional_failover", 3),
        ("regional_failback", 3),
        ("restore_from_backup", 3),
        ("dr_readiness_check", 1),
        ("backup_tier1_realtime", 2),  # unlisted: the default
    ],
)
def test_failure_level(estate: Estate, dag_id: str, level: int) -> None:
    assert failure_level(estate, dag_id) == level


def test_failure_level_reads_config(tmp_path: Path, doc: Doc) -> None:
    doc["notifications"]["failure_levels"] = {"default": 1, "dags": {"backup_tier1_realtime": 4}}
    estate = load_doc(tmp_path, doc)
    assert failure_level(estate, "backup_tier1_realtime") == 4
    assert failure_level(estate, "regional_failover") == 1


@pytest.mark.parametrize("dag_id", ["", None, 3])
def test_failure_level_rejects_bad_dag_id(estate: Estate, dag_id: Any) -> None:
    with pytest.raises(IncidentInputError) as info:
        failure_level(estate, dag_id)
    assert info.value.field == "dag_id"


def test_a_failed_drill_tells_the_platform_team_without_paging_or_customer_success(estate: Estate) -> None:
    from dr_automation.iam import FAMILY_DAGS

    assert len(FAMILY_DAGS["drills"]) == 6
    for dag_id in FAMILY_DAGS["drills"]:
        plan = route(estate, failure_level(estate, dag_id))
        assert [r.name for r in plan] == ["Platform Team Lead"], (dag_id, plan)
        assert all("phone" not in r.channels for r in plan)
    assert failure_level(estate, "regional_failover") == 3  # a real outage still pages
