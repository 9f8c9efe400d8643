"""The four backup tiers in the full sandbox: real scheduler, executor and triggerer, toolbox pods run
by the Kubernetes stand-in, a real PostgreSQL primary, the AWS emulator with injected faults.

One sandbox, in order: throttling is injected on every AWS action tier 1 makes (and more than boto3
retries absorb on one of them), then the four DAGs are unpaused and their scheduled runs must all
succeed; every manifest entry is then found in every location with its recorded SHA-256, recomputed
from the bytes (archived copies restored first), the real database dump included. Then a tier-1 run
with Secrets Manager failing must fail naming `critical-config` (in the manifest and the page) while
its siblings complete; and deleting a tier-4 archive must be refused by Object Lock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from dr_automation.backup.plan import aws_actions, backup_id, tier_plan
from dr_automation.estate import load_estate
from dr_sandbox.aws_emulator import clear_faults, inject_fault, list_faults
from dr_sandbox.webhook_sink import fetch_messages
from tests.backup_verify import (
    TIER_DAGS,
    assert_archive_delete_refused,
    read_manifests,
    read_object,
    split,
    verify_manifest,
)
from tests.e2e.conftest import running_sandbox
from tests.e2e.failover_helpers import aws_client, tis, xcom

pytestmark = pytest.mark.e2e

DAGS = TIER_DAGS


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    with running_sandbox(tmp_path_factory, "backup-e2e") as handles:
        client = handles[3]
        for dag_id in DAGS.values():
            client.wait_for_dag(dag_id)  # parsed, still paused
        yield handles


def finished_run(client: Any, dag_id: str, timeout: float = 300.0, not_run: set[str] = frozenset()) -> dict:
    """The DAG's first run (other than `not_run`), once it has finished."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [r for r in client.runs(dag_id) if r["dag_run_id"] not in not_run]
        done = [r for r in runs if r["state"] in ("success", "failed")]
        if done:
            return done[-1]
        assert time.monotonic() < deadline, f"{dag_id}: no finished run after {timeout:.0f}s: {runs}"
        time.sleep(2)


def test_scheduled_runs_survive_throttling_and_every_manifest_entry_checks_out(sandbox: tuple) -> None:
    layout, endpoints, creds, client = sandbox
    estate = load_estate(endpoints["estate"])
    url = endpoints["aws"]["endpoint_url"]
    clear_faults(url)
    for service, action in aws_actions(tier_plan(estate, "tier1_realtime")):
        inject_fault(url, service=service, action=action, mode="throttle", count=2)
    # more than boto3's own retries absorb: the task itself retries, with exponential backoff
    inject_fault(url, service="secretsmanager", action="GetSecretValue", mode="throttle", count=8)
    for dag_id in DAGS.values():
        client.unpause(dag_id)  # catchup is off: each tier runs its latest interval now
    runs = {key: finished_run(client, dag_id) for key, dag_id in DAGS.items()}
    faults = list_faults(url)
    clear_faults(url)
    for key, run in runs.items():
        states = {t: v["state"] for t, v in tis(client, DAGS[key], run["dag_run_id"]).items()}
        assert run["state"] == "success", (key, states)
    assert [f for f in faults if f["hits"] < f["count"]] == [], "an injected AWS fault was never reached"
    secrets_try = next(
        t
        for t in client.task_instances(DAGS["tier1_realtime"], runs["tier1_realtime"]["dag_run_id"])
        if t["task_id"] == "backup_secrets"
    )
    assert secrets_try["try_number"] >= 2

    s3_for = lambda region: aws_client(layout, creds, "s3", region)  # noqa: E731
    for key, run in runs.items():
        plan = tier_plan(estate, key)
        manifests = read_manifests(s3_for, plan, backup_id(run["dag_run_id"]))
        assert all(m == manifests[0] for m in manifests) and manifests[0]["status"] == "complete", key
        checked = verify_manifest(s3_for, manifests[0])
        assert checked >= len(plan.systems) * len(plan.locations), key
        published = xcom(client, DAGS[key], run["dag_run_id"], "publish")
        assert sorted(published["manifests"]) == sorted(
            loc.url(k) for loc, k in plan.manifest_keys(published["backup_id"])
        )
    tier1 = read_manifests(
        s3_for, tier_plan(estate, "tier1_realtime"), backup_id(runs["tier1_realtime"]["dag_run_id"])
    )[0]
    dump = next(c for c in tier1["components"] if c["name"] == "primary-database")
    bucket, prefix = split(dump["locations"][0])
    data = read_object(s3_for("us-east-1"), bucket, prefix + dump["artifacts"][0]["name"])
    assert data.startswith(b"PGDMP") and dump["details"]["tables"]["invoices"]["rows"] > 0


