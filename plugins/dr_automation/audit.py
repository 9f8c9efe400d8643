"""The bundle's one audit trail: who was told what, and which traffic or destructive step ran, when.

Every notification delivery (and later every failover, failback and restore step) writes one row to
``dr_audit_events`` in the audit database, so an incident review can answer "who knew, when, and
what did we do" from one table. The database is reached through an Airflow connection (the estate's
``connections.audit_database``) or a plain libpq DSN in tests and tools.

Rows never hold secrets: ``target`` is an address (email, topic name, channel), never a URL with a
token, and every string in ``detail`` goes through the toolbox's redaction before it is written.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

TABLE = "dr_audit_events"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id           bigserial PRIMARY KEY,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    event_type   text NOT NULL,
    incident_id  text,
    level        integer,
    actor        text,
    channel      text,
    recipient    text,
    target       text,
    status       text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    dag_id       text,
    run_id       text,
    task_id      text
);
CREATE INDEX IF NOT EXISTS {TABLE}_incident_idx ON {TABLE} (incident_id, recorded_at);
CREATE INDEX IF NOT EXISTS {TABLE}_type_idx ON {TABLE} (event_type, recorded_at);
"""
_COLUMNS = (
    "id",
    "recorded_at",
    "event_type",
    "incident_id",
    "level",
    "actor",
    "channel",
    "recipient",
    "target",
    "status",
    "detail",
    "dag_id",
    "run_id",
    "task_id",
)
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_STATUS = re.compile(r"^[a-z][a-z_]{0,31}$")
_MAX_TEXT = 1000

# Schemas already created in this process, per target: one CREATE per process, not per row.
_ensured: set[str] = set()
_ensured_lock = threading.Lock()


class AuditError(RuntimeError):
    """The audit log could not be written or read (the message never contains credentials)."""


