"""db-dump, db-stats, db-restore and db-verify.

The dump's stats are computed inside the same REPEATABLE READ snapshot that pg_dump imports
(`pg_export_snapshot()` + `pg_dump --snapshot`), so "rows/checksum per table" describe exactly what is in
the dump even while the application keeps writing. Verification restores into a throwaway database and
compares against those stats; the throwaway database is dropped in a `finally`, whatever happens.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from dr_toolbox import __version__
from dr_toolbox.errors import Terminated, ToolboxError, UsageError
from dr_toolbox.pg import (
    IDENT_RE,
    DbTarget,
    connect,
    database_exists,
    list_tables,
    parse_tables,
    pg_binary,
    pg_error,
    quote_ident,
    resolve_target,
    run_tool,
    table_stats,
)
from dr_toolbox.redact import redact
from dr_toolbox.storage import (
    SHA256_RE,
    Location,
    describe_encryption,
    download,
    encryption_args,
    head,
    parse_location,
    put_json,
    read_json,
    sha256_file,
    upload_file,
)

log = logging.getLogger("dr_toolbox")

STATS_FORMAT = "dr-toolbox-stats/1"
STATS_SUFFIX = ".stats.json"
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_labels(values: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError("--label", f"{item!r} is not KEY=VALUE")
        if not _LABEL_KEY_RE.match(key):
            raise UsageError("--label", f"key {key!r} must be 1-128 chars of letters, digits and _.:/-")
        if len(value) > 256:
            raise UsageError("--label", f"value for {key!r} is longer than 256 characters")
        if key in labels:
            raise UsageError("--label", f"key {key!r} given more than once")
        labels[key] = value
    if len(labels) > 10:
        raise UsageError("--label", "at most 10 labels (S3 allows 10 tags per object)")
    return labels


def parse_sha256(value: str | None, argument: str) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not SHA256_RE.match(value):
        raise UsageError(argument, "must be 64 hexadecimal characters (a SHA-256 digest)")
    return value


def _isoformat(value: Any) -> str:
    return value.astimezone(UTC).isoformat() if hasattr(value, "astimezone") else str(value)


# --------------------------------------------------------------------------------------------- dump


def db_dump(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    out = parse_location(args.out, "--out")
    tables = parse_tables(args.tables)
    labels = parse_labels(args.label)
    if not out.is_s3 and args.kms_key_id:
        raise UsageError("--kms-key-id", "only applies to s3:// locations (--out is a local path)")
    if not out.is_s3 and args.storage_class:
        raise UsageError("--storage-class", "only applies to s3:// locations (--out is a local path)")
    if out.raw.endswith(STATS_SUFFIX):
        raise UsageError("--out", f"must not end with {STATS_SUFFIX} (reserved for the stats sidecar)")
    target = resolve_target(args.dsn_env)
    started_at = utcnow_iso()
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="dr-dump-")
    try:
        dump_path = os.path.join(workdir, "dump.pgdump")
        snap = _dump_in_snapshot(target, tables, dump_path, workdir)
        sha, size = sha256_file(dump_path)
        log.info("dump written: %d bytes, sha256 %s", size, sha)
        enc = encryption_args(args.kms_key_id)
        metadata = {
            "sha256": sha,
            "tables": str(len(snap["tables"])),
            "snapshot-time": snap["snapshot_time"],
            "wal-lsn": snap["wal_lsn"],
            "format": "pg_dump-custom",
            "toolbox-version": __version__,
        }
        log.info("uploading dump to %s", out)
        upload_file(
            dump_path, out, encryption=enc, storage_class=args.storage_class, metadata=metadata, tags=labels
        )
        stats_loc = out.with_suffix(STATS_SUFFIX)
        sidecar = {
            "format": STATS_FORMAT,
            "location": out.raw,
            "sha256": sha,
            "size_bytes": size,
            "database": target.dbname,
            "tables": snap["tables"],
            "snapshot_time": snap["snapshot_time"],
            "wal_lsn": snap["wal_lsn"],
            "server_version": snap["server_version"],
            "labels": labels,
            "created_at": utcnow_iso(),
            "toolbox_version": __version__,
        }
        put_json(sidecar, stats_loc, encryption=enc)
        log.info("stats sidecar written to %s", stats_loc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "location": out.raw,
        "stats_location": stats_loc.raw,
        "size_bytes": size,
        "sha256": sha,
        "tables": snap["tables"],
        "snapshot_time": snap["snapshot_time"],
        "wal_lsn": snap["wal_lsn"],
        "database": target.dbname,
        "server_version": snap["server_version"],
        "encryption": describe_encryption(enc, out),
        "storage_class": args.storage_class or ("STANDARD" if out.is_s3 else None),
        "labels": labels,
        "started_at": started_at,
        "duration_seconds": round(time.monotonic() - t0, 3),
    }
    return result, 0


def _dump_in_snapshot(
    target: DbTarget, tables: list[str] | None, dump_path: str, workdir: str
) -> dict[str, Any]:
    """Export a snapshot, run pg_dump on it and compute the stats in it while pg_dump runs."""
    import psycopg2
    from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

    conn = connect(target)
    proc: subprocess.Popen[bytes] | None = None
    try:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        cur = conn.cursor()
        try:
            cur.execute(
                "SELECT pg_export_snapshot(), now(), "
                "CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, "
                "current_setting('server_version')"
            )
            snapshot_id, snap_time, wal_lsn, server_version = cur.fetchone()
            resolved = list_tables(cur, tables)
        except psycopg2.Error as exc:
            raise pg_error(exc, "export snapshot") from exc
        log.info(
            "snapshot %s exported at %s (wal lsn %s), %d tables",
            snapshot_id,
            snap_time,
            wal_lsn,
            len(resolved),
        )
        cmd = [
            pg_binary("pg_dump"),
            "--format=custom",
            f"--snapshot={snapshot_id}",
            "--no-password",
            f"--file={dump_path}",
        ]
        dsn = target.dsn()
        if dsn:
            cmd.append(f"--dbname={dsn}")
        for schema, table in resolved if tables else []:
            cmd += ["--table", f"{quote_ident(schema)}.{quote_ident(table)}"]
        errpath = os.path.join(workdir, "pg_dump.stderr")
        with open(errpath, "wb") as errfh:
            try:
                proc = subprocess.Popen(cmd, env=target.child_env(), stdout=subprocess.DEVNULL, stderr=errfh)
            except FileNotFoundError as exc:
                raise ToolboxError(f"pg_dump: {cmd[0]} not found (install the PostgreSQL client)") from exc
            try:
                stats = table_stats(cur, resolved)
            except psycopg2.Error as exc:
                raise pg_error(exc, "compute table stats") from exc
            rc = proc.wait()
            proc = None
        with open(errpath, encoding="utf-8", errors="replace") as fh:
            stderr = fh.read().strip()
        for line in stderr.splitlines()[-20:]:
            log.info("pg_dump: %s", redact(line))
        if rc != 0:
            tail = " | ".join(stderr.splitlines()[-3:])
            raise ToolboxError(f"pg_dump failed (exit {rc}): {redact(tail)}")
        conn.rollback()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        conn.close()
    return {
        "tables": stats,
        "snapshot_time": _isoformat(snap_time),
        "wal_lsn": str(wal_lsn),
        "server_version": server_version,
    }


# -------------------------------------------------------------------------------------------- stats


def db_stats(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    tables = parse_tables(args.tables)
    target = resolve_target(args.dsn_env)
    t0 = time.monotonic()
    result = live_stats(target, tables)
    result["duration_seconds"] = round(time.monotonic() - t0, 3)
    return result, 0


def live_stats(target: DbTarget, tables: list[str] | None = None) -> dict[str, Any]:
    """Stats of a live database, all tables read in one REPEATABLE READ snapshot."""
    import psycopg2
    from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

    conn = connect(target)
    try:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        cur = conn.cursor()
        try:
            cur.execute("SELECT now(), current_database()")
            snap_time, dbname = cur.fetchone()
            stats = table_stats(cur, list_tables(cur, tables))
        except psycopg2.Error as exc:
            raise pg_error(exc, "compute table stats") from exc
        conn.rollback()
    finally:
        conn.close()
    return {"database": dbname, "tables": stats, "snapshot_time": _isoformat(snap_time)}


# ------------------------------------------------------------------------------------------ restore


def expected_checksums(
    loc: Location, explicit: str | None, sidecar: dict[str, Any] | None
) -> list[tuple[str, str]]:
    """Every independent record of what the artifact's SHA-256 should be; all must agree."""
    sources: list[tuple[str, str]] = []
    if explicit:
        sources.append(("--expect-sha256", explicit))
    meta_sha = (head(loc).get("Metadata") or {}).get("sha256")
    if meta_sha:
        sources.append(("object metadata", meta_sha.lower()))
    if sidecar and isinstance(sidecar.get("sha256"), str):
        sources.append(("stats sidecar", sidecar["sha256"].lower()))
    return sources


