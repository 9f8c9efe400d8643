"""Start, describe and stop the whole sandbox: the embedded stand-in for AWS, Route 53's data plane,
Kubernetes and the regions, plus real Airflow components and a real PostgreSQL primary database.

`up` returns when every component is healthy and has written endpoints.json and credentials.json;
`down` stops exactly the processes `up` recorded (by pid) and drops the databases it created.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import string
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from dr_automation.target_region import session_prefix
from dr_sandbox import airflow_runtime, database, sessions
from dr_sandbox.layout import REPO_ROOT, SandboxLayout, free_port, port_is_free
from dr_sandbox.processes import running, spawn, stop_all

SIMULATED = {
    "aws": "AWS APIs are moto 5.2 in server mode (control plane only; RDS holds no data)",
    "route53_data_plane": "Route 53 answers come from the sandbox DNS server, whose health checkers probe "
    "the regional apps as Route 53 documents",
    "kubernetes": "the Kubernetes API is the sandbox stand-in; toolbox pods run as local processes, other "
    "images complete as simulated",
    "regions": "each region is a small HTTP app on its own loopback address",
    "drill_stack": "the standing drill stack is a second regional app per region (same address, its own "
    "port, no database, no metrics), failed through its POST /_control by the drills",
    "session_stores": "each region's ElastiCache is the machine's real Redis, regions kept apart by key prefix "
    "and by a Redis user of their own",
    "compute_and_load_balancers": "Auto Scaling groups and load balancers (with their write gates) exist in "
    "moto only; the regional apps are reached directly, not through them",
    "neo4j": "the Neo4j cluster is a stand-in serving a small generated graph through the HTTP API, "
    "answering exactly the Cypher statements the backup sends",
    "webhooks": "the chat and status-page webhooks post to the sandbox webhook sink, which records "
    "every message (GET /messages) and forwards nothing",
    "email_and_pagers": "SES mail stays in moto (GET /moto-api/data.json); SNS pager topics deliver to "
    "SQS '<topic>-inbox' queues instead of phones",
}


SEEDED_SESSIONS = 40  # signed-in users in the primary region, for the failover to carry over

# Where airflow_settings.yaml points the chat and status-page webhook connections on the sink.
CHAT_WEBHOOK_PATH = "/chat"
STATUS_PAGE_WEBHOOK_PATH = "/status-page"


class SandboxError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[sandbox] {msg}", file=sys.stderr, flush=True)


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _wait(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last_exc = exc
        time.sleep(0.25)
    raise SandboxError(f"{what} not healthy after {timeout:.0f}s ({last_exc})")


def _http_ok(url: str) -> Callable[[], bool]:
    import httpx

    return lambda: httpx.get(url, timeout=2).status_code == 200


def sandbox_estate(layout: SandboxLayout, base: Path, *, neo4j_url: str | None = None) -> dict[str, Any]:
    """The estate as the sandbox runs it: same file, regions' endpoints moved onto loopback apps."""
    data = yaml.safe_load(base.read_text())
    for name, region in data["regions"].items():
        region["endpoint"] = {
            "address": layout.region_hosts[name],
            "hostname": region["endpoint"]["hostname"],
            "port": layout.app_port,
            "protocol": "HTTP",
        }
    if "drills" in data:  # drills fail these apps, never the production ones above
        data["drills"]["stack"] = {
            name: {
                "address": layout.region_hosts[name],
                "port": layout.drill_app_port,
                "protocol": "HTTP",
                "control_url": layout.drill_app_url(name),
            }
            for name in data["regions"]
        }
    hc = data["route53"]["health_check"]
    hc["type"] = "HTTP"
    hc["port"] = layout.app_port
    data["route53"]["verify_nameservers"] = [f"{layout.host}:{layout.dns_port}"]
    data["route53"]["propagation_timeout_seconds"] = 15  # the sandbox's DNS answers within seconds
    data["failover_authorization"]["approval_timeout_minutes"] = 1  # tests watch a timeout happen
    data["health"]["metrics_period_seconds"] = max(1, round(layout.metrics_publish_seconds))
    data["health"]["check_interval_seconds"] = 1  # the monitor detects within seconds, not minutes
    data["sessions"]["key_prefix"] = f"{layout.database_name}:{{region}}:session:"
    # Backups: pods export objects from the Kubernetes stand-in (a sandbox pod has no in-cluster service
    # account), the Neo4j backup reads the Neo4j stand-in, and a failed backup step retries in seconds.
    data["kubernetes"]["api_url"] = layout.k8s_url
    data["kubernetes"]["pod_poll_seconds"] = 0.5
    if neo4j_url:
        for spec in data["databases"].values():
            if "bolt_uri" in spec:
                spec["http_uri"] = neo4j_url
    for tier in data["tiers"].values():
        tier["retry_delay_seconds"] = 2
    return data


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merged(base[key], value)
        else:
            base[key] = value
    return base


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set variables for the seeding calls only: the caller's process (a test run) keeps its own."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _aws_credentials() -> dict[str, str]:
    alphabet = string.ascii_uppercase + string.digits
    return {
        "AWS_ACCESS_KEY_ID": "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    }


def _write_private(path: Path, data: Any) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(data, indent=2))