def test_a_failing_system_fails_the_run_by_name_while_its_siblings_are_manifested(sandbox: tuple) -> None:
    layout, endpoints, creds, client = sandbox
    estate = load_estate(endpoints["estate"])
    url = endpoints["aws"]["endpoint_url"]
    dag_id = DAGS["tier1_realtime"]
    finished_run(client, dag_id)  # the scheduled run of the test above is over
    inject_fault(
        url, service="secretsmanager", action="GetSecretValue", mode="error", status=500, count=10_000
    )
    try:
        client.trigger(dag_id, run_id="e2e_failing_system")
        run = client.wait_for_run(dag_id, "e2e_failing_system", timeout=300)
    finally:
        clear_faults(url)
    states = {t: v["state"] for t, v in tis(client, dag_id, "e2e_failing_system").items()}
    assert (
        run["state"] == "failed" and states["publish"] == "failed" and states["write_manifest"] == "success"
    )
    s3_for = lambda region: aws_client(layout, creds, "s3", region)  # noqa: E731
    manifest = read_manifests(s3_for, tier_plan(estate, "tier1_realtime"), backup_id("e2e_failing_system"))[0]
    status = {c["name"]: c["status"] for c in manifest["components"]}
    assert status.pop("critical-config") == "failed" and set(status.values()) == {"succeeded"}
    failed = next(c for c in manifest["components"] if c["name"] == "critical-config")
    assert "GetSecretValue" in failed["reason"]
    verify_manifest(s3_for, manifest)  # the siblings are whole
    pages = [
        m
        for m in fetch_messages(endpoints["webhook_sink"]["url"])
        if "critical-config" in json.dumps(m["body"]) and "e2e_failing_system" in json.dumps(m["body"])
    ]
    assert pages, "the on-call page did not name the failed system"


def test_deleting_a_tier4_archive_is_refused_by_object_lock(sandbox: tuple) -> None:
    layout, endpoints, creds, client = sandbox
    estate = load_estate(endpoints["estate"])
    run = finished_run(client, DAGS["tier4_archival"])
    plan = tier_plan(estate, "tier4_archival")
    s3_for = lambda region: aws_client(layout, creds, "s3", region)  # noqa: E731
    manifest = read_manifests(s3_for, plan, backup_id(run["dag_run_id"]))[0]
    entry = manifest["components"][0]
    for location, url in zip(plan.locations, entry["locations"], strict=True):
        bucket, prefix = split(url)
        s3 = s3_for(location.region)
        assert_archive_delete_refused(s3, bucket, prefix + entry["artifacts"][0]["name"])


