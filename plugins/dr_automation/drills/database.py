"""The drill-database kit: a drill's own PostgreSQL test database, made from a real backup.

A database drill never touches production data. It finds the newest complete dump of the database
in a region's backup bucket (``latest_backup``, from the backup manifests and the dump's stats
sidecar), copies it under the drill's prefix (``copy_backup``; the drill recovers from that copy,
so the forced fault ``remove_backup`` deletes the copy, never a production backup), and restores it
into a new database on the scratch server by a dr-toolbox pod (``create_test_database``: the same
``db-restore --create-database`` the restore DAG runs, with the scratch server's DSN from the
Secret verification uses). Then the drill writes real rows (``write_rows``), breaks the database,
recovers it and compares per-table stats (``table_stats``, the toolbox's own definition, so they
compare with what the backup recorded). ``drop_test_databases`` and ``delete_drill_objects`` find
everything from the drill id alone.
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from dr_automation.backup.components import delete_versions
from dr_automation.drills.scenario import DrillError

if TYPE_CHECKING:
    from dr_automation.drills.scenario import DrillContext
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

DUMP_SUFFIX = ".pgdump"
STATS_SUFFIX = ".stats.json"  # the toolbox's sidecar beside each dump (dr_toolbox.dbops.STATS_SUFFIX)
COMPLETE = "complete"
# Pods a drill starts carry this label (value: the drill id), so cleanup finds them from the id alone.
DRILL_LABEL = "dr-automation/drill"
# The table the writer inserts into: the application's own invoices, so lost writes are real rows.
WRITER_TABLE = "invoices"
MAX_WRITE_SECONDS = 600.0
MAX_WRITE_RATE = 200.0
# What a drill's benchmark asks the recovered database: an application-like read per tenant.
BENCH_QUERY = (
    "SELECT t.name, count(*), sum(i.amount_cents) FROM invoices i JOIN tenants t ON t.id = i.tenant_id "
    "WHERE i.tenant_id = %s GROUP BY t.name"
)
_MISSING = ("NoSuchKey", "404", "NotFound")


# -- finding the backup -----------------------------------------------------------------------------


def region_bucket(estate: Estate, region: str | None) -> tuple[str, str, str]:
    """(region, backup bucket, KMS alias) of `region` (default: the primary)."""
    name = region or estate.primary_region.name
    if name not in estate.regions:
        raise DrillError(f"region: {name!r} is not one of the estate's regions ({', '.join(estate.regions)})")
    spec = estate.regions[name]
    return name, spec.backup_bucket, spec.kms_key_alias


def dump_systems(
    estate: Estate, database: str, tiers: Iterable[str] | None, bucket: str
) -> list[tuple[str, str]]:
    """(tier, system) of every postgres_database backup of `database` that lands in `bucket`."""
    from dr_automation.backup.plan import tier_plan

    if database not in estate.databases:
        raise DrillError(f"database: {database!r} is not one of the estate's databases")
    wanted = list(tiers) if tiers is not None else list(estate.tiers)
    unknown = [t for t in wanted if t not in estate.tiers]
    if unknown:
        raise DrillError(f"tiers: {', '.join(unknown)} not in the estate ({', '.join(estate.tiers)})")
    out = []
    for key in wanted:
        plan = tier_plan(estate, key)
        if not any(loc.bucket == bucket for loc in plan.locations):
            continue
        out += [
            (key, s["name"]) for s in plan.systems_of("postgres_database") if s.get("database") == database
        ]
    return out


def newest_first(listing: Iterable[Mapping[str, Any]], tier: str) -> list[tuple[Any, str, str]]:
    """(LastModified, tier, backup id) of each ``backups/<tier>/<id>/manifest.json`` in a listing."""
    from dr_automation.backup.plan import MANIFEST_NAME

    prefix = f"backups/{tier}/"
    out = []
    for obj in listing:
        parts = obj["Key"][len(prefix) :].split("/") if obj["Key"].startswith(prefix) else []
        if len(parts) == 2 and parts[1] == MANIFEST_NAME:
            out.append((obj["LastModified"], tier, parts[0]))
    return sorted(out, reverse=True)


def dump_of(manifest: Mapping[str, Any], system: str, bucket: str) -> dict[str, Any] | None:
    """Where the system's dump of this backup is in `bucket`, if the backup is complete and holds it."""
    if manifest.get("status") != COMPLETE:
        return None
    entry = next((c for c in manifest.get("components") or [] if c.get("name") == system), None)
    if not entry or entry.get("status") != "succeeded":
        return None
    base = next((u for u in entry.get("locations") or [] if u.startswith(f"s3://{bucket}/")), None)
    dump = next((a for a in entry.get("artifacts") or [] if a["name"].endswith(DUMP_SUFFIX)), None)
    if base is None or dump is None:
        return None
    where = next((loc for loc in manifest.get("locations") or [] if loc.get("bucket") == bucket), {})
    return {
        "url": base + dump["name"],
        "stats_url": base + dump["name"] + STATS_SUFFIX,
        "sha256": dump["sha256"],
        "size_bytes": dump.get("size_bytes"),
        "storage_class": where.get("storage_class") or entry.get("storage_class"),
    }


