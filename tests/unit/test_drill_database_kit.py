"""The drill-database kit's pure parts: which backup is the latest complete one, where its dump is,
how data lost and latency percentiles are computed, the pod's command line, and the guards that
keep a drill off anything that is not its own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dr_automation.drills import database as kit
from dr_automation.drills.scenario import DrillContext, DrillError
from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate

BUCKET = "leanvibe-backups-prod"


@pytest.fixture(scope="module")
def ctx() -> DrillContext:
    return DrillContext(
        estate=load_estate(DEFAULT_ESTATE_PATH), scenario="database_failure", run_id="manual__1"
    )


def manifest(
    status: str = "complete", entry_status: str = "succeeded", bucket: str = BUCKET
) -> dict[str, Any]:
    base = f"s3://{bucket}/backups/tier1_realtime/b1/primary-database/"
    return {
        "status": status,
        "locations": [{"bucket": bucket, "storage_class": "STANDARD"}],
        "components": [
            {
                "name": "primary-database",
                "status": entry_status,
                "locations": [base],
                "artifacts": [
                    {"name": "primary-database.pgdump", "sha256": "ab" * 32, "size_bytes": 10},
                    {"name": "primary-database.pgdump.stats.json", "sha256": "cd" * 32, "size_bytes": 2},
                ],
            }
        ],
    }


def test_newest_first_keeps_only_manifests_of_the_tier_newest_first() -> None:
    at = [datetime(2026, 11, d, tzinfo=UTC) for d in (1, 2, 3)]
    listing = [
        {"Key": "backups/tier1_realtime/old/manifest.json", "LastModified": at[0]},
        {"Key": "backups/tier1_realtime/new/manifest.json", "LastModified": at[2]},
        {"Key": "backups/tier1_realtime/new/primary-database/primary-database.pgdump", "LastModified": at[2]},
        {"Key": "backups/tier1_realtime/mid/verification.json", "LastModified": at[1]},
        {"Key": "backups/tier2_frequent/x/manifest.json", "LastModified": at[2]},
    ]
    assert kit.newest_first(listing, "tier1_realtime") == [
        (at[2], "tier1_realtime", "new"),
        (at[0], "tier1_realtime", "old"),
    ]


def test_dump_of_a_complete_backup_names_the_dump_its_sidecar_and_checksum() -> None:
    dump = kit.dump_of(manifest(), "primary-database", BUCKET)
    base = f"s3://{BUCKET}/backups/tier1_realtime/b1/primary-database/primary-database.pgdump"
    assert dump == {
        "url": base,
        "stats_url": base + ".stats.json",
        "sha256": "ab" * 32,
        "size_bytes": 10,
        "storage_class": "STANDARD",
    }


@pytest.mark.parametrize(
    ("doc", "system", "bucket"),
    [
        (manifest(status="partial"), "primary-database", BUCKET),
        (manifest(entry_status="failed"), "primary-database", BUCKET),
        (manifest(), "business-data", BUCKET),
        (manifest(), "primary-database", "another-bucket"),
    ],
    ids=["partial backup", "failed entry", "other system", "not in this bucket"],
)
def test_dump_of_refuses_what_is_not_a_complete_dump_in_the_bucket(
    doc: dict[str, Any], system: str, bucket: str
) -> None:
    assert kit.dump_of(doc, system, bucket) is None


def test_dump_systems_of_the_primary_and_dr_buckets(ctx: DrillContext) -> None:
    primary = kit.dump_systems(ctx.estate, "primary", None, ctx.estate.primary_region.backup_bucket)
    assert ("tier1_realtime", "primary-database") in primary
    assert all(tier != "tier4_archival" for tier, _ in primary)  # kept in the archive buckets only
    dr = kit.dump_systems(ctx.estate, "primary", None, ctx.estate.dr_region.backup_bucket)
    assert ("tier1_realtime", "primary-database") not in dr  # tier 1 has no cross-region copy
    assert kit.dump_systems(ctx.estate, "primary", ["tier2_frequent"], BUCKET) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"database": "nope"}, "database"), ({"tiers": ["tier9"]}, "tiers"), ({"region": "mars-1"}, "region")],
)
def test_latest_backup_names_the_bad_argument_before_any_call(
    ctx: DrillContext, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(DrillError, match=f"^{field}: "):
        kit.latest_backup(ctx.estate, **kwargs)


def test_data_lost_counts_the_writers_rows_the_recovery_lacks() -> None:
    writes = {"rows": 100, "first_at": 1000.0, "last_at": 1030.0}
    # the backup at 960 s, the last lost write at 1030 s: 70 s of writes lost
    assert kit.data_lost(writes, 0, "1970-01-01T00:16:00+00:00") == {
        "rows_written": 100,
        "rows_lost": 100,
        "minutes_lost": round(70 / 60, 4),
    }
    assert kit.data_lost(writes, 40, "1970-01-01T00:16:00+00:00")["rows_lost"] == 60
    assert kit.data_lost(writes, 100, "1970-01-01T00:16:00") == {
        "rows_written": 100,
        "rows_lost": 0,
        "minutes_lost": 0.0,
    }


def test_parse_time_reads_iso_with_or_without_zone_and_numbers() -> None:
    assert kit.parse_time("2026-11-25T06:00:00+00:00") == kit.parse_time("2026-11-25T06:00:00")
    assert kit.parse_time("2026-11-25T06:00:00Z") == datetime(2026, 11, 25, 6, tzinfo=UTC).timestamp()
    assert kit.parse_time(12.5) == 12.5


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert kit.percentile(values, 0.5) == 50
    assert kit.percentile(values, 0.95) == 95
    assert kit.percentile([7.0], 0.95) == 7.0
    with pytest.raises(ValueError, match="no values"):
        kit.percentile([], 0.5)


@pytest.mark.parametrize(
    ("seconds", "rate", "field"),
    [(0, 10, "seconds"), (601, 10, "seconds"), (5, 0, "rate_per_second"), (5, 1000, "rate_per_second")],
)
def test_the_writer_is_bounded(seconds: float, rate: float, field: str) -> None:
    with pytest.raises(DrillError, match=f"^{field}: "):
        kit.check_bounds(seconds, rate)


def test_covered_query_leaves_out_rows_by_key_as_a_derived_table() -> None:
    assert kit.covered_query("public", "invoices", "id") == (
        '(SELECT * FROM "public"."invoices" WHERE NOT ("id" = ANY(%s)))'
    )


def test_compare_scores_the_share_of_recorded_tables_that_match() -> None:
    recorded = {"a": {"rows": 1, "checksum": "x"}, "b": {"rows": 2, "checksum": "y"}}
    assert kit.compare(recorded, dict(recorded))["integrity_score"] == 1.0
    half = kit.compare(recorded, {"a": {"rows": 1, "checksum": "x"}, "b": {"rows": 2, "checksum": "z"}})
    assert half["integrity_score"] == 0.5 and half["mismatched_tables"] == ["b"]
    assert "checksum differs" in half["mismatches"][0]["reason"]
    missing = kit.compare(recorded, {"a": {"rows": 1, "checksum": "x"}})
    assert missing["integrity_score"] == 0.5 and "missing" in missing["mismatches"][0]["reason"]


def test_test_database_names_belong_to_the_drill(ctx: DrillContext) -> None:
    assert kit.test_database_name(ctx) == ctx.database_name
    assert kit.test_database_name(ctx, "_dr") == ctx.database_name + "_dr"
    with pytest.raises(DrillError, match=r"^suffix: "):
        kit.test_database_name(ctx, "-bad name")
    with pytest.raises(DrillError, match=r"^suffix: "):
        kit.test_database_name(ctx, "_" + "x" * 60)


def test_the_restore_pod_creates_the_drill_database_from_the_copy_with_the_dsn_from_a_secret(
    ctx: DrillContext,
) -> None:
    copy = {
        "region": "us-east-1",
        "url": f"s3://{BUCKET}/{ctx.prefix}backup/primary-database.pgdump",
        "sha256": "ab" * 32,
    }
    arguments, result = kit.toolbox_arguments(ctx, copy, ctx.database_name)
    assert result.startswith(f"s3://{BUCKET}/{ctx.prefix}results/")
    assert arguments[arguments.index("db-restore") :] == [
        "db-restore",
        "--from",
        copy["url"],
        "--dsn-env",
        "VERIFY_SCRATCH_DSN",
        "--expect-sha256",
        "ab" * 32,
        "--create-database",
        ctx.database_name,
    ]
    assert not any("password" in a.lower() or "host=" in a for a in arguments)


def test_destructive_helpers_refuse_what_is_not_the_drills(ctx: DrillContext) -> None:
    production = {
        "region": "us-east-1",
        "url": f"s3://{BUCKET}/backups/tier1_realtime/b1/primary-database/primary-database.pgdump",
        "stats_url": f"s3://{BUCKET}/backups/tier1_realtime/b1/primary-database/primary-database.pgdump.stats.json",
    }
    with pytest.raises(DrillError, match="not the drill's copy"):
        kit.remove_backup_copy(ctx, production)
    with pytest.raises(DrillError, match="not the drill's"):
        kit.fail_database(ctx, "leanvibe")
    with pytest.raises(DrillError, match="not the drill's"):
        kit.corrupt_rows(ctx, "leanvibe", exclude=[], rows=5)


@pytest.mark.parametrize("name", ["database_failure", "data_corruption"])
def test_the_scenarios_keep_the_framework_contract(name: str) -> None:
    import re

    from dr_automation.drills import dag

    scenario = dag.load_scenario(name)
    module = __import__(f"dr_automation.drills.scenarios.{name}", fromlist=["AWS_ACTIONS"])
    assert scenario.name == name and scenario.simulated and isinstance(scenario.simulated, tuple)
    assert all(
        callable(getattr(scenario, step))
        for step in ("setup", "inject", "recover", "verify", "measure", "cleanup")
    )
    assert module.AWS_ACTIONS and all(
        re.fullmatch(r"[a-z0-9]+:[A-Z][A-Za-z0-9]+", a) for a in module.AWS_ACTIONS
    )
