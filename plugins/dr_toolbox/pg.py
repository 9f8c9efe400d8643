"""PostgreSQL access: DSN resolution, per-table stats, and the pg_dump/pg_restore child processes.

The DSN is only ever read from an environment variable (named on the command line) or the standard
PG* variables; the password is split off and handed to children through PGPASSWORD so it never shows
up in argv (visible in `ps`) or in any log line.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dr_toolbox.errors import ToolboxError, UsageError
from dr_toolbox.redact import redact, register_secret

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger("dr_toolbox")

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
TABLE_RE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_$]{0,62}\.)?[A-Za-z_][A-Za-z0-9_$]{0,62}$")

# Output settings pinned for the stats session: a row's text form depends on them, and the dump's
# source and the restored copy must hash identically whatever the databases' own defaults are.
_STATS_SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, MDY'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)


@dataclass(frozen=True)
class DbTarget:
    """A database to connect to; `params` never contains the password."""

    params: dict[str, str]
    password: str | None = field(default=None, repr=False)
    source: str = ""

    @property
    def dbname(self) -> str:
        return self.params.get("dbname") or os.environ.get("PGDATABASE") or self.params.get("user") or ""

    def dsn(self) -> str:
        """libpq DSN without the password (safe to put in argv)."""
        from psycopg2.extensions import make_dsn

        return make_dsn(**self.params) if self.params else ""

    def with_dbname(self, dbname: str) -> DbTarget:
        return DbTarget({**self.params, "dbname": dbname}, self.password, self.source)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def describe(self) -> str:
        host = self.params.get("host") or os.environ.get("PGHOST") or "local socket"
        port = self.params.get("port") or os.environ.get("PGPORT") or "5432"
        return f"{host}:{port}/{self.dbname}"


def resolve_target(dsn_env: str | None, argument: str = "--dsn-env") -> DbTarget:
    """Build the target from the env var named by --dsn-env, or from PG* variables when not given."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import parse_dsn

    if dsn_env is None:
        register_secret(os.environ.get("PGPASSWORD"))
        return DbTarget({}, None, "PG* environment")
    if not ENV_NAME_RE.match(dsn_env):
        raise UsageError(
            argument, f"{dsn_env!r} is not an environment variable name (pass the NAME, not the DSN)"
        )
    raw = os.environ.get(dsn_env)
    if not raw:
        raise UsageError(argument, f"environment variable {dsn_env} is not set or empty")
    try:
        params = parse_dsn(raw)
    except ProgrammingError as exc:
        # The parser's message can echo the DSN: keep only its first line and redact it.
        raise UsageError(argument, f"environment variable {dsn_env} does not hold a valid DSN") from exc
    password = params.pop("password", None)
    register_secret(password)
    register_secret(raw)
    return DbTarget(params, password, f"${dsn_env}")


def connect(target: DbTarget, *, dbname: str | None = None, autocommit: bool = False) -> Any:
    import psycopg2

    params: dict[str, Any] = dict(target.params)
    if dbname:
        params["dbname"] = dbname
    if target.password:
        params["password"] = target.password
    params.setdefault("connect_timeout", "10")
    params.setdefault("application_name", "dr-toolbox")
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.Error as exc:
        raise ToolboxError(f"cannot connect to {target.describe()}: {_pg_message(exc)}") from exc
    conn.autocommit = autocommit
    return conn


def _pg_message(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))


def pg_error(exc: BaseException, action: str) -> ToolboxError:
    return ToolboxError(f"{action}: {_pg_message(exc)}")