def latest_backup(
    estate: Estate,
    *,
    database: str = "primary",
    region: str | None = None,
    tiers: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The newest complete dump of `database` in `region`'s backup bucket (the DR region holds the
    cross-region copies), with the stats recorded when it was taken."""
    from dr_automation.restore import backup as b
    from dr_automation.restore.plan import ARCHIVED

    region, bucket, _ = region_bucket(estate, region)
    systems = dump_systems(estate, database, tiers, bucket)
    if not systems:
        raise DrillError(f"no tier backs up database {database!r} into s3://{bucket} ({region})")
    client = b.s3(estate, region)
    candidates = []
    for tier in {t for t, _ in systems}:
        listing = [
            obj
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"backups/{tier}/"
            )
            for obj in page.get("Contents", [])
        ]
        candidates += newest_first(listing, tier)
    candidates.sort(reverse=True)
    for _, tier, backup_id in candidates:
        manifest = (
            b.read_json(estate, region, f"s3://{bucket}/backups/{tier}/{backup_id}/manifest.json") or {}
        )
        for system in (s for t, s in systems if t == tier):
            dump = dump_of(manifest, system, bucket)
            if dump is None:
                continue
            if dump["storage_class"] in ARCHIVED:
                sidecar = b.thawed_json(estate, region, dump["stats_url"])
            else:
                sidecar = b.read_json(estate, region, dump["stats_url"])
            if not sidecar or not sidecar.get("tables"):
                log.warning(
                    "backup %s/%s: no stats sidecar at %s, skipped", tier, backup_id, dump["stats_url"]
                )
                continue
            return {
                "tier": tier,
                "backup_id": backup_id,
                "system": system,
                "database": database,
                "region": region,
                "bucket": bucket,
                **dump,
                "taken_at": sidecar.get("snapshot_time") or manifest.get("created_at"),
                "stats": sidecar["tables"],
            }
    raise DrillError(
        f"no complete backup of database {database!r} in s3://{bucket}/backups/ ({region}; "
        f"tiers {', '.join(sorted({t for t, _ in systems}))}): run a backup first"
    )


# -- the drill's copy ---------------------------------------------------------------------------------


def copy_backup(ctx: DrillContext, backup: Mapping[str, Any]) -> dict[str, Any]:
    """Copy the dump and its stats sidecar under the drill's prefix (same bucket, drill-tagged,
    STANDARD so it restores at once); returns the backup described by its copy."""
    from dr_automation.restore import backup as b
    from dr_automation.restore.plan import ARCHIVED

    region, bucket, kms = region_bucket(ctx.estate, backup["region"])
    if backup.get("storage_class") in ARCHIVED:
        b.thaw(ctx.estate, region, [backup["url"], backup["stats_url"]])
    client = b.s3(ctx.estate, region)
    name = backup["url"].rsplit("/", 1)[1]
    key = f"{ctx.prefix}backup/{name}"
    for source, target in ((backup["url"], key), (backup["stats_url"], key + STATS_SUFFIX)):
        src_bucket, src_key = b.split_url(source)
        client.copy_object(
            Bucket=bucket,
            Key=target,
            CopySource={"Bucket": src_bucket, "Key": src_key},
            MetadataDirective="COPY",
            TaggingDirective="REPLACE",
            Tagging=urlencode(ctx.tags),
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=kms,
            StorageClass="STANDARD",
        )
    return {
        **backup,
        "source_url": backup["url"],
        "url": f"s3://{bucket}/{key}",
        "stats_url": f"s3://{bucket}/{key}{STATS_SUFFIX}",
        "storage_class": "STANDARD",
        "copied_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def remove_backup_copy(ctx: DrillContext, backup: Mapping[str, Any]) -> list[str]:
    """The forced fault: every version of the drill's copy deleted (never a production backup)."""
    from dr_automation.restore import backup as b

    removed = []
    for url in (backup["url"], backup["stats_url"]):
        bucket, key = b.split_url(url)
        if not key.startswith(ctx.prefix):
            raise DrillError(f"remove_backup: {url} is not the drill's copy (not under {ctx.prefix})")
        delete_versions(b.s3(ctx.estate, backup["region"]), bucket, key)
        removed.append(url)
    return removed