def _kubeconfig(layout: SandboxLayout, namespace: str) -> None:
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dr-sandbox", "cluster": {"server": layout.k8s_url}}],
        "users": [{"name": "dr-sandbox", "user": {"token": secrets.token_urlsafe(24)}}],
        "contexts": [
            {
                "name": "dr-sandbox",
                "context": {"cluster": "dr-sandbox", "user": "dr-sandbox", "namespace": namespace},
            }
        ],
        "current-context": "dr-sandbox",
    }
    layout.kubeconfig_file.write_text(yaml.safe_dump(cfg))
    layout.kubeconfig_file.chmod(0o600)


def _create_audit_database(name: str) -> database.PrimaryDatabase:
    """An empty database (own role, generated password) for the audit log, with its table created."""
    import psycopg2
    from psycopg2 import sql

    from dr_automation.audit import AuditLog

    database.drop(name)  # also drops its role "<name>_app"
    db = database.PrimaryDatabase(name=name, role=f"{name}_app", password=secrets.token_urlsafe(24))
    conn = psycopg2.connect(database.ADMIN_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(db.role)), (db.password,)
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(db.role))
            )
    finally:
        conn.close()
    AuditLog(dsn=db.dsn).ensure_schema()
    return db


def _check_ports(layout: SandboxLayout) -> None:
    import socket

    wanted = [
        ("AWS emulator", layout.host, layout.aws_port, socket.SOCK_STREAM),
        ("DNS (udp)", layout.host, layout.dns_port, socket.SOCK_DGRAM),
        ("DNS (tcp)", layout.host, layout.dns_port, socket.SOCK_STREAM),
        ("DNS status", layout.host, layout.dns_status_port, socket.SOCK_STREAM),
        ("Kubernetes API", layout.host, layout.k8s_port, socket.SOCK_STREAM),
        ("webhook sink", layout.host, layout.sink_port, socket.SOCK_STREAM),
        ("Airflow api-server", layout.host, layout.airflow_port, socket.SOCK_STREAM),
        *[(f"app {r}", h, layout.app_port, socket.SOCK_STREAM) for r, h in layout.region_hosts.items()],
        *[
            (f"drill app {r}", h, layout.drill_app_port, socket.SOCK_STREAM)
            for r, h in layout.region_hosts.items()
        ],
    ]
    busy = [
        f"{what} {host}:{port}" for what, host, port, kind in wanted if not port_is_free(host, port, kind)
    ]
    if busy:
        raise SandboxError(
            f"ports already in use: {', '.join(busy)} (is another sandbox running? `make down`)"
        )


