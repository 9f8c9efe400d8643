"""Where each tier's backups go, the ids they are stored under, and the estate rules for tiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dr_automation.backup.plan import (
    ARCHIVE_CLASSES,
    aws_actions,
    backup_id,
    rds_identifier,
    tier_plan,
)
from dr_automation.estate import Estate, EstateConfigError
from dr_sandbox.backup_rig import scale_tier
from tests.unit.conftest import load_doc


def test_each_tier_has_its_work_location_and_final_copies(estate: Estate) -> None:
    primary, dr = estate.primary_region, estate.dr_region
    t1, t2, t3, t4 = (tier_plan(estate, k) for k in estate.tiers)
    # tier 1: written once, in the primary region, STANDARD
    assert (t1.staged, t1.copies, t1.home.bucket, t1.home.storage_class) == (
        False,
        (),
        primary.backup_bucket,
        "STANDARD",
    )
    # tier 2: the primary copy in its class, one more in the DR region with the DR region's key
    assert [(c.bucket, c.storage_class, c.kms_key_alias) for c in t2.locations] == [
        (primary.backup_bucket, "STANDARD_IA", primary.kms_key_alias),
        (dr.backup_bucket, "STANDARD_IA", dr.kms_key_alias),
    ]
    # tier 3: archival, so written STANDARD under staging/ and copied as GLACIER to both regions
    assert t3.staged and t3.work.storage_class == "STANDARD"
    assert (
        t3.work_prefix("b1") == "staging/tier3_daily/b1/"
        and t3.final_prefix("b1") == "backups/tier3_daily/b1/"
    )
    assert [(c.region, c.storage_class) for c in t3.locations] == [
        (primary.name, "GLACIER"),
        (dr.name, "GLACIER"),
    ]
    # tier 4: the Object Lock archive buckets of two regions, COMPLIANCE for the configured years
    archive = estate.raw["archive"]
    assert [(c.region, c.bucket, c.object_lock) for c in t4.locations] == [
        (region, bucket, True) for region, bucket in archive["buckets"].items()
    ]
    assert (t4.lock_mode, t4.lock_years) == ("COMPLIANCE", 7) and t4.storage_class == "DEEP_ARCHIVE"
    assert {t.dag_id for t in (t1, t2, t3, t4)} == {
        "backup_tier1_realtime",
        "backup_tier2_frequent",
        "backup_tier3_daily",
        "backup_tier4_archival",
    }


def test_staging_is_used_exactly_for_archival_classes_and_object_lock(estate: Estate) -> None:
    for key, tier in estate.tiers.items():
        plan = tier_plan(estate, key)
        assert plan.staged == (tier.storage_class in ARCHIVE_CLASSES or tier.object_lock)
        assert plan.result_key("b", "x") == f"{plan.work_prefix('b')}_results/x.json"


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        ("scheduled__2026-11-04T10:05:00+00:00", "scheduled__2026-11-04T10-05-00-00-00"),
        ("manual__2026-11-04T10:05:00.123+00:00", "manual__2026-11-04T10-05-00.123-00-00"),
        ("e2e tier1/run #1", "e2e-tier1-run-1"),
    ],
)
def test_backup_ids_are_s3_safe_and_stable(run_id: str, expected: str) -> None:
    assert backup_id(run_id) == expected == backup_id(run_id)


def test_backup_id_refuses_a_run_id_with_nothing_usable() -> None:
    with pytest.raises(ValueError, match="run_id"):
        backup_id("::++")


def test_rds_identifiers_follow_the_rds_rules() -> None:
    assert rds_identifier("dr-tier3_daily-full-snapshot-scheduled__2026-11-04T10-05") == (
        "dr-tier3-daily-full-snapshot-scheduled-2026-11-04t10-05"
    )
    assert rds_identifier("9starts-with-digit") == "dr-9starts-with-digit"
    assert len(rds_identifier("a" * 400)) == 255


def test_unknown_tier_is_refused_naming_the_known_ones(estate: Estate) -> None:
    with pytest.raises(KeyError, match=r"tier9.*tier1_realtime"):
        tier_plan(estate, "tier9")


def test_aws_actions_cover_what_each_tier_calls(estate: Estate) -> None:
    actions = {key: set(aws_actions(tier_plan(estate, key))) for key in estate.tiers}
    assert ("secretsmanager", "GetSecretValue") in actions["tier1_realtime"]
    assert ("s3", "CopyObject") not in actions["tier1_realtime"]  # no copies, no S3 systems
    assert {("s3", "CopyObject"), ("monitoring", "GetMetricData")} <= actions["tier2_frequent"]
    assert {("rds", "CreateDBSnapshot"), ("rds", "CopyDBSnapshot")} <= actions["tier3_daily"]
    assert ("s3", "GetObjectLockConfiguration") in actions["tier4_archival"]
    assert ("ec2", "CopyImage") not in actions["tier4_archival"]  # only for an image not copied yet
    iam = set(aws_actions(tier_plan(estate, "tier4_archival"), occasional=True))
    assert {("ec2", "CopyImage"), ("s3", "PutBucketLifecycleConfiguration")} <= iam


# -- estate rules for tiers ------------------------------------------------------------------------


def user_sessions(doc: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in doc["tiers"]["tier1_realtime"]["systems"] if s["name"] == "user-sessions")


def test_sessions_system_references_the_sessions_config(estate: Estate) -> None:
    system = next(s for s in estate.tiers["tier1_realtime"].systems if s["name"] == "user-sessions")
    assert dict(system) == {"name": "user-sessions", "type": "redis_sessions", "region": "primary"}


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: user_sessions(d).pop("region"), "tiers.tier1_realtime.systems[2].region", "is required"),
        (
            lambda d: user_sessions(d).update(region="mars"),
            "tiers.tier1_realtime.systems[2].region",
            "must be one of",
        ),
        (
            lambda d: user_sessions(d).update(pattern="session:*"),
            "tiers.tier1_realtime.systems[2]",
            "unknown field 'pattern' for type 'redis_sessions'",
        ),
        (
            lambda d: d["tiers"]["tier3_daily"].update(retention_days=30),
            "tiers.tier3_daily.retention_days",
            "below the 90-day minimum storage duration of storage_class GLACIER",
        ),
        (
            lambda d: d["tiers"]["tier4_archival"].update(retention_days=365),
            "tiers.tier4_archival.retention_days",
            "shorter than the archive's Object Lock of 7 years",
        ),
        (
            lambda d: d["tiers"]["tier1_realtime"].update(retries=11),
            "tiers.tier1_realtime.retries",
            "at most 10",
        ),
        (
            lambda d: d["kubernetes"].update(api_url="ftp://x"),
            "kubernetes.api_url",
            "must be an http(s) URL",
        ),
    ],
)
def test_bad_tier_settings_are_refused_naming_the_field(
    tmp_path: Path, doc: dict[str, Any], mutate: Any, field: str, reason: str
) -> None:
    mutate(doc)
    with pytest.raises(EstateConfigError) as info:
        load_doc(tmp_path, doc)
    assert info.value.field_path == field, str(info.value)
    assert reason in info.value.reason, str(info.value)


def test_estate_kinds_are_exported_with_the_same_api_group_by_the_toolbox(estate: Estate) -> None:
    from dr_toolbox.k8s_export import KINDS

    for kind in estate.kubernetes["resource_kinds"]:
        assert KINDS[kind["plural"]] == (kind["api_version"], kind["kind"]), kind


def test_a_generated_estate_of_500_systems_is_valid(tmp_path: Path, doc: dict[str, Any]) -> None:
    scale_tier(doc, "tier1_realtime", 500)
    estate = load_doc(tmp_path, doc)
    plan = tier_plan(estate, "tier1_realtime")
    assert len(plan.systems) == 500 and len({s["name"] for s in plan.systems}) == 500
    assert {t: len(plan.systems_of(t)) for t in plan.types} == {
        "postgres_database": 125,
        "postgres_wal": 125,
        "redis_sessions": 125,
        "secrets": 125,
    }