def object_exists(ctx: DrillContext, region: str, url: str) -> bool:
    from dr_automation.restore import backup as b

    bucket, key = b.split_url(url)
    try:
        b.s3(ctx.estate, region).head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if b._code(exc) in _MISSING:
            return False
        raise
    return True


def delete_drill_objects(ctx: DrillContext) -> list[str]:
    """Delete everything under the drill's prefix in every region's backup bucket; returns what is left."""
    from dr_automation.restore import backup as b

    left = []
    for region, spec in ctx.estate.regions.items():
        client = b.s3(ctx.estate, region)
        delete_versions(client, spec.backup_bucket, ctx.prefix)
        count = client.list_objects_v2(Bucket=spec.backup_bucket, Prefix=ctx.prefix).get("KeyCount", 0)
        if count:
            left.append(f"{count} objects under s3://{spec.backup_bucket}/{ctx.prefix}")
    return left


# -- the test database ----------------------------------------------------------------------------------


def test_database_name(ctx: DrillContext, suffix: str = "") -> str:
    """ctx.database_name + suffix, refused unless it is a plain PostgreSQL identifier."""
    from dr_toolbox.pg import IDENT_RE

    name = ctx.database_name + suffix
    if not IDENT_RE.match(name):
        raise DrillError(f"suffix: {suffix!r} makes {name!r}, not a plain database name (max 63 chars)")
    return name


def toolbox_arguments(ctx: DrillContext, backup: Mapping[str, Any], name: str) -> tuple[list[str], str]:
    """The db-restore command line of the pod creating `name` from the backup, and its result URL."""
    from dr_automation.verification.settings import SCRATCH_DSN_ENV

    _, bucket, kms = region_bucket(ctx.estate, backup["region"])
    result = f"s3://{bucket}/{ctx.prefix}results/restore-{name}-{int(time.time() * 1000)}.json"
    return [
        "--result-out",
        result,
        "--result-kms-key-id",
        kms,
        "db-restore",
        "--from",
        backup["url"],
        "--dsn-env",
        SCRATCH_DSN_ENV,
        "--expect-sha256",
        backup["sha256"],
        "--create-database",
        name,
    ], result


def run_pod(ctx: DrillContext, task_id: str, arguments: list[str]) -> None:
    """One dr-toolbox pod, run to completion from inside the drill's task (the house pod factory,
    synchronously), with the scratch server's DSN from its Secret; labelled with the drill id."""
    from airflow.sdk import get_current_context

    from dr_automation.pods import toolbox_pod
    from dr_automation.verification.settings import SCRATCH_DSN_ENV, settings

    poll = float(ctx.estate.kubernetes.get("pod_poll_seconds", 1.0))
    pod = toolbox_pod(
        task_id,
        arguments,
        estate=ctx.estate,
        secret_env={SCRATCH_DSN_ENV: settings(ctx.estate).scratch_secret},
        size="medium",
        labels={DRILL_LABEL: ctx.drill_id},
        deferrable=False,
        reattach_on_restart=False,
        poll_interval=poll,
        startup_check_interval_seconds=poll,
    )
    pod.execute(get_current_context())