def verify_sha256(actual: str, sources: list[tuple[str, str]], loc: Location) -> list[str]:
    """Reasons for refusal (empty when every recorded digest matches the downloaded bytes)."""
    if not sources:
        return [
            f"sha256 unknown for {loc}: no --expect-sha256, no sha256 object metadata and no stats sidecar"
        ]
    return [
        f"sha256 mismatch against {src}: expected {want}, downloaded object has {actual}"
        for src, want in sources
        if want != actual
    ]


def _try_sidecar(loc: Location) -> dict[str, Any] | None:
    try:
        doc = read_json(loc.with_suffix(STATS_SUFFIX))
    except ToolboxError:
        return None
    return doc if isinstance(doc, dict) else None


def pg_restore(path: str, target: DbTarget, *, clean: bool = False) -> None:
    cmd = [
        pg_binary("pg_restore"),
        "--no-owner",
        "--no-privileges",
        "--exit-on-error",
        "--single-transaction",
        "--no-password",
    ]
    if clean:
        cmd += ["--clean", "--if-exists"]
    # Without --dbname pg_restore would print SQL instead of restoring: always name the database.
    dsn = target.dsn() or (target.with_dbname(target.dbname).dsn() if target.dbname else "")
    if not dsn:
        raise ToolboxError("pg_restore: no target database (set --dsn-env or PGDATABASE)")
    cmd.append(f"--dbname={dsn}")
    cmd.append(path)
    run_tool(cmd, target, f"pg_restore into {target.describe()}")


