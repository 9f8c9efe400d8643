"""Run real Airflow 3.3 components (api-server, scheduler, dag-processor, triggerer) for the sandbox.

LocalExecutor with SQLite metadata under the sandbox's state dir by default; PostgreSQL metadata by
one environment variable (DR_SANDBOX_METADATA=postgres), in a database the sandbox creates and drops.
DR_SANDBOX_EXECUTOR=celery runs the CeleryExecutor instead, as a distributed deployment does:
PostgreSQL metadata and result backend, the machine's Redis (or RabbitMQ, DR_SANDBOX_CELERY_BROKER)
as broker, and DR_SANDBOX_CELERY_WORKERS (2) workers on loopback. The sandbox's tasks go to a queue
named after it, its Redis keys carry its prefix (deleted by `down`), so sandboxes never share work.
Connections, pools and variables come from airflow_settings.yaml with the sandbox's values filled in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dr_sandbox.layout import REPO_ROOT, SandboxLayout
from dr_sandbox.processes import spawn

SETTINGS_FILE = REPO_ROOT / "airflow_settings.yaml"
METADATA_ENV = "DR_SANDBOX_METADATA"
EXECUTOR_ENV = "DR_SANDBOX_EXECUTOR"  # local (default) | celery
CELERY_WORKERS_ENV = "DR_SANDBOX_CELERY_WORKERS"
CELERY_BROKER_ENV = "DR_SANDBOX_CELERY_BROKER"  # redis (default) | rabbitmq | a broker URL
# The test suite runs several sandboxes on two cores and asserts no scheduler latency: it trades the
# 0.2 s idle loop (every failover step noticed sooner) for a 1 s one, about 7 % of a core per sandbox.
IDLE_SLEEP_ENV = "DR_SANDBOX_SCHEDULER_IDLE_SLEEP"
BROKERS = {"redis": "redis://127.0.0.1:6379/0", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}


def executor() -> str:
    """The sandbox's executor, from DR_SANDBOX_EXECUTOR; anything unknown is refused by name."""
    value = os.environ.get(EXECUTOR_ENV, "local").strip().lower() or "local"
    if value not in ("local", "celery"):
        raise ValueError(f"{EXECUTOR_ENV}: unknown executor {value!r} (expected local or celery)")
    return value


def celery_workers() -> int:
    raw = os.environ.get(CELERY_WORKERS_ENV, "2")
    if not raw.isdigit() or not 1 <= int(raw) <= 8:
        raise ValueError(f"{CELERY_WORKERS_ENV}: {raw!r} is not a worker count from 1 to 8")
    return int(raw)


def celery_broker_url() -> str:
    raw = os.environ.get(CELERY_BROKER_ENV, "redis")
    url = BROKERS.get(raw, raw)
    host = re.sub(r"^[a-z+]+://(?:[^@/]*@)?([^:/]+).*$", r"\1", url)
    if not url.startswith(("redis://", "amqp://")) or not host.startswith(("127.", "localhost")):
        raise ValueError(f"{CELERY_BROKER_ENV}: {raw!r} is not redis, rabbitmq or a loopback broker URL")
    return url


def uses_postgres() -> bool:
    """PostgreSQL metadata when asked for, and always under Celery (workers share the database)."""
    return os.environ.get(METADATA_ENV, "sqlite") == "postgres" or executor() == "celery"


def _airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def render_settings(values: Mapping[str, str], path: Path = SETTINGS_FILE) -> dict[str, Any]:
    """airflow_settings.yaml with every ${NAME} filled; an unfilled placeholder is an error."""
    text = path.read_text()
    missing = sorted({m for m in re.findall(r"\$\{([A-Z0-9_]+)\}", text) if m not in values})
    if missing:
        raise KeyError(f"{path.name}: no value for placeholders {missing}")
    text = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: str(values[m.group(1)]), text)
    return yaml.safe_load(text)["airflow"]


def connection_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """AIRFLOW_CONN_<ID> JSON env vars: every component (and task subprocess) sees the same connections."""
    env = {}
    for c in settings.get("connections", []):
        body: dict[str, Any] = {"conn_type": c["conn_type"]}
        for key, field in (
            ("conn_host", "host"),
            ("conn_port", "port"),
            ("conn_schema", "schema"),
            ("conn_login", "login"),
            ("conn_password", "password"),
        ):
            if c.get(key) not in (None, ""):
                body[field] = int(c[key]) if field == "port" else c[key]
        if c.get("conn_extra"):
            body["extra"] = c["conn_extra"]
        env[f"AIRFLOW_CONN_{c['conn_id'].upper()}"] = json.dumps(body)
    for v in settings.get("variables", []):
        env[f"AIRFLOW_VAR_{v['variable_name'].upper()}"] = str(v["variable_value"])
    return env


def metadata_url(layout: SandboxLayout) -> str:
    if uses_postgres():
        return _postgres_url(f"{layout.database_name}_airflow")
    return f"sqlite:///{layout.airflow_home / 'airflow.db'}"