def create_test_database(ctx: DrillContext, backup: Mapping[str, Any], *, suffix: str = "") -> dict[str, Any]:
    """A new database restored from the backup by a toolbox pod; an earlier one of the same name
    (a retried step) is dropped first. Returns its name and how long the restore took."""
    from dr_automation.restore import backup as b

    name = test_database_name(ctx, suffix)
    if not object_exists(ctx, backup["region"], backup["url"]):
        raise DrillError(f"the backup to restore from is missing: {backup['url']} does not exist (NoSuchKey)")
    left = drop_databases(ctx.estate, [name])
    if left:
        raise DrillError(f"database {name} exists and could not be dropped before the restore")
    arguments, result_url = toolbox_arguments(ctx, backup, name)
    started = time.time()
    error = None
    try:
        run_pod(ctx, "drill_restore", arguments)
    except Exception as exc:  # the pod's own result says why; the operator's message is generic
        error = exc
    finished = time.time()
    result = b.read_json(ctx.estate, backup["region"], result_url) or {}
    if error is not None or not result.get("ok", True) or result.get("error"):
        reason = result.get("error") or (str(error).splitlines()[0] if error else "no result")
        raise DrillError(f"restore of {backup['url']} into {name} failed: {reason}")
    return {
        "database": name,
        "from": backup["url"],
        "started_at": started,
        "finished_at": finished,
        "restore_seconds": round(finished - started, 3),
        "pod_restore_seconds": result.get("duration_seconds"),
        "result_url": result_url,
    }


def drill_databases(ctx: DrillContext) -> list[str]:
    """Every database on the scratch server whose name starts with the drill's database name."""
    with connect_scratch(ctx.estate, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT datname FROM pg_database WHERE left(datname, %s) = %s ORDER BY 1",
            (len(ctx.database_name), ctx.database_name),
        )
        names = [row[0] for row in cur.fetchall()]
    conn.close()
    return names


def drop_databases(estate: Estate, names: Sequence[str]) -> list[str]:
    """DROP DATABASE IF EXISTS ... WITH (FORCE) on the scratch server (terminates their sessions);
    returns the names still there."""
    from dr_automation.verification.restores import drop_scratch_databases

    return drop_scratch_databases(estate, list(names))["left"]


def drop_test_databases(ctx: DrillContext) -> list[str]:
    """Drop every database of the drill (terminating its sessions); returns the names that remain."""
    return drop_databases(ctx.estate, drill_databases(ctx))


def fail_database(ctx: DrillContext, database: str) -> dict[str, Any]:
    """The failure: terminate every session of the drill's database, then drop it. Only a drill
    database can be failed (its name starts with the drill's)."""
    if not database.startswith(ctx.database_name):
        raise DrillError(f"database: {database!r} is not the drill's (must start with {ctx.database_name})")
    with connect_scratch(ctx.estate, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid()",
            (database,),
        )
        terminated = cur.fetchone()[0]
    conn.close()
    left = drop_databases(ctx.estate, [database])
    if left:
        raise DrillError(f"database {database} could not be dropped")
    return {"terminated_sessions": int(terminated), "dropped": database}