def up(
    layout: SandboxLayout | None = None,
    *,
    with_airflow: bool = True,
    estate_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Start everything; return the endpoints document. On any failure, stop what was started.

    estate_overrides are merged into the sandbox's estate (section by section, e.g.
    ``{"health": {"failover_cooldown_minutes": 0}}``) and pass the same validation.
    """
    from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate

    layout = layout or SandboxLayout()
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    layout.state_dir.chmod(0o700)
    if running(layout.pids_file):
        raise SandboxError(f"a sandbox is already running from {layout.state_dir} (run `make down` first)")
    base_estate = load_estate(DEFAULT_ESTATE_PATH)
    layout = layout.with_regions(list(base_estate.regions))
    _check_ports(layout)
    layout.save()
    started = time.monotonic()
    try:
        return _up(layout, started, with_airflow=with_airflow, overrides=estate_overrides or {})
    except BaseException:
        _log("start failed: stopping what was started")
        down(layout)
        raise


def _up(
    layout: SandboxLayout, started: float, *, with_airflow: bool, overrides: dict[str, Any]
) -> dict[str, Any]:
    from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate
    from dr_sandbox.aws_seed import seed_aws
    from dr_sandbox.k8s_api import seed_cluster

    neo4j_url = f"http://{layout.host}:{layout.neo4j_port or free_port(layout.host)}"  # tier-3 backups
    layout.estate_file.write_text(
        yaml.safe_dump(
            _merged(sandbox_estate(layout, DEFAULT_ESTATE_PATH, neo4j_url=neo4j_url), overrides),
            sort_keys=False,
        )
    )
    estate = load_estate(layout.estate_file)  # the sandbox's estate passes the same validation
    aws_creds = _aws_credentials()
    primary_region = estate.primary_region.name

    sessions.check_reachable()
    _log(f"creating the primary database {layout.database_name} (real PostgreSQL rows)")
    db = database.create(layout.database_name)
    _log(f"creating the audit database {layout.audit_database_name}")
    audit_db = _create_audit_database(layout.audit_database_name)

    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))},
        **aws_creds,
        "AWS_DEFAULT_REGION": primary_region,
        "AWS_ENDPOINT_URL": layout.aws_url,
        "DR_ESTATE_CONFIG": str(layout.estate_file),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT / "include")]),
    }

    def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        spawn(
            name,
            argv,
            env=env or base_env,
            logs_dir=layout.logs_dir,
            pids_file=layout.pids_file,
            cwd=REPO_ROOT,
        )

    _log(f"AWS emulator on {layout.aws_url}")
    start(
        "aws-emulator",
        _python_module("dr_sandbox.aws_emulator", "--host", layout.host, "--port", str(layout.aws_port)),
    )
    _wait("AWS emulator", _http_ok(f"{layout.aws_url}/_sandbox/health"))
    with _environment({k: v for k, v in base_env.items() if k.startswith("AWS_")}):
        seeded = seed_aws(
            estate,
            layout.aws_url,
            region_addresses={r: (h, layout.app_port) for r, h in layout.region_hosts.items()},
        )

    def app_argv(region: str, host: str, port: int, *extra: str) -> list[str]:
        return _python_module(
            "dr_sandbox.regional_app", "--region", region, "--host", host, "--port", str(port), *extra
        )

    for region, host in layout.region_hosts.items():
        _log(f"regional app {region} on {layout.app_url(region)}")
        start(
            f"app-{region}",
            app_argv(
                region,
                host,
                layout.app_port,
                "--dsn-env",
                "PRIMARY_DB_DSN",
                "--cloudwatch-endpoint",
                layout.aws_url,
                "--publish-interval",
                str(layout.metrics_publish_seconds),
            ),
            {**base_env, "PRIMARY_DB_DSN": db.dsn, "AWS_DEFAULT_REGION": region},
        )
        # The drill stack: no database and no metrics, so failing it never shows in production's.
        start(f"drill-app-{region}", app_argv(region, host, layout.drill_app_port))
    for region in layout.region_hosts:
        _wait(f"app {region}", _http_ok(f"{layout.app_url(region)}/health"))
        _wait(f"drill app {region}", _http_ok(f"{layout.drill_app_url(region)}/health"))

    _log(f"webhook sink (chat and status-page webhooks) on {layout.sink_url}")
    start(
        "webhook-sink",
        _python_module("dr_sandbox.webhook_sink", "--host", layout.host, "--port", str(layout.sink_port)),
    )
    _wait("webhook sink", _http_ok(f"{layout.sink_url}/health"))

    _log(f"DNS (Route 53 data plane) on {layout.host}:{layout.dns_port} udp+tcp")
    start(
        "dns",
        _python_module(
            "dr_sandbox.dns_server",
            "--host",
            layout.host,
            "--port",
            str(layout.dns_port),
            "--aws-endpoint",
            layout.aws_url,
            "--interval-override",
            str(layout.health_interval_seconds),
            "--status-port",
            str(layout.dns_status_port),
        ),
    )
    _wait("DNS server", _http_ok(f"{layout.dns_status_url}/health"))

    pod_namespace = estate.kubernetes["pod_namespace"]
    _log(f"Kubernetes API stand-in on {layout.k8s_url}")
    _kubeconfig(layout, pod_namespace)
    start(
        "k8s-api",
        _python_module(
            "dr_sandbox.k8s_api",
            "--host",
            layout.host,
            "--port",
            str(layout.k8s_port),
            "--state-dir",
            str(layout.state_dir / "k8s"),
            "--toolbox-image",
            estate.kubernetes["toolbox_image"].rsplit(":", 1)[0],
            "--seed-from-estate",
            "--container-start-seconds",
            str(layout.pod_start_seconds),
        ),
    )
    _wait("Kubernetes API", _http_ok(f"{layout.k8s_url}/version"))
    secret = estate.databases["primary"]["credentials_secret"]
    neo4j_secret = estate.databases["neo4j"]["password_secret"]
    neo4j_password = secrets.token_urlsafe(18)
    _log(f"Neo4j stand-in on {neo4j_url}")
    start(
        "neo4j",
        _python_module("dr_sandbox.neo4j_api", "--host", layout.host, "--port", neo4j_url.rsplit(":", 1)[1]),
        {**base_env, "NEO4J_PASSWORD": neo4j_password},
    )
    _wait("Neo4j stand-in", _http_ok(f"{neo4j_url}/health"))
    cluster_secrets = {
        secret["name"]: {secret["key"]: db.dsn},
        neo4j_secret["name"]: {neo4j_secret["key"]: neo4j_password},
    }
    scratch = (estate.raw.get("verification") or {}).get("scratch_credentials_secret")
    if scratch:  # verify_backups restores dumps into scratch databases on the machine's server
        cluster_secrets[scratch["name"]] = {scratch["key"]: database.ADMIN_DSN}
    seed_cluster(layout.k8s_url, estate, cluster_secrets)

    seeded_sessions = sessions.seed(session_prefix(estate, primary_region), SEEDED_SESSIONS)
    _log(f"{len(seeded_sessions)} user sessions in {primary_region}'s session store (real Redis)")
    redis_host, redis_port = sessions.redis_address()
    redis_users = sessions.region_users(layout.database_name, estate.regions)

    credentials: dict[str, str] = {}
    if with_airflow:
        credentials = airflow_runtime.generate_credentials()
        settings = airflow_runtime.render_settings(
            {
                **aws_creds,
                "AWS_ENDPOINT_URL": layout.aws_url,
                "KUBECONFIG_PATH": str(layout.kubeconfig_file),
                "POD_NAMESPACE": pod_namespace,
                "PRIMARY_DB_HOST": db.host,
                "PRIMARY_DB_PORT": str(db.port),
                "PRIMARY_DB_NAME": db.name,
                "PRIMARY_DB_USER": db.role,
                "PRIMARY_DB_PASSWORD": db.password,
                "SCRATCH_DB_HOST": "127.0.0.1",
                "SCRATCH_DB_PORT": "5432",
                "SCRATCH_DB_USER": "postgres",
                "AUDIT_DB_HOST": audit_db.host,
                "AUDIT_DB_PORT": str(audit_db.port),
                "AUDIT_DB_NAME": audit_db.name,
                "AUDIT_DB_USER": audit_db.role,
                "AUDIT_DB_PASSWORD": audit_db.password,
                "WEBHOOK_SINK_URL": layout.sink_url,
                "REDIS_HOST": redis_host,
                "REDIS_PORT": str(redis_port),
                **sessions.settings_values(redis_users),
                "DR_ENVIRONMENT": "sandbox",
            }
        )
        env = airflow_runtime.airflow_env(
            layout,
            credentials,
            {
                **airflow_runtime.connection_env(settings),
                "DR_ESTATE_CONFIG": str(layout.estate_file),
                **{k: v for k, v in base_env.items() if k.startswith("AWS_")},
            },
        )
        _log("Airflow: migrating metadata, starting dag-processor, scheduler, triggerer, api-server")
        airflow_runtime.initialise(layout, env, settings, credentials)
        airflow_runtime.start(layout, env)
        airflow_runtime.wait_healthy(layout)
        if airflow_runtime.executor() == "celery":
            workers = airflow_runtime.celery_workers_ready(layout)
            _log(f"CeleryExecutor: {len(workers)} workers on queue {airflow_runtime.celery_queue(layout)}")

    endpoints = {
        "aws": {"endpoint_url": layout.aws_url, "faults": f"{layout.aws_url}/_sandbox/faults"},
        "dns": {"host": layout.host, "port": layout.dns_port, "status": f"{layout.dns_status_url}/status"},
        "kubernetes": {"api": layout.k8s_url, "kubeconfig": str(layout.kubeconfig_file)},
        "neo4j": {"url": neo4j_url},
        "airflow": {"url": layout.airflow_url, "api": f"{layout.airflow_url}/api/v2"}
        if with_airflow
        else None,
        "regions": {
            r: {
                "address": h,
                "port": layout.app_port,
                "url": layout.app_url(r),
                "role": estate.regions[r].role,
            }
            for r, h in layout.region_hosts.items()
        },
        "drill_stack": {
            r: {"address": h, "port": layout.drill_app_port, "url": layout.drill_app_url(r)}
            for r, h in layout.region_hosts.items()
        },
        "database": db.public(),
        "sessions": {
            "redis": f"{redis_host}:{redis_port}",
            "users": {r: u["user"] for r, u in redis_users.items()},  # passwords: credentials.json
            "key_prefixes": {r: session_prefix(estate, r) for r in estate.regions},
            "seeded": {primary_region: len(seeded_sessions)},
        },
        "audit_database": {**audit_db.public(), "table": "dr_audit_events"},
        "webhook_sink": {
            "url": layout.sink_url,
            "messages": f"{layout.sink_url}/messages",
            "chat": f"{layout.sink_url}{CHAT_WEBHOOK_PATH}",
            "status_page": f"{layout.sink_url}{STATUS_PAGE_WEBHOOK_PATH}",
        },
        "estate": str(layout.estate_file),
        "record_name": estate.route53["record_name"],
        "aws_resources": seeded,
        "health_check_interval_seconds": layout.health_interval_seconds,
        "simulated": SIMULATED,
        "started_in_seconds": round(time.monotonic() - started, 1),
    }
    layout.endpoints_file.write_text(json.dumps(endpoints, indent=2, default=str))
    _write_private(
        layout.credentials_file,
        {
            "username": credentials.get("username"),
            "password": credentials.get("password"),
            "aws_access_key_id": aws_creds["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": aws_creds["AWS_SECRET_ACCESS_KEY"],
            "primary_database_dsn": db.dsn,
            "audit_database_dsn": audit_db.dsn,
            "session_store_users": redis_users,
        },
    )
    _log(f"sandbox up in {endpoints['started_in_seconds']}s")
    return endpoints


def down(layout: SandboxLayout | None = None) -> dict[str, Any]:
    """Stop exactly what `up` started (recorded pids), drop the databases it created."""
    if layout is None:
        default = SandboxLayout.from_env()
        layout = (
            SandboxLayout.load(default.state_dir) if (default.state_dir / "layout.json").exists() else default
        )
    stopped = stop_all(layout.pids_file)
    database.drop(layout.database_name)
    database.drop(layout.audit_database_name)
    sessions.purge(layout.database_name)
    airflow_runtime.drop_metadata_database(layout)
    for f in (layout.endpoints_file, layout.credentials_file):
        f.unlink(missing_ok=True)
    return {"stopped": stopped}


def resolve(layout: SandboxLayout, name: str) -> list[str]:
    """Ask the sandbox's Route 53 data plane, as a client would (a real DNS query over UDP)."""
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [layout.host]
    resolver.port = layout.dns_port
    resolver.lifetime = 3.0
    return [r.address for r in resolver.resolve(name, "A")]