def _postgres_url(database: str) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"


# SQLite allows one writer at a time; a busy machine (two cores, several Airflow processes) can hold
# the lock past sqlite3's 5-second default, and a scheduler that gets "database is locked" dies.
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60}


def _admin_connection() -> Any:
    import psycopg2

    conn = psycopg2.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    conn.autocommit = True
    return conn


def prepare_metadata_database(layout: SandboxLayout, *, template: str | None = None) -> None:
    """Fresh PostgreSQL metadata database when asked for (dropped again by `down`), empty or a copy
    of an already migrated `template`."""
    if not uses_postgres():
        return
    from psycopg2 import sql

    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            name = sql.Identifier(f"{layout.database_name}_airflow")
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            if template:
                cur.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(name, sql.Identifier(template)))
            else:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(name))
    finally:
        conn.close()


def drop_metadata_database(layout: SandboxLayout) -> None:
    from psycopg2 import sql

    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(f"{layout.database_name}_airflow")
                )
            )
    finally:
        conn.close()


def generate_credentials() -> dict[str, str]:
    """A fresh Airflow admin and fresh secrets per sandbox: never admin/admin, never a literal."""
    from cryptography.fernet import Fernet

    return {
        "username": f"dr-admin-{secrets.token_hex(3)}",
        "password": secrets.token_urlsafe(18),
        "jwt_secret": secrets.token_urlsafe(32),
        "api_secret_key": secrets.token_urlsafe(32),
        "fernet_key": Fernet.generate_key().decode(),
    }


def airflow_env(
    layout: SandboxLayout, credentials: Mapping[str, str], extra: Mapping[str, str]
) -> dict[str, str]:
    home = layout.airflow_home
    passwords = home / "simple_auth_manager_passwords.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__FERNET_KEY": credentials["fernet_key"],
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{credentials['username']}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{layout.airflow_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url(layout),
            "AIRFLOW__API__BASE_URL": layout.airflow_url,
            "AIRFLOW__API__HOST": layout.host,
            "AIRFLOW__API__PORT": str(layout.airflow_port),
            "AIRFLOW__API__SECRET_KEY": credentials["api_secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": credentials["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE": "modified_time",
            # The supervisor notices a task's exit within this interval; a short one narrows Airflow
            # 3.3's stale defer-exit race (apache/airflow#72716) for fast-resuming deferrable tasks.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "3",  # approval timeouts seen within seconds
            # A DAG file is parsed again when it changes (file_parsing_sort_mode=modified_time queues a
            # changed file at once); re-parsing unchanged files every few seconds only burns a core.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            # An idle scheduler loop sleeps this long before it sees a finished task and queues the
            # next one (default 1 s): between each pair of failover steps, during an outage.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": os.environ.get(IDLE_SLEEP_ENV, "0.2"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT / "include")]),
        }
    )
    if not uses_postgres():
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "dr_sandbox.airflow_runtime.SQLITE_CONNECT_ARGS"
    env.update(executor_env(layout))
    env.update(extra)
    return env


def executor_env(layout: SandboxLayout) -> dict[str, str]:
    """The executor's settings: LocalExecutor, or Celery with a queue and Redis key prefix of its own."""
    if executor() == "local":
        return {"AIRFLOW__CORE__EXECUTOR": "LocalExecutor"}
    database = metadata_url(layout).replace("postgresql+psycopg2://", "db+postgresql://")
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(2 * celery_workers()),
        "AIRFLOW__CELERY__BROKER_URL": celery_broker_url(),
        "AIRFLOW__CELERY__RESULT_BACKEND": database,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": celery_queue(layout),
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": f"{layout.database_name}:celery:",
    }


def celery_queue(layout: SandboxLayout) -> str:
    return f"{layout.database_name}_tasks"


# One token per test run: its sandboxes start from one migrated PostgreSQL metadata template instead of
# migrating each time. Unset, or SQLite metadata: every sandbox migrates.
METADATA_CACHE_ENV = "DR_SANDBOX_METADATA_CACHE"
METADATA_TEMPLATE_PREFIX = "dr_sandbox_meta_"


def initialise(
    layout: SandboxLayout, env: Mapping[str, str], settings: Mapping[str, Any], credentials
) -> None:
    """Migrate the metadata DB (or copy a migrated template), write the admin's password file, import pools."""
    home = layout.airflow_home
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "simple_auth_manager_passwords.json"
    passwords.write_text(json.dumps({credentials["username"]: credentials["password"]}))
    passwords.chmod(0o600)
    pools = {
        p["pool_name"]: {"slots": int(p["pool_slot"]), "description": p.get("pool_description", "")}
        for p in settings.get("pools", [])
    }
    key = _cache_key(pools)
    if key is None or not uses_postgres():
        prepare_metadata_database(layout)
        _migrate(layout, env, pools)
        return
    template = f"{METADATA_TEMPLATE_PREFIX}{key}"
    _ensure_template(template, layout, env, pools)
    prepare_metadata_database(layout, template=template)