def create_database(target: DbTarget, name: str) -> None:
    import psycopg2

    conn = connect(target, autocommit=True)
    try:
        cur = conn.cursor()
        if database_exists(cur, name):
            raise ToolboxError(
                f"database {name} already exists on {target.describe()}: refusing to restore into it"
            )
        cur.execute(f"CREATE DATABASE {quote_ident(name)} TEMPLATE template0")
        log.info("created database %s", name)
    except psycopg2.Error as exc:
        raise pg_error(exc, f"create database {name}") from exc
    finally:
        conn.close()


def drop_database(target: DbTarget, name: str) -> bool:
    """Drop `name` (terminating its sessions); returns True once it is verifiably gone."""
    import psycopg2

    conn = connect(target, autocommit=True)
    try:
        cur = conn.cursor()
        try:
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        except psycopg2.errors.SyntaxError:  # servers before 13 have no WITH (FORCE)
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}")
        gone = not database_exists(cur, name)
    except psycopg2.Error as exc:
        log.error("could not drop database %s: %s", name, redact(str(exc)))
        return False
    finally:
        conn.close()
    log.info("dropped database %s", name)
    return gone


def db_restore(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    loc = parse_location(args.from_location, "--from")
    expect = parse_sha256(args.expect_sha256, "--expect-sha256")
    new_db = args.create_database
    if new_db is not None and not IDENT_RE.match(new_db):
        raise UsageError(
            "--create-database", f"{new_db!r} is not a plain database name ([A-Za-z_][A-Za-z0-9_$]*, max 63)"
        )
    if new_db is not None and args.clean:
        raise UsageError("--clean", "makes no sense with --create-database (the new database is empty)")
    target = resolve_target(args.dsn_env)
    started_at = utcnow_iso()
    t0 = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="dr-restore-")
    try:
        sources = expected_checksums(loc, expect, _try_sidecar(loc))
        path = os.path.join(workdir, "dump.pgdump")
        log.info("downloading %s", loc)
        sha, size = download(loc, path)
        problems = verify_sha256(sha, sources, loc)
        if problems:
            raise ToolboxError("refusing to restore: " + "; ".join(problems))
        log.info("sha256 verified against %s", ", ".join(src for src, _ in sources))
        dest = target
        if new_db:
            create_database(target, new_db)
            dest = target.with_dbname(new_db)
        try:
            pg_restore(path, dest, clean=args.clean)
        except BaseException:
            if new_db:
                log.error("restore failed: dropping the half-restored database %s", new_db)
                drop_database(target, new_db)
            raise
        after = live_stats(dest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "location": loc.raw,
        "database": after["database"],
        "created_database": bool(new_db),
        "sha256": sha,
        "size_bytes": size,
        "sha256_verified_against": [src for src, _ in sources],
        "tables": after["tables"],
        "started_at": started_at,
        "duration_seconds": round(time.monotonic() - t0, 3),
    }, 0


# ------------------------------------------------------------------------------------------- verify