def open_session(ctx: DrillContext, database: str) -> Any:
    """An application-like session on the drill's database (held open across the failure)."""
    conn = connect_scratch(ctx.estate, database=database, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM invoices")
        cur.fetchone()
    return conn


def reachable(estate: Estate, database: str) -> str | None:
    """None if the database answers a query, else why not (what a health probe would see)."""
    try:
        with connect_scratch(estate, database=database) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        conn.close()
    except Exception as exc:
        return str(exc).strip().splitlines()[0][:200]
    return None


# -- stats ---------------------------------------------------------------------------------------------


def connect_scratch(estate: Estate, *, database: str | None = None, autocommit: bool = False) -> Any:
    """A psycopg2 connection to the scratch server (verification's scratch connection)."""
    import psycopg2
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from dr_automation.verification.settings import settings

    c = PostgresHook.get_connection(settings(estate).scratch_connection)
    conn = psycopg2.connect(
        host=c.host,
        port=c.port or 5432,
        user=c.login,
        password=c.password,
        dbname=database or c.schema or "postgres",
        connect_timeout=10,
        application_name="dr-drill",
    )
    conn.autocommit = autocommit
    return conn


def covered_query(schema: str, table: str, key: str) -> str:
    """The table as a derived table without the rows whose `key` is in %s (rows the backup lacks)."""
    from dr_toolbox.pg import quote_ident

    return (
        f"(SELECT * FROM {quote_ident(schema)}.{quote_ident(table)} WHERE NOT ({quote_ident(key)} = ANY(%s)))"
    )


def table_stats(
    ctx: DrillContext, database: str, *, excluding: Mapping[str, Sequence[int]] | None = None
) -> dict[str, dict[str, Any]]:
    """Row count and checksum per table in one REPEATABLE READ snapshot, by the toolbox's own query
    (so they compare with a backup's recorded stats). `excluding` leaves out rows by id (table ->
    ids), e.g. the rows written after the backup, to check only the rows the backup covers."""
    from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

    from dr_toolbox.pg import display_name, list_tables, prepare_stats_session, primary_key, stats_query
    from dr_toolbox.pg import table_stats as toolbox_stats

    excluding = {k: list(v) for k, v in (excluding or {}).items() if v}
    conn = connect_scratch(ctx.estate, database=database)
    try:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        cur = conn.cursor()
        tables = list_tables(cur)
        plain = [(s, t) for s, t in tables if display_name(s, t) not in excluding]
        out = toolbox_stats(cur, plain)
        prepare_stats_session(cur)
        for schema, table in tables:
            name = display_name(schema, table)
            if name not in excluding:
                continue
            key = primary_key(cur, schema, table)
            if len(key) != 1:
                raise DrillError(f"excluding[{name!r}]: the table needs a one-column primary key")
            cur.execute(
                stats_query(key).format(table=covered_query(schema, table, key[0][0])), (excluding[name],)
            )
            rows, checksum = cur.fetchone()
            out[name] = {"rows": int(rows), "checksum": checksum}
        conn.rollback()
    finally:
        conn.close()
    return dict(sorted(out.items()))


def compare(recorded: Mapping[str, Any], actual: Mapping[str, Any]) -> dict[str, Any]:
    """Integrity of `actual` against the backup's recorded stats: the share of recorded tables that
    match exactly, and each mismatch's reason (the toolbox's comparison)."""
    from dr_toolbox.dbops import compare_stats

    checks, mismatches = compare_stats(dict(recorded), dict(actual))
    matched = sum(1 for c in checks if c["ok"] and c["name"][6:] in recorded)
    return {
        "integrity_score": round(matched / len(recorded), 4) if recorded else 0.0,
        "tables": len(recorded),
        "matched": matched,
        "mismatched_tables": sorted({m["table"] for m in mismatches}),
        "mismatches": mismatches,
    }


# -- writes and reads -------------------------------------------------------------------------------------


def check_bounds(seconds: float, rate_per_second: float) -> None:
    if not 0 < seconds <= MAX_WRITE_SECONDS:
        raise DrillError(f"seconds: must be in (0, {MAX_WRITE_SECONDS:.0f}], got {seconds}")
    if not 0 < rate_per_second <= MAX_WRITE_RATE:
        raise DrillError(f"rate_per_second: must be in (0, {MAX_WRITE_RATE:.0f}], got {rate_per_second}")


def write_rows(
    ctx: DrillContext, database: str, *, seconds: float = 4.0, rate_per_second: float = 25.0
) -> dict[str, Any]:
    """A bounded writer: new invoices, one commit each, for `seconds`, like the application would.
    Returns the ids written with the first and last write time (epoch seconds, the server's clock)."""
    check_bounds(seconds, rate_per_second)
    rng = random.Random(ctx.drill_id)
    conn = connect_scratch(ctx.estate, database=database, autocommit=True)
    ids: list[int] = []
    times: list[float] = []
    errors: list[str] = []
    try:
        cur = conn.cursor()
        cur.execute("SELECT id FROM tenants ORDER BY id")
        tenants = [row[0] for row in cur.fetchall()]
        if not tenants:
            raise DrillError(f"{database}: no tenants to write invoices for")
        start = time.monotonic()
        next_at = start
        while time.monotonic() - start < seconds:
            try:
                cur.execute(
                    f"INSERT INTO {WRITER_TABLE} (tenant_id, amount_cents, issued_at, paid) "
                    "VALUES (%s, %s, clock_timestamp(), false) RETURNING id, extract(epoch FROM issued_at)",
                    (rng.choice(tenants), rng.randint(500, 250000)),
                )
                row_id, at = cur.fetchone()
                ids.append(int(row_id))
                times.append(float(at))
            except Exception as exc:  # counted: a write the database refused is not a lost write
                errors.append(str(exc).splitlines()[0][:200])
            next_at += 1.0 / rate_per_second
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        conn.close()
    return {
        "table": WRITER_TABLE,
        "ids": ids,
        "rows": len(ids),
        "first_at": min(times) if times else None,
        "last_at": max(times) if times else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def corrupt_rows(ctx: DrillContext, database: str, *, exclude: Sequence[int], rows: int) -> list[int]:
    """Silent corruption: the amounts of `rows` invoices that existed at backup time (not among
    `exclude`, the rows written since) changed in place. Only a drill database can be corrupted."""
    if not database.startswith(ctx.database_name):
        raise DrillError(f"database: {database!r} is not the drill's (must start with {ctx.database_name})")
    if rows <= 0:
        raise DrillError(f"rows: must be positive, got {rows}")
    conn = connect_scratch(ctx.estate, database=database, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"UPDATE {WRITER_TABLE} SET amount_cents = amount_cents + 1 WHERE id IN ("
                f"SELECT id FROM {WRITER_TABLE} WHERE NOT (id = ANY(%s)) ORDER BY id LIMIT %s) RETURNING id",
                (list(exclude), rows),
            )
            changed = sorted(int(r[0]) for r in cur.fetchall())
    finally:
        conn.close()
    if not changed:
        raise DrillError(f"{database}: no {WRITER_TABLE} rows from the backup to corrupt")
    return changed


def rows_present(ctx: DrillContext, database: str, table: str, ids: Sequence[int]) -> int:
    """How many of the given ids the table holds."""
    from dr_toolbox.pg import quote_ident

    conn = connect_scratch(ctx.estate, database=database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {quote_ident(table)} WHERE id = ANY(%s)", (list(ids),))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def data_lost(writes: Mapping[str, Any], present: int, taken_at: str) -> dict[str, Any]:
    """Rows written after the backup that the recovered database lacks, and the minutes of writes
    they span from the backup (the writes are the rows the writer committed)."""
    written = int(writes.get("rows") or 0)
    lost = max(0, written - present)
    taken = parse_time(taken_at)
    last = writes.get("last_at")
    minutes = round(max(0.0, (last - taken)) / 60, 4) if lost and last is not None else 0.0
    return {"rows_written": written, "rows_lost": lost, "minutes_lost": minutes}


def parse_time(value: str | float) -> float:
    """Epoch seconds from an ISO timestamp (naive means UTC) or a number."""
    if isinstance(value, int | float):
        return float(value)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share in (0, 1]) of the values."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-share * len(ordered) // 1))))
    return ordered[rank - 1]


def query_performance(
    ctx: DrillContext, database: str, *, queries: int = 50, seconds: float = 2.0
) -> dict[str, Any]:
    """Latency (p50/p95 of `queries` real reads) and throughput (reads per second over `seconds`)
    of the recovered database, one connection, as the application would ask it."""
    check_bounds(seconds, 1.0)
    rng = random.Random(ctx.drill_id + database)
    conn = connect_scratch(ctx.estate, database=database, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SELECT id FROM tenants ORDER BY id")
        tenants = [row[0] for row in cur.fetchall()] or [0]
        latencies = []
        for _ in range(max(1, queries)):
            t0 = time.perf_counter()
            cur.execute(BENCH_QUERY, (rng.choice(tenants),))
            cur.fetchall()
            latencies.append((time.perf_counter() - t0) * 1000)
        done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            cur.execute(BENCH_QUERY, (rng.choice(tenants),))
            cur.fetchall()
            done += 1
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    return {
        "queries": len(latencies),
        "latency_ms_p50": round(percentile(latencies, 0.5), 3),
        "latency_ms_p95": round(percentile(latencies, 0.95), 3),
        "latency_ms_mean": round(statistics.fmean(latencies), 3),
        "throughput_qps": round(done / elapsed, 1),
        "throughput_window_seconds": round(elapsed, 3),
    }


# -- Kubernetes leftovers -----------------------------------------------------------------------------------


def delete_drill_pods(ctx: DrillContext) -> list[str]:
    """Delete the drill's pods and Secrets (label ``dr-automation/drill=<drill id>``) in the pod
    namespace; returns those still there."""
    from dr_automation.restore import kube

    client = kube.api_client(ctx.estate)
    namespace = ctx.estate.kubernetes["pod_namespace"]
    left = []
    for plural in ("pods", "secrets"):
        path = kube.collection("v1", plural, namespace)
        query = f"{path}?labelSelector={DRILL_LABEL}%3D{ctx.drill_id}"
        for item in (kube.call(client, "GET", query) or {}).get("items") or []:
            name = item["metadata"]["name"]
            try:
                kube.call(client, "DELETE", f"{path}/{name}")
            except kube.KubeError as exc:
                if " 404 " not in str(exc):
                    raise
        left += [
            f"{plural[:-1]} {namespace}/{i['metadata']['name']}"
            for i in (kube.call(client, "GET", query) or {}).get("items") or []
        ]
    return left


def clean_up(ctx: DrillContext) -> list[str]:
    """Everything a database drill made, found from its id: databases, S3 objects, pods/Secrets.
    Each part is attempted even if another fails; returns what remains (or could not be checked)."""
    remaining: list[str] = []
    for what, fn in (
        ("databases", lambda: [f"database {n}" for n in drop_test_databases(ctx)]),
        ("objects", lambda: delete_drill_objects(ctx)),
        ("kubernetes", lambda: delete_drill_pods(ctx)),
    ):
        try:
            remaining += fn()
        except Exception as exc:
            remaining.append(f"{what}: not checked ({type(exc).__name__}: {str(exc)[:200]})")
    log.info("drill %s cleanup: %s", ctx.drill_id, json.dumps(remaining) if remaining else "nothing left")
    return remaining


# -- the steps both database scenarios share ---------------------------------------------------------------

# Every AWS call a database drill's steps make (its IAM policy); the pods' own calls are the toolbox's.
AWS_ACTIONS: tuple[str, ...] = (
    "s3:ListObjectsV2",
    "s3:GetObject",
    "s3:HeadObject",
    "s3:RestoreObject",
    "s3:CopyObject",
    "s3:PutObjectTagging",
    "s3:PutObject",
    "s3:ListObjectVersions",
    "s3:DeleteObjects",
)
SIMULATED = (
    "the test database lives on the scratch PostgreSQL server (a real database restored from a real dump), "
    "not on a separate RDS instance",
    "toolbox pods are local processes run by the Kubernetes API stand-in",
    "S3 is the AWS emulator",
)
WRITE_SECONDS = 4.0


def setup_from_backup(ctx: DrillContext, *, write_seconds: float = WRITE_SECONDS) -> dict[str, Any]:
    """The latest primary backup copied under the drill's prefix, a test database restored from
    it by a pod, then real writes into it (the rows a later restore will lose)."""
    found = latest_backup(ctx.estate)
    ctx.mark("backup_taken", parse_time(found["taken_at"]))
    backup = copy_backup(ctx, found)
    created = create_test_database(ctx, backup)
    writes = write_rows(ctx, created["database"], seconds=write_seconds)
    if not writes["rows"]:
        raise DrillError(f"the writer could not write into {created['database']}: {writes['first_error']}")
    log.info(
        "drill %s: %s restored from %s/%s in %.1fs; %d rows written",
        ctx.drill_id,
        created["database"],
        backup["tier"],
        backup["backup_id"],
        created["restore_seconds"],
        writes["rows"],
    )
    return {"backup": backup, "database": created["database"], "created": created, "writes": writes}


def apply_fault(ctx: DrillContext) -> dict[str, Any]:
    """With the forced fault remove_backup, the drill's backup copy is deleted now (after setup)."""
    if ctx.fault != "remove_backup":
        return {}
    return {"fault_removed": remove_backup_copy(ctx, ctx.state["backup"])}


def restore_test_database(ctx: DrillContext) -> dict[str, Any]:
    """Recreate the test database from the drill's backup copy (the pod); marks restore start/end."""
    ctx.mark("restore_started")
    recovered = create_test_database(ctx, ctx.state["backup"])
    ctx.mark("restored", recovered["finished_at"])
    return {"recovered": recovered}


def verify_against_backup(ctx: DrillContext) -> dict[str, Any]:
    """The recovered database's table stats against the backup's recorded stats, and which of the
    rows written after the backup it still holds; marks ``verified``."""
    database = ctx.state["database"]
    problem = reachable(ctx.estate, database)
    if problem:
        raise DrillError(f"the recovered database {database} does not answer: {problem}")
    verified = compare(ctx.state["backup"]["stats"], table_stats(ctx, database))
    ctx.mark("verified")
    writes = ctx.state["writes"]
    present = rows_present(ctx, database, writes["table"], writes["ids"])
    return {"verified": verified, "writes_present": present}


def measured(ctx: DrillContext, incident: str, figures: Mapping[str, Any]) -> dict[str, Any]:
    """A database drill's result figures: RTO from the `incident` mark (failure, corruption) to
    verified, RPO from the backup's snapshot to the incident, the phases, data lost from the writer's
    rows, integrity from the table stats; plus the scenario's own `figures`."""
    marks = ctx.state["marks"]
    backup = ctx.state["backup"]
    lost = data_lost(ctx.state["writes"], int(ctx.state["writes_present"]), backup["taken_at"])
    return {
        "rto_seconds": ctx.since(incident, "verified"),
        "rpo_seconds": round(marks[incident] - marks["backup_taken"], 3),
        "integrity_score": ctx.state["verified"]["integrity_score"],
        "phases": {
            "detect": ctx.since(incident, "detected"),
            "restore": ctx.since("restore_started", "restored"),
            "verify": ctx.since("restored", "verified"),
        },
        "figures": {
            **lost,
            "backup": f"{backup['tier']}/{backup['backup_id']}",
            "backup_taken_at": backup["taken_at"],
            "backup_copy": backup["url"],
            "test_database_restore_seconds": ctx.state["created"]["restore_seconds"],
            "recovery_restore_seconds": ctx.state["recovered"]["restore_seconds"],
            "tables_checked": ctx.state["verified"]["tables"],
            "tables_matching": ctx.state["verified"]["matched"],
            **figures,
        },
        "failures": [f"table {m['table']}: {m['reason']}" for m in ctx.state["verified"]["mismatches"]],
    }


class DatabaseDrill:
    """The steps the database scenarios share; each scenario adds its own failure (``inject``) and
    figures (``measure``)."""

    name = ""
    simulated = SIMULATED

    def setup(self, ctx: DrillContext) -> Mapping[str, Any]:
        return setup_from_backup(ctx)

    def recover(self, ctx: DrillContext) -> Mapping[str, Any]:
        return restore_test_database(ctx)

    def verify(self, ctx: DrillContext) -> Mapping[str, Any]:
        return verify_against_backup(ctx)

    def cleanup(self, ctx: DrillContext) -> list[str]:
        return clean_up(ctx)