def _migrate(layout: SandboxLayout, env: Mapping[str, str], pools: Mapping[str, Any]) -> None:
    _run([_airflow_bin(), "db", "migrate"], env, layout, "airflow-db-migrate")
    if pools:
        pools_file = layout.airflow_home / "pools.json"
        pools_file.write_text(json.dumps(pools))
        _run([_airflow_bin(), "pools", "import", str(pools_file)], env, layout, "airflow-pools")


def _token(raw: str) -> str:
    return re.sub(r"[^a-z0-9]", "", raw.lower())[:20]


def _cache_key(pools: Mapping[str, Any]) -> str | None:
    """`<run token>_<hash of Airflow's version and the pools>`, when a cache token is set.

    Migrating costs about 10 CPU-seconds a sandbox; the test suite starts a dozen. The database holds
    no secret (credentials, connections and the Fernet key live in the environment), so every sandbox
    of the run on the same Airflow version and pools starts from a copy of the first one's.
    """
    token = _token(os.environ.get(METADATA_CACHE_ENV, ""))
    if not token:
        return None
    from importlib.metadata import version

    digest = hashlib.sha256(json.dumps([version("apache-airflow"), pools], sort_keys=True).encode())
    return f"{token}_{digest.hexdigest()[:12]}"


def _ensure_template(
    template: str, layout: SandboxLayout, env: Mapping[str, str], pools: Mapping[str, Any]
) -> None:
    """Create and migrate the PostgreSQL template once; sandboxes starting side by side wait for it."""
    from psycopg2 import sql

    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (template,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,))
            if cur.fetchone():
                return
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
            try:
                _migrate(
                    layout, {**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": _postgres_url(template)}, pools
                )
            except BaseException:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(template))
                )
                raise
    finally:
        conn.close()  # ends the session: the advisory lock goes with it


def drop_metadata_cache(token: str) -> None:
    """Drop the PostgreSQL templates a run's sandboxes shared."""
    from psycopg2 import sql

    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (f"{METADATA_TEMPLATE_PREFIX}{_token(token)}\\_%",),
            )
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def _run(argv: list[str], env: Mapping[str, str], layout: SandboxLayout, name: str) -> None:
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.logs_dir / f"{name}.log", "ab") as log:
        proc = subprocess.run(argv, env=dict(env), stdout=log, stderr=subprocess.STDOUT, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[1:])} failed (exit {proc.returncode}); see {layout.logs_dir / name}.log"
        )


def start(layout: SandboxLayout, env: Mapping[str, str]) -> None:
    airflow = _airflow_bin()
    argv = {
        "dag-processor": [airflow, "dag-processor"],
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "triggerer": [airflow, "triggerer", "--skip-serve-logs"],
        "api-server": [
            airflow,
            "api-server",
            "--host",
            layout.host,
            "--port",
            str(layout.airflow_port),
            "--workers",
            "1",
        ],
    }
    if env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor":
        for n in range(1, celery_workers() + 1):
            argv[f"celery-worker-{n}"] = [
                airflow,
                "celery",
                "worker",
                "--celery-hostname",
                f"dr-worker-{n}@{layout.database_name}",
                "--queues",
                env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
                "--concurrency",
                env["AIRFLOW__CELERY__WORKER_CONCURRENCY"],
                "--skip-serve-logs",  # logs are on the shared local disk; no log server port
                "--without-gossip",
                "--without-mingle",
            ]
    for name in argv:
        spawn(f"airflow-{name}", argv[name], env=env, logs_dir=layout.logs_dir, pids_file=layout.pids_file)


def celery_workers_ready(layout: SandboxLayout, *, timeout: float = 120.0) -> list[str]:
    """Wait until every Celery worker of this sandbox logs that it is ready; returns their names."""
    logs = sorted(layout.logs_dir.glob("airflow-celery-worker-*.log"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = [p.stem for p in logs if " ready." in p.read_text(errors="replace")]
        if len(ready) == len(logs):
            return ready
        time.sleep(0.5)
    raise TimeoutError(f"Celery workers not ready after {timeout:.0f}s; see {layout.logs_dir}")


def wait_healthy(layout: SandboxLayout, *, timeout: float = 180.0) -> dict:
    """Wait until the api-server reports metadatabase, scheduler, triggerer and dag-processor healthy."""
    import httpx

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{layout.airflow_url}/api/v2/monitor/health", timeout=5)
            if r.status_code == 200:
                last = r.json()
                states = [
                    last.get(k, {}).get("status")
                    for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                ]
                if all(s == "healthy" for s in states):
                    return last
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(1.0)
    raise TimeoutError(
        f"Airflow not healthy after {timeout:.0f}s (last answer: {last}); see {layout.logs_dir}"
    )