def compare_stats(
    expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-table checks and the mismatches among them, each with an exact reason."""
    checks: list[dict[str, Any]] = []
    mismatches: list[dict[str, Any]] = []
    for table in sorted(expected):
        want = expected[table]
        got = actual.get(table)
        reasons: list[str] = []
        if got is None:
            reasons.append(f"table {table} is missing from the restored database")
        else:
            if want.get("rows") != got.get("rows"):
                reasons.append(f"row count differs: recorded {want.get('rows')}, restored {got.get('rows')}")
            if want.get("checksum") != got.get("checksum"):
                reasons.append(
                    f"checksum differs: recorded {want.get('checksum')}, restored {got.get('checksum')}"
                )
        check = {"name": f"table:{table}", "ok": not reasons, "expected": want, "actual": got}
        if reasons:
            check["reason"] = "; ".join(reasons)
            mismatches.extend({"table": table, "reason": r} for r in reasons)
        checks.append(check)
    for table in sorted(set(actual) - set(expected)):
        reason = f"table {table} is in the restored database but not in the recorded stats"
        checks.append(
            {
                "name": f"table:{table}",
                "ok": False,
                "expected": None,
                "actual": actual[table],
                "reason": reason,
            }
        )
        mismatches.append({"table": table, "reason": reason})
    return checks, mismatches


def scratch_name() -> str:
    return f"dr_verify_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(4)}"


def db_verify(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    loc = parse_location(args.from_location, "--from")
    stats_loc = parse_location(args.stats, "--stats") if args.stats else loc.with_suffix(STATS_SUFFIX)
    scratch = getattr(args, "scratch_database", None) or scratch_name()
    if not IDENT_RE.match(scratch):
        raise UsageError(
            "--scratch-database",
            f"{scratch!r} is not a plain database name ([A-Za-z_][A-Za-z0-9_$]*, max 63)",
        )
    target = resolve_target(args.dsn_env)
    started_at = utcnow_iso()
    t0 = time.monotonic()
    recorded = read_json(stats_loc)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("tables"), dict):
        raise ToolboxError(f"stats {stats_loc}: not a dr-toolbox stats document (no 'tables' object)")
    checks: list[dict[str, Any]] = []
    mismatches: list[dict[str, Any]] = []
    created = False
    dropped = True
    workdir = tempfile.mkdtemp(prefix="dr-verify-")
    try:
        path = os.path.join(workdir, "dump.pgdump")
        sha, size, stage = None, None, "sha256"
        try:
            sources = expected_checksums(loc, None, recorded)
            log.info("downloading %s", loc)
            sha, size = download(loc, path)
            problems = verify_sha256(sha, sources, loc)
        except Terminated:
            raise
        except ToolboxError as exc:
            sources, problems, stage = [], [redact(str(exc))], "download"
        checks.append(
            {"name": stage, "ok": not problems, "actual": sha, "sources": [s for s, _ in sources]}
            | ({"reason": "; ".join(problems)} if problems else {})
        )
        mismatches.extend({"table": None, "check": stage, "reason": p} for p in problems)
        if not problems:
            try:
                create_database(target, scratch)
                created = True
                pg_restore(path, target.with_dbname(scratch))
                checks.append({"name": "restore", "ok": True, "database": scratch})
                actual = live_stats(target.with_dbname(scratch))["tables"]
                table_checks, table_mismatches = compare_stats(recorded["tables"], actual)
                checks.extend(table_checks)
                mismatches.extend(table_mismatches)
            except Terminated:
                raise
            except ToolboxError as exc:
                reason = redact(str(exc))
                checks.append({"name": "restore", "ok": False, "reason": reason})
                mismatches.append({"table": None, "check": "restore", "reason": reason})
            finally:
                if created:
                    dropped = drop_database(target, scratch)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not dropped:
        mismatches.append(
            {"table": None, "check": "cleanup", "reason": f"scratch database {scratch} was NOT dropped"}
        )
    passed = not mismatches
    log.info(
        "verification %s: %d checks, %d mismatches",
        "PASSED" if passed else "FAILED",
        len(checks),
        len(mismatches),
    )
    result = {
        "passed": passed,
        "location": loc.raw,
        "stats_location": stats_loc.raw,
        "sha256": sha,
        "size_bytes": size,
        "recorded_snapshot_time": recorded.get("snapshot_time"),
        "checks": checks,
        "mismatches": mismatches,
        "scratch_database": scratch,
        "scratch_created": created,
        "dropped": dropped,
        "started_at": started_at,
        "duration_seconds": round(time.monotonic() - t0, 3),
    }
    if not passed:
        result["error"] = "verification failed: " + "; ".join(m["reason"] for m in mismatches[:5])
    return result, 0 if passed else 1