def parse_tables(value: str | None, argument: str = "--tables") -> list[str] | None:
    """Comma-separated `table` or `schema.table` names; refuses anything that is not a plain identifier
    (these names end up in pg_dump -t patterns, where `*` and `?` would widen the dump silently)."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise UsageError(argument, "must list at least one table")
    for name in names:
        if not TABLE_RE.match(name):
            raise UsageError(argument, f"{name!r} is not a valid table name (expected table or schema.table)")
    if len(set(names)) != len(names):
        raise UsageError(argument, "lists a table more than once")
    return names


def display_name(schema: str, table: str) -> str:
    """Stats key: bare name for `public`, schema-qualified otherwise (matches the estate's table lists)."""
    return table if schema == "public" else f"{schema}.{table}"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def list_tables(cur: Any, wanted: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """User tables as (schema, table); with `wanted`, exactly those, failing on any that is missing."""
    cur.execute(
        """
        SELECT n.nspname, c.relname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%'
        ORDER BY 1, 2
        """
    )
    found = [(s, t) for s, t in cur.fetchall()]
    if wanted is None:
        return found
    by_name = {display_name(s, t): (s, t) for s, t in found}
    by_name.update({f"{s}.{t}": (s, t) for s, t in found})
    missing = [w for w in wanted if w not in by_name]
    if missing:
        raise ToolboxError(f"table(s) not found in database: {', '.join(missing)}")
    return [by_name[w] for w in wanted]


def stats_query(pk_columns: list[tuple[str, bool]]) -> str:
    """SQL for (row count, checksum) of one table, with `{table}` left to fill in.

    The checksum is md5 over the per-row md5 of each row's text, in primary-key order (collatable key
    columns compared in the "C" collation so the order does not depend on the database's locale), or in
    the order of the row hashes themselves when there is no primary key. Hashing per row keeps the
    aggregate at 32 bytes a row instead of the whole table's text.
    """
    if pk_columns:
        collate_c = ' COLLATE "C"'
        order = ", ".join(
            f"r.{quote_ident(col)}{collate_c if collatable else ''}" for col, collatable in pk_columns
        )
    else:
        order = 'md5(ROW(r.*)::text) COLLATE "C"'
    return (
        "SELECT count(*), md5(coalesce(string_agg(md5(ROW(r.*)::text), '' ORDER BY "
        + order
        + "), '')) FROM {table} AS r"
    )


def primary_key(cur: Any, schema: str, table: str) -> list[tuple[str, bool]]:
    cur.execute(
        """
        SELECT a.attname, a.attcollation <> 0
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
        WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s
        ORDER BY k.ord
        """,
        (schema, table),
    )
    return [(name, bool(coll)) for name, coll in cur.fetchall()]


def prepare_stats_session(cur: Any) -> None:
    for stmt in _STATS_SESSION_SETTINGS:
        cur.execute(stmt)


def table_stats(cur: Any, tables: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Row count and content checksum per table, in whatever snapshot `cur`'s transaction holds."""
    prepare_stats_session(cur)
    out: dict[str, dict[str, Any]] = {}
    for schema, table in tables:
        pk = primary_key(cur, schema, table)
        sql = stats_query(pk).format(table=f"{quote_ident(schema)}.{quote_ident(table)}")
        cur.execute(sql)
        rows, checksum = cur.fetchone()
        out[display_name(schema, table)] = {"rows": int(rows), "checksum": checksum}
        log.info("stats %s: %d rows, checksum %s", display_name(schema, table), rows, checksum)
    return out


def database_exists(cur: Any, name: str) -> bool:
    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    return cur.fetchone() is not None


def run_tool(args: list[str], target: DbTarget, action: str) -> None:
    """Run pg_dump/pg_restore and turn a failure into a clear, redacted error (stderr tail kept)."""
    log.info(
        "running %s",
        " ".join(redact(a) for a in args[:1] + [a for a in args[1:] if not a.startswith("--dbname")]),
    )
    try:
        proc = subprocess.run(args, env=target.child_env(), capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise ToolboxError(f"{action}: {args[0]} not found on PATH (install the PostgreSQL client)") from exc
    if proc.stderr.strip():
        for line in proc.stderr.strip().splitlines()[-20:]:
            log.info("%s: %s", os.path.basename(args[0]), redact(line))
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise ToolboxError(f"{action} failed (exit {proc.returncode}): {redact(tail)}")


def pg_binary(name: str) -> str:
    """Locate a client binary: PG_BIN_DIR if set (images with several majors), else PATH."""
    import shutil

    bin_dir = os.environ.get("PG_BIN_DIR")
    if bin_dir:
        return os.path.join(bin_dir, name)
    return shutil.which(name) or name