def test_a_tier_run_triggers_verify_backups_through_its_asset_and_it_passes(sandbox: tuple) -> None:
    """The real scheduler path: tier 1's asset event starts verify_backups, which restores the dump
    into a scratch database on the local server, records the verdict beside the manifest, publishes
    the verified RPO, and leaves no scratch database behind."""
    import psycopg2

    from dr_sandbox.database import ADMIN_DSN

    layout, endpoints, creds, client = sandbox
    estate = load_estate(endpoints["estate"])
    client.wait_for_dag("verify_backups")
    client.unpause("verify_backups")
    before = {r["dag_run_id"] for r in client.runs("verify_backups")}
    dag_id = DAGS["tier1_realtime"]
    client.trigger(dag_id, run_id="e2e_for_verification")
    assert client.wait_for_run(dag_id, "e2e_for_verification", timeout=300)["state"] == "success"
    location, manifest_key = tier_plan(estate, "tier1_realtime").manifest_keys(
        backup_id("e2e_for_verification")
    )[0]
    bucket, prefix = split(location.url(manifest_key.rsplit("/", 1)[0] + "/"))
    s3 = aws_client(layout, creds, "s3", location.region)
    deadline = time.monotonic() + 600
    while True:  # the verdict beside the manifest, then every verify run it took is over
        new = [r for r in client.runs("verify_backups") if r["dag_run_id"] not in before]
        try:
            record = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "verification.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            record = None
        if record is not None and new and all(r["state"] in ("success", "failed") for r in new):
            break
        assert time.monotonic() < deadline, f"backup not verified after its asset event: {new}"
        time.sleep(3)
    client.pause("verify_backups")
    # (a daily sweep may also run if the clock passes its time; it rightly fails on the backup the
    # test above made fail, so only the asset-triggered runs are judged here)
    triggered = [r for r in new if r["run_type"] == "asset_triggered"]
    assert triggered and {r["state"] for r in triggered} == {"success"}, [
        (r["dag_run_id"], r["state"]) for r in new
    ]
    assert record["result"] == "passed", record
    state = json.loads(
        s3.get_object(Bucket=estate.primary_region.backup_bucket, Key="verification/state.json")[
            "Body"
        ].read()
    )
    # tier 1 is unpaused, so a scheduled backup taken after ours may have been verified since: the
    # state must name ours or a newer backup that passed, and publish a verified RPO within objective
    last = state["tiers"]["tier1_realtime"]["last_verified"]
    assert last["result"] == "passed", last
    assert last["backup_id"] == record["backup_id"] or (
        datetime.fromisoformat(last["backup_time"]) >= datetime.fromisoformat(record["backup_time"])
        and last["backup_id"].startswith("scheduled")
    ), (last, record["backup_id"], record["backup_time"])
    conn = psycopg2.connect(ADMIN_DSN)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dr_verify%%'")
            assert cur.fetchall() == []
    finally:
        conn.close()


def test_a_restore_through_the_rest_api_brings_deleted_rows_back(sandbox: tuple) -> None:
    """During an incident, by REST: rows are deleted from the sandbox's primary database; a
    restore_from_backup run of the backup verified above puts back exactly its recorded rows."""
    import psycopg2

    layout, endpoints, creds, client = sandbox
    estate = load_estate(endpoints["estate"])
    backup = backup_id("e2e_for_verification")
    s3_for = lambda region: aws_client(layout, creds, "s3", region)  # noqa: E731
    manifest = read_manifests(s3_for, tier_plan(estate, "tier1_realtime"), backup)[0]
    dump = next(c for c in manifest["components"] if c["name"] == "primary-database")
    recorded = {table: stats["rows"] for table, stats in dump["details"]["tables"].items()}
    with psycopg2.connect(creds["primary_database_dsn"]) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM invoices WHERE id IN (SELECT id FROM invoices ORDER BY id LIMIT 100)")
        assert cur.rowcount == 100
    conn.close()
    client.wait_for_dag("restore_from_backup")
    client.unpause("restore_from_backup")
    conf = {"backup_id": backup, "tier": "tier1_realtime", "components": ["database"]}
    client.trigger("restore_from_backup", conf, run_id="e2e_restore")
    run = client.wait_for_run("restore_from_backup", "e2e_restore", timeout=600)
    assert run["state"] == "success", {
        t: v["state"] for t, v in tis(client, "restore_from_backup", "e2e_restore").items()
    }
    with psycopg2.connect(creds["primary_database_dsn"]) as conn, conn.cursor() as cur:
        counts = {}
        for table in recorded:
            cur.execute(f'SELECT count(*) FROM "{table}"')  # names from the backup's own stats
            counts[table] = cur.fetchone()[0]
    conn.close()
    assert counts == recorded
