"""Health history: every monitoring cycle's per-region score and checks, in ``dr_region_health``.

One home for what the monitor saw, used three ways: reports and the UI read each region's score over
time; a restarted trigger reloads its counters from the last cycle of its monitor run (so it neither
loses its place nor counts a cycle twice); and the decision step reads the evidence back.

The table lives in the audit database, reached exactly like the audit log (``dr_automation.audit``:
an Airflow connection id, or a libpq DSN in tests and tools). Calls are synchronous (psycopg2); the
trigger runs them in a worker thread. Rows never hold secrets: check details are redacted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

TABLE = "dr_region_health"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id                    bigserial PRIMARY KEY,
    recorded_at           timestamptz NOT NULL DEFAULT now(),
    checked_at            timestamptz NOT NULL,
    monitor_id            text NOT NULL,
    cycle                 integer NOT NULL,
    region                text NOT NULL,
    role                  text,
    serving               boolean NOT NULL DEFAULT false,
    score                 double precision,
    healthy               boolean NOT NULL,
    consecutive_failures  integer NOT NULL,
    checks                jsonb NOT NULL DEFAULT '[]'::jsonb,
    state                 jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    UNIQUE (monitor_id, cycle, region)
);
CREATE INDEX IF NOT EXISTS {TABLE}_region_idx ON {TABLE} (region, checked_at);
"""
_READ_COLUMNS = (
    "monitor_id",
    "cycle",
    "checked_at",
    "region",
    "role",
    "serving",
    "score",
    "healthy",
    "consecutive_failures",
    "checks",
    "state",
)


class HealthHistoryError(RuntimeError):
    """The history could not be written or read (the message never contains credentials)."""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


class HealthHistory:
    """The ``dr_region_health`` table through one persistent connection (reopened after an error)."""

    def __init__(self, conn_id: str | None = None, *, dsn: str | None = None) -> None:
        from dr_automation.audit import AuditLog

        # Same validation and connection resolving as the audit log: one database, one way in.
        self._audit = AuditLog(conn_id, dsn=dsn)
        self._conn: Any = None
        self._ensured = False
        self._lock = threading.Lock()

    @classmethod
    def from_estate(cls, estate: Any) -> HealthHistory:
        return cls(estate.connections["audit_database"])

    def __repr__(self) -> str:
        return f"HealthHistory({self._audit!r})"

    # -- plumbing ------------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None or getattr(self._conn, "closed", 0):
            from dr_automation.audit import AuditError

            try:
                self._conn = self._audit._connect()
            except AuditError as exc:
                raise HealthHistoryError(
                    str(exc).replace("audit database", "health history database")
                ) from None
            self._ensured = False
        return self._conn

    def _run(self, statements: Sequence[tuple[str, tuple[Any, ...]]], *, fetch: bool = False) -> Any:
        """Run statements in one transaction; returns the last fetch (rows as dicts) or the rowcount."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    with conn.cursor() as cur:
                        if not self._ensured:
                            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
                            cur.execute(_SCHEMA)
                        result: Any = 0
                        for sql, params in statements:
                            cur.execute(sql, params)
                            if fetch and cur.description:
                                names = [d[0] for d in cur.description]
                                result = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
                            elif not fetch:
                                result += max(cur.rowcount, 0)
                    conn.commit()
                    self._ensured = True
                    return result
                except Exception as exc:
                    self._discard()
                    if attempt == 2 or not _is_connection_error(exc):
                        from dr_toolbox.redact import redact

                        raise HealthHistoryError(
                            f"health history database error: {redact(str(exc).strip())}"
                        ) from exc
            raise AssertionError("unreachable")

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        with self._lock:
            self._discard()

    # -- writing -------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the table if it is missing (safe to call any number of times)."""
        self._ensured = False
        self._run([])

    def record_cycle(
        self, monitor_id: str, cycle: int, checked_at: datetime, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Insert one cycle (one row per region); returns how many rows were new.

        0 means another instance of the same monitor run already recorded this cycle (a trigger
        briefly running twice across a triggerer hand-over): the caller reloads instead of counting.
        """
        from dr_toolbox.redact import redact_obj

        statements = []
        for row in rows:
            statements.append(
                (
                    f"INSERT INTO {TABLE} (checked_at, monitor_id, cycle, region, role, serving, score, "
                    "healthy, consecutive_failures, checks, state) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb) "
                    "ON CONFLICT (monitor_id, cycle, region) DO NOTHING",
                    (
                        checked_at,
                        monitor_id,
                        cycle,
                        row["region"],
                        row.get("role"),
                        bool(row.get("serving", False)),
                        row.get("score"),
                        bool(row["healthy"]),
                        int(row["consecutive_failures"]),
                        json.dumps(redact_obj(list(row.get("checks", []))), default=str),
                        json.dumps(dict(row.get("state", {})), default=str),
                    ),
                )
            )
        return int(self._run(statements))

    # -- reading -------------------------------------------------------------------------------
    def load(self, monitor_id: str, *, cycles: int) -> dict[str, Any] | None:
        """The monitor run's last `cycles` cycles: ``{"cycle", "checked_at", "regions": {region:
        {"state", "recent": [records oldest first]}}}``; None when the run has recorded nothing."""
        rows = self._run(
            [
                (
                    f"SELECT {', '.join(_READ_COLUMNS)} FROM {TABLE} WHERE monitor_id = %s AND cycle > "
                    f"(SELECT coalesce(max(cycle), 0) FROM {TABLE} WHERE monitor_id = %s) - %s "
                    "ORDER BY cycle, region",
                    (monitor_id, monitor_id, max(int(cycles), 1)),
                )
            ],
            fetch=True,
        )
        if not rows:
            return None
        last = max(r["cycle"] for r in rows)
        regions: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = regions.setdefault(row["region"], {"state": {}, "recent": []})
            entry["recent"].append(
                {
                    "cycle": row["cycle"],
                    "at": row["checked_at"].isoformat(timespec="milliseconds"),
                    "score": row["score"],
                    "healthy": row["healthy"],
                    "consecutive_failures": row["consecutive_failures"],
                    "checks": _json(row["checks"]),
                }
            )
            entry["state"] = _json(row["state"])
        checked_at = max(r["checked_at"] for r in rows if r["cycle"] == last)
        return {"cycle": last, "checked_at": checked_at.timestamp(), "regions": regions}

    def scores(
        self,
        *,
        region: str | None = None,
        monitor_id: str | None = None,
        since: datetime | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Each region's score over time (oldest first), for reports and the UI."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise ValueError("limit: must be an integer from 1 to 100000")
        where, params = [], []
        for column, value in (("region", region), ("monitor_id", monitor_id)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if since is not None:
            where.append("checked_at >= %s")
            params.append(since)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._run(
            [
                (
                    f"SELECT {', '.join(_READ_COLUMNS)} FROM {TABLE} {clause} "
                    f"ORDER BY checked_at, region LIMIT {limit}",
                    tuple(params),
                )
            ],
            fetch=True,
        )
        for row in rows:
            row["checks"] = _json(row["checks"])
            row["state"] = _json(row["state"])
        return rows


def _is_connection_error(exc: BaseException) -> bool:
    """A dropped connection (database restarted, idle timeout): worth one reconnect.

    PostgresHook hands out psycopg2 or psycopg (3) connections depending on the installation."""
    kinds: list[type[BaseException]] = []
    for module in ("psycopg2", "psycopg"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        kinds += [mod.OperationalError, mod.InterfaceError]
    return isinstance(exc, tuple(kinds))