class AuditInputError(ValueError):
    """An audit event is malformed; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise AuditInputError(name, f"must be a string (got {type(value).__name__})")
    if len(value) > _MAX_TEXT:
        raise AuditInputError(name, f"longer than {_MAX_TEXT} characters")
    return value


def _sqlstate(exc: BaseException) -> str | None:
    """SQLSTATE of a psycopg2 or psycopg (3) error."""
    return getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)


def _redacted(obj: Any) -> Any:
    from dr_toolbox.redact import redact_obj

    return redact_obj(obj)


class AuditLog:
    """Append-only audit events in PostgreSQL, through an Airflow connection id or a libpq DSN.

    The table is created on first use (idempotently, under an advisory lock so concurrent tasks do
    not race on CREATE TABLE). Hooks and drivers are imported inside methods: DAG files import this
    package at parse time.
    """

    def __init__(self, conn_id: str | None = None, *, dsn: str | None = None) -> None:
        if (conn_id is None) == (dsn is None):
            raise AuditInputError("conn_id", "give exactly one of conn_id (an Airflow connection) or dsn")
        if conn_id is not None and (not isinstance(conn_id, str) or not conn_id.strip()):
            raise AuditInputError("conn_id", "must be a non-empty Airflow connection id")
        self.conn_id = conn_id
        self._dsn = dsn

    @classmethod
    def from_estate(cls, estate: Any) -> AuditLog:
        """The estate's audit database (connections.audit_database)."""
        return cls(estate.connections["audit_database"])

    def __repr__(self) -> str:  # never show the DSN: it may carry a password
        return f"AuditLog(conn_id={self.conn_id!r})" if self.conn_id else "AuditLog(dsn=<hidden>)"

    @property
    def _key(self) -> str:
        return f"conn:{self.conn_id}" if self.conn_id else f"dsn:{hash(self._dsn)}"

    def _connect(self) -> Any:
        try:
            if self._dsn is not None:
                import psycopg2

                return psycopg2.connect(self._dsn, connect_timeout=10)
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            return PostgresHook(postgres_conn_id=self.conn_id).get_conn()
        except Exception as exc:
            from dr_toolbox.redact import redact

            where = f"connection {self.conn_id!r}" if self.conn_id else "the given DSN"
            raise AuditError(f"cannot connect to the audit database ({where}): {redact(str(exc))}") from None

    def _run(self, statements: list[tuple[str, tuple[Any, ...]]], *, fetch: bool = False) -> list[dict]:
        conn = self._connect()
        try:
            for attempt in (1, 2):
                try:
                    return self._execute(conn, statements, fetch=fetch)
                except Exception as exc:
                    conn.rollback()
                    # The table vanished under a cached "already created" (a dropped and recreated
                    # database behind the same connection id): create it again, once.
                    if attempt == 1 and _sqlstate(exc) == "42P01":
                        with _ensured_lock:
                            _ensured.discard(self._key)
                        continue
                    from dr_toolbox.redact import redact

                    raise AuditError(f"audit database error: {redact(str(exc).strip())}") from exc
            raise AssertionError("unreachable")
        finally:
            conn.close()

    def _execute(
        self, conn: Any, statements: list[tuple[str, tuple[Any, ...]]], *, fetch: bool
    ) -> list[dict]:
        cur = conn.cursor()
        try:
            self._ensure(cur)
            rows: list[dict] = []
            for sql, params in statements:
                cur.execute(sql, params)
                if fetch and cur.description:
                    names = [d[0] for d in cur.description]
                    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            conn.commit()
            return rows
        finally:
            cur.close()

    def _ensure(self, cur: Any) -> None:
        with _ensured_lock:
            if self._key in _ensured:
                return
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (TABLE,))
        cur.execute(_SCHEMA)
        with _ensured_lock:
            _ensured.add(self._key)

    def ensure_schema(self) -> None:
        """Create the table and indexes if they are missing (safe to call any number of times)."""
        with _ensured_lock:
            _ensured.discard(self._key)
        self._run([])

    def record(
        self,
        event_type: str,
        *,
        status: str,
        incident_id: str | None = None,
        level: int | None = None,
        actor: str | None = None,
        channel: str | None = None,
        recipient: str | None = None,
        target: str | None = None,
        detail: Mapping[str, Any] | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
    ) -> int:
        """Append one event; returns its id. `detail` is redacted and stored as JSON."""
        if not isinstance(event_type, str) or not _EVENT_TYPE.match(event_type):
            raise AuditInputError(
                "event_type", f"must be lower-case letters, digits, '.', '_' or '-' (got {event_type!r})"
            )
        if not isinstance(status, str) or not _STATUS.match(status):
            raise AuditInputError("status", f"must be a lower-case word such as 'sent' (got {status!r})")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int)):
            raise AuditInputError("level", f"must be an integer (got {level!r})")
        if detail is not None and not isinstance(detail, Mapping):
            raise AuditInputError("detail", "must be a mapping")
        values = {
            "event_type": event_type,
            "incident_id": _text("incident_id", incident_id),
            "level": level,
            "actor": _text("actor", actor),
            "channel": _text("channel", channel),
            "recipient": _text("recipient", recipient),
            "target": _text("target", target),
            "status": status,
            "detail": json.dumps(_redacted(dict(detail or {})), default=str, sort_keys=True),
            "dag_id": _text("dag_id", dag_id),
            "run_id": _text("run_id", run_id),
            "task_id": _text("task_id", task_id),
        }
        columns = ", ".join(values)
        placeholders = ", ".join("%s::jsonb" if k == "detail" else "%s" for k in values)
        rows = self._run(
            [
                (
                    f"INSERT INTO {TABLE} ({columns}) VALUES ({placeholders}) RETURNING id",
                    tuple(values.values()),
                )
            ],
            fetch=True,
        )
        return int(rows[0]["id"])

    def events(
        self,
        incident_id: str | None = None,
        event_type: str | None = None,
        since: datetime | None = None,
        *,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Events oldest first, filtered by incident, type and time (all optional)."""
        where: list[str] = []
        params: list[Any] = []
        if incident_id is not None:
            where.append("incident_id = %s")
            params.append(incident_id)
        if event_type is not None:
            where.append("event_type = %s")
            params.append(event_type)
        if since is not None:
            if not isinstance(since, datetime):
                raise AuditInputError("since", "must be a datetime")
            where.append("recorded_at >= %s")
            params.append(since)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
            raise AuditInputError("limit", "must be an integer from 1 to 100000")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} {clause} ORDER BY recorded_at, id LIMIT {limit}"
        rows = self._run([(sql, tuple(params))], fetch=True)
        for row in rows:
            if isinstance(row.get("detail"), str):  # drivers without the jsonb adapter
                row["detail"] = json.loads(row["detail"])
        return rows


def context_ids(context: Mapping[str, Any] | None) -> dict[str, str | None]:
    """dag_id / run_id / task_id of an Airflow context (None outside a task)."""
    ids: dict[str, str | None] = {"dag_id": None, "run_id": None, "task_id": None}
    if not context:
        return ids
    ti = context.get("ti") or context.get("task_instance")
    for key in ids:
        value = getattr(ti, key, None) if ti is not None else None
        if value is None and key == "run_id":
            value = context.get("run_id")
        if value is None and key == "dag_id":
            dag = context.get("dag")
            value = getattr(dag, "dag_id", None)
        ids[key] = str(value) if value is not None else None
    return ids


def audit_step(
    estate: Any,
    event_type: str,
    status: str,
    context: Mapping[str, Any] | None = None,
    *,
    log: Any = None,
    **fields: Any,
) -> bool:
    """Record one step of a traffic-moving or destructive operation; never blocks the operation.

    An unreachable audit database at 3 a.m. must not stop a failover: the problem is logged and
    the caller carries on (the step's own result still says what happened).
    """
    try:
        AuditLog.from_estate(estate).record(event_type, status=status, **context_ids(context), **fields)
        return True
    except Exception as exc:
        if log is not None:
            log.warning("audit log unavailable for %s/%s: %s", event_type, status, exc)
        return False


def current_context() -> Mapping[str, Any] | None:
    """The running task's context, for audit rows; None outside a task (the row has no task ids)."""
    try:
        from airflow.sdk import get_current_context

        return get_current_context()
    except Exception:
        return None


def step_events(estate: Any, event_type: str, run_id: str) -> list[dict[str, Any]]:
    """This run's audit events of one type (empty when the audit log cannot be read)."""
    try:
        return [
            e for e in AuditLog.from_estate(estate).events(event_type=event_type) if e.get("run_id") == run_id
        ]
    except Exception:
        return []
