"""The restore's request checks and plan: pure functions of the estate, a manifest and a
verification record. Every refusal names the field and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dr_automation.restore.plan import (
    FILES,
    K8S_APPLY,
    PG_IN_PLACE,
    PG_NEW,
    RDS_PITR,
    RDS_SNAPSHOT,
    SECRETS,
    RestoreInputError,
    build_plan,
    check_request,
    describe,
    new_database_name,
    new_instance_id,
    restore_id,
    verification_passed,
)
from tests.unit.conftest import Doc, load_doc

BACKUP = "scheduled__2026-11-04T10-05-00-00-00"
RUN_ID = "manual__2026-11-25T03:00:00+00:00"
BASE = f"s3://leanvibe-backups-prod/backups/tier1_realtime/{BACKUP}/"


def params(**overrides: Any) -> dict[str, Any]:
    return {
        "backup_id": BACKUP,
        "tier": None,
        "components": ["database"],
        "target": "in_place",
        "stop_services": True,
        "restart_services": True,
        "rollback_on_failure": True,
        "dry_run": False,
        "override_unverified_reason": None,
    } | overrides


def entry(name: str, kind: str, *artifacts: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "status": "succeeded",
        "locations": [f"{BASE}{name}/"],
        "artifacts": [
            {"name": a, "sha256": f"{i:064x}", "size_bytes": 10} for i, a in enumerate(artifacts, 1)
        ],
    }


def found(
    *entries: dict[str, Any], status: str = "complete", result: str | None = "passed"
) -> dict[str, Any]:
    manifest = {"backup_id": BACKUP, "tier": "tier1_realtime", "status": status, "components": list(entries)}
    if status != "complete":
        manifest["summary"] = {"failed": {"critical-config": "GetSecretValue 500"}}
    return {
        "tier": "tier1_realtime",
        "manifest": manifest,
        "manifest_url": f"{BASE}manifest.json",
        "region": "us-east-1",
        "verification": None
        if result is None
        else {"result": result, "reason": "checksum differs" if result == "failed" else None},
        "verification_url": f"{BASE}verification.json",
        "archived": [],
    }


DUMP = entry(
    "primary-database", "postgres_database", "primary-database.pgdump", "primary-database.pgdump.stats.json"
)
WAL = entry("transaction-logs", "postgres_wal", "pitr-evidence.json")
SESSIONS = entry("user-sessions", "redis_sessions", "sessions.jsonl")
SECRET = entry("critical-config", "secrets", "secrets.sealed.json")


@pytest.fixture
def tiered(doc: Doc, tmp_path: Path):
    """The estate with tier 1 also holding Kubernetes objects, user files and an RDS snapshot."""
    doc["tiers"]["tier1_realtime"]["systems"] += [
        {"name": "app-config", "type": "kubernetes_objects", "kinds": ["ConfigMap"]},
        {"name": "user-files", "type": "s3_bucket", "bucket": "leanvibe-user-files-prod"},
        {"name": "full-snapshot", "type": "rds_snapshot", "database": "primary"},
    ]
    return load_doc(tmp_path, doc)


def plan_of(
    estate, request: dict[str, Any], hit: dict[str, Any], facts: dict[str, Any] | None = None
) -> dict[str, Any]:
    return build_plan(estate, check_request(estate, request, request), RUN_ID, hit, facts)


def test_in_place_database_restore_plans_a_safety_dump_and_stops_the_namespaces(estate) -> None:
    plan = plan_of(estate, params(), found(DUMP, WAL, SESSIONS, SECRET))
    assert [(a["system"], a["action"]) for a in plan["actions"]] == [("primary-database", PG_IN_PLACE)]
    action = plan["actions"][0]
    assert action["from"] == f"{BASE}primary-database/primary-database.pgdump"
    assert action["stats"].endswith(".pgdump.stats.json") and action["sha256"] == f"{1:064x}"
    assert plan["stop"]["namespaces"] == list(estate.kubernetes["namespaces"])
    assert plan["safety"]["database"] and not plan["safety"]["files"]
    assert plan["safety"]["location"] == f"s3://leanvibe-backups-prod/restores/{restore_id(RUN_ID)}/safety/"
    assert plan["record"] == f"{BASE}restores/{restore_id(RUN_ID)}.json"
    skipped = {s["system"]: s["reason"] for s in plan["skipped"]}
    assert "new instance" in skipped["transaction-logs"] and "sessions" in skipped["user-sessions"]
    assert plan["lock"] == "in-place"
    assert any("stop: deployments" in line for line in describe(plan))


def test_new_instance_restores_dumps_snapshots_and_points_in_time_beside_the_live_ones(tiered) -> None:
    snapshot = entry("full-snapshot", "rds_snapshot", "snapshots.json")
    facts = {
        "snapshots": {"full-snapshot": {"snapshots": [{"region": "us-east-1", "identifier": "snap-1"}]}},
        "pitr": {"transaction-logs": {"latest_restorable_time": "2026-11-04T10:04:00+00:00"}},
    }
    plan = plan_of(tiered, params(target="new_instance"), found(DUMP, WAL, snapshot), facts)
    by_action = {a["action"]: a for a in plan["actions"]}
    assert set(by_action) == {PG_NEW, RDS_PITR, RDS_SNAPSHOT}
    assert by_action[PG_NEW]["into"] == new_database_name("leanvibe", restore_id(RUN_ID))
    assert by_action[RDS_SNAPSHOT]["snapshot"] == "snap-1"
    assert by_action[RDS_PITR]["restore_time"] == "2026-11-04T10:04:00+00:00"
    assert by_action[RDS_PITR]["instance"] != by_action[RDS_SNAPSHOT]["instance"]
    assert plan["stop"]["namespaces"] == [] and not plan["safety"]["database"]
    assert plan["lock"].startswith("new-instance-tier1_realtime-")


def test_every_component_maps_to_its_system_types(tiered) -> None:
    k8s = entry("app-config", "kubernetes_objects", "objects.json.gz")
    files = entry("user-files", "s3_bucket", "objects/a.txt", "objects/dir/b.png")
    plan = plan_of(
        tiered,
        params(components=["configuration", "files", "database"]),
        found(DUMP, SECRET, k8s, files),
        {"versioned": {"leanvibe-user-files-prod": True}},
    )
    assert {a["system"]: a["action"] for a in plan["actions"]} == {
        "primary-database": PG_IN_PLACE,
        "critical-config": SECRETS,
        "app-config": K8S_APPLY,
        "user-files": FILES,
    }
    files_action = next(a for a in plan["actions"] if a["action"] == FILES)
    assert files_action["sha256"] == {"a.txt": f"{1:064x}", "dir/b.png": f"{2:064x}"}
    assert files_action["objects"] == ["a.txt", "dir/b.png"] and files_action["from"].endswith(
        "/user-files/objects/"
    )
    assert plan["request"]["components"] == ["database", "files", "configuration"]  # canonical order
    assert plan["safety"] | {} == plan["safety"] and plan["safety"]["kubernetes"] and plan["safety"]["files"]


@pytest.mark.parametrize(
    ("request_overrides", "hit_kwargs", "field", "reason"),
    [
        ({"components": ["files"]}, {}, "components", "files: backup"),
        (
            {"components": ["configuration"], "target": "new_instance"},
            {},
            "components",
            "new_instance restores the database only",
        ),
        ({"components": []}, {}, "components", "non-empty subset"),
        ({"components": ["database", "database"]}, {}, "components", "non-empty subset"),
        ({"components": ["logs"]}, {}, "components", "non-empty subset"),
        ({"target": "elsewhere"}, {}, "target", "must be one of"),
        ({"backup_id": "../etc"}, {}, "backup_id", "is not a backup id"),
        ({"tier": "tier9"}, {}, "tier", "not a tier of the estate"),
        ({}, {"status": "partial"}, "backup_id", "not complete (failed: critical-config)"),
        (
            {},
            {"result": "failed"},
            "backup_id",
            "has not passed verification (result is 'failed': checksum differs",
        ),
        ({}, {"result": None}, "backup_id", "has not passed verification (no verification record"),
        (
            {"override_unverified_reason": "test"},
            {"result": None},
            "override_unverified_reason",
            "must say why",
        ),
    ],
)
def test_bad_requests_and_backups_are_refused_naming_the_field(
    estate, request_overrides: dict[str, Any], hit_kwargs: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(RestoreInputError) as err:
        plan_of(estate, params(**request_overrides), found(DUMP, WAL, **hit_kwargs))
    assert err.value.field == field and reason in str(err.value), str(err.value)


def test_an_rds_only_database_cannot_be_restored_in_place(estate) -> None:
    with pytest.raises(
        RestoreInputError, match=r"components: database: .*RDS restores create a new instance"
    ):
        plan_of(estate, params(), found(WAL))


def test_files_need_a_versioned_bucket_for_the_safety_snapshot(tiered) -> None:
    files = entry("user-files", "s3_bucket", "objects/a.txt")
    with pytest.raises(RestoreInputError, match="leanvibe-user-files-prod is not versioned"):
        plan_of(
            tiered,
            params(components=["files"]),
            found(files),
            {"versioned": {"leanvibe-user-files-prod": False}},
        )


def test_an_override_reason_restores_an_unverified_backup_and_is_recorded(estate) -> None:
    reason = "INC-42: the only backup before the corruption"
    plan = plan_of(estate, params(override_unverified_reason=reason), found(DUMP, result="failed"))
    assert plan["verification"] == {
        "passed": False,
        "detail": "result is 'failed': checksum differs",
        "record": f"{BASE}verification.json",
        "override": reason,
    }


def test_unknown_conf_keys_are_refused(estate) -> None:
    with pytest.raises(RestoreInputError) as err:
        check_request(estate, {"backup_id": BACKUP, "force": True}, params())
    assert err.value.field == "force"


@pytest.mark.parametrize(
    ("record", "passed"),
    [
        ({"result": "passed"}, True),
        ({"result": "failed", "reason": "x"}, False),
        ({"passed": True}, True),
        ({"status": "verified"}, True),
        ({}, False),
        (None, False),
    ],
)
def test_verification_record_outcomes(record: dict[str, Any] | None, passed: bool) -> None:
    assert verification_passed(record)[0] is passed


def test_names_derived_from_the_run_are_stable_and_valid() -> None:
    import re

    rid = restore_id(RUN_ID)
    assert rid == restore_id(RUN_ID) and re.fullmatch(r"[A-Za-z0-9._-]+", rid)
    name = new_database_name("leanvibe", rid)
    assert re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name)
    instance = new_instance_id("leanvibe-production-primary", "full-snapshot", rid)
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,62}", instance) and "--" not in instance
