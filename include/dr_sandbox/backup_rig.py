"""A light sandbox for the backup tier DAGs: real runs under ``dag.test()`` in seconds, not minutes.

What runs for real: the AWS emulator (moto behind the fault middleware, seeded like the sandbox), the
Kubernetes API stand-in running toolbox pods as local processes, a real PostgreSQL database with rows
(the dumps are real ``pg_dump`` output), the machine's Redis with seeded sessions, the Neo4j stand-in,
the webhook sink, an audit database, and the tier DAG itself through Airflow's ``dag.test()``, each run
in a fresh fork of a warm runner process (``dr_sandbox.dag_runner``: tasks run one after another in
that process; the deferrable pods' triggers run inline).
What it leaves out compared with ``make up``: the scheduler, triggerer and api-server, the regional
apps and the DNS server (backups use none of them).

Used by the backup integration tests and by ``bench/backup.py`` (with generated estates: ``edit``
receives the estate document before it is validated and seeded).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dr_sandbox.layout import REPO_ROOT

# Pods here start at once and run for about a second: check on them often (the sandbox does too).
POD_POLL_SECONDS = 0.2
AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "rig-secret-not-real",
}


class BackupRig:
    """Start with ``with BackupRig(workdir) as rig:``; ``rig.run(dag_id)`` runs one DAG run."""

    def __init__(
        self,
        workdir: Path,
        *,
        name: str | None = None,
        edit: Callable[[dict[str, Any]], None] | None = None,
        airflow_env: dict[str, str] | None = None,
        sessions: int = 25,
        retry_delay_seconds: int = 1,
    ) -> None:
        self.workdir = Path(workdir)
        self.name = name or f"dr_sandbox_rig_{os.getpid()}_{secrets.token_hex(3)}"
        self.edit = edit
        self.airflow_env = airflow_env
        self.session_count = sessions
        self.retry_delay_seconds = retry_delay_seconds
        self._stack: list[Callable[[], None]] = []

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> BackupRig:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        while self._stack:
            try:
                self._stack.pop()()
            except Exception as exc:  # keep stopping the rest
                print(f"[rig] stop: {type(exc).__name__}: {exc}", file=sys.stderr)

    def start(self) -> None:
        from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate
        from dr_automation.target_region import session_prefix
        from dr_sandbox import database
        from dr_sandbox import sessions as session_store
        from dr_sandbox.aws_emulator import start_emulator
        from dr_sandbox.aws_seed import seed_aws
        from dr_sandbox.k8s_api import seed_cluster, start_k8s_api
        from dr_sandbox.neo4j_api import start_neo4j_api
        from dr_sandbox.sandbox import _create_audit_database, _environment
        from dr_sandbox.webhook_sink import start_webhook_sink

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.emulator = start_emulator()
        self._stack.append(self.emulator.stop)
        self.aws_env = {
            **AWS_CREDENTIALS,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.emulator.endpoint_url,
        }
        self.database = database.create(self.name)
        self._stack.append(lambda: database.drop(self.name))
        self.audit_database = _create_audit_database(f"{self.name}_audit")
        self._stack.append(lambda: database.drop(f"{self.name}_audit"))
        self.sink = start_webhook_sink()
        self._stack.append(self.sink.stop)
        self.neo4j_password = secrets.token_urlsafe(18)
        self.neo4j = start_neo4j_api(self.neo4j_password)
        self._stack.append(self.neo4j.stop)
        self.k8s = start_k8s_api(
            state_dir=self.workdir / "k8s",
            toolbox_image=load_estate(DEFAULT_ESTATE_PATH).kubernetes["toolbox_image"],
            extra_env={
                **self.aws_env,
                "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), str(REPO_ROOT / "include")]),
            },
        )
        self._stack.append(self.k8s.stop)

        doc = yaml.safe_load(DEFAULT_ESTATE_PATH.read_text())
        doc["kubernetes"]["api_url"] = self.k8s.url
        doc["kubernetes"]["pod_poll_seconds"] = POD_POLL_SECONDS
        doc["databases"]["neo4j"]["http_uri"] = self.neo4j.url
        doc["sessions"]["key_prefix"] = f"{self.name}:{{region}}:session:"
        for tier in doc["tiers"].values():
            tier["retry_delay_seconds"] = self.retry_delay_seconds
        if self.edit:
            self.edit(doc)
        self.estate_file = self.workdir / "estate.yaml"
        self.estate_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.estate = load_estate(self.estate_file)

        with _environment(self.aws_env):
            self.seeded = seed_aws(
                self.estate,
                self.emulator.endpoint_url,
                region_addresses={r: ("127.0.0.1", 9) for r in self.estate.regions},
            )
        self._publish_metrics()
        credentials = self.estate.databases["primary"]["credentials_secret"]
        neo4j_secret = self.estate.databases["neo4j"]["password_secret"]
        seed_cluster(
            self.k8s,
            self.estate,
            {
                credentials["name"]: {credentials["key"]: self.database.dsn},
                neo4j_secret["name"]: {neo4j_secret["key"]: self.neo4j_password},
            },
        )
        primary = self.estate.primary_region.name
        self._stack.append(lambda: session_store.purge(self.name))
        self.redis_users = session_store.region_users(self.name, self.estate.regions)
        self.sessions = session_store.seed(session_prefix(self.estate, primary), self.session_count)
        self.dags_folder = self.workdir / "dags"
        self.dags_folder.mkdir(exist_ok=True)
        shutil.copy(REPO_ROOT / "dags" / "backup_tiers.py", self.dags_folder / "backup_tiers.py")
        self.env = self._airflow_env()

    def _publish_metrics(self) -> None:
        """What the regional apps publish in the sandbox: a few minutes of API metrics per region."""
        from datetime import UTC, datetime, timedelta

        namespace = self.estate.health["metrics_namespace"]
        now = datetime.now(UTC)
        for region in self.estate.regions:
            data = [
                {
                    "MetricName": metric,
                    "Dimensions": [{"Name": "Region", "Value": region}],
                    "Timestamp": now - timedelta(minutes=minute),
                    "Value": value,
                }
                for minute in range(1, 6)
                for metric, value in (("ErrorRate", 0.01), ("Latency", 0.12), ("Availability", 1.0))
            ]
            self.aws("cloudwatch", region).put_metric_data(Namespace=namespace, MetricData=data)

    def _airflow_env(self) -> dict[str, str]:
        from dr_sandbox import airflow_runtime, sessions

        kubeconfig = self.workdir / "kubeconfig.yaml"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "rig", "cluster": {"server": self.k8s.url}}],
                    "users": [{"name": "rig", "user": {"token": secrets.token_urlsafe(16)}}],
                    "contexts": [{"name": "rig", "context": {"cluster": "rig", "user": "rig"}}],
                    "current-context": "rig",
                }
            )
        )
        redis_host, redis_port = sessions.redis_address()
        settings = airflow_runtime.render_settings(
            {
                **self.aws_env,
                "KUBECONFIG_PATH": str(kubeconfig),
                "POD_NAMESPACE": self.estate.kubernetes["pod_namespace"],
                "PRIMARY_DB_HOST": self.database.host,
                "PRIMARY_DB_PORT": str(self.database.port),
                "PRIMARY_DB_NAME": self.database.name,
                "PRIMARY_DB_USER": self.database.role,
                "PRIMARY_DB_PASSWORD": self.database.password,
                "SCRATCH_DB_HOST": "127.0.0.1",  # verify_backups' scratch server: the local one
                "SCRATCH_DB_PORT": "5432",
                "SCRATCH_DB_USER": "postgres",
                "AUDIT_DB_HOST": self.audit_database.host,
                "AUDIT_DB_PORT": str(self.audit_database.port),
                "AUDIT_DB_NAME": self.audit_database.name,
                "AUDIT_DB_USER": self.audit_database.role,
                "AUDIT_DB_PASSWORD": self.audit_database.password,
                "WEBHOOK_SINK_URL": self.sink.url,
                "REDIS_HOST": redis_host,
                "REDIS_PORT": str(redis_port),
                **sessions.settings_values(self.redis_users),
                "DR_ENVIRONMENT": "rig",
            }
        )
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_", "DR_ESTATE"))}
        return {
            **base,
            **(self.airflow_env or {}),
            **airflow_runtime.connection_env(settings),
            **self.aws_env,
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "DR_ESTATE_CONFIG": str(self.estate_file),
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT / "plugins"), str(REPO_ROOT / "include"), str(REPO_ROOT)]
            ),
        }

    # -- running ----------------------------------------------------------------------------------
    def run(self, dag_id: str, *, conf: dict[str, Any] | None = None, timeout: float = 900) -> dict[str, Any]:
        """One run of `dag_id` under dag.test() (with `conf`); returns run_id, state, seconds, every
        task instance and the run's log."""
        from dr_sandbox.dag_runner import RESULT_PREFIX

        runner = self._runner()
        out = self.workdir / "run_dag.log"
        started = time.monotonic()
        request = {
            "dags_folder": str(self.dags_folder),
            "dag_id": dag_id,
            "conf": conf,
            "env": self.env,
            "cwd": str(self.workdir),
            "out": str(out),
            "timeout": timeout,
        }
        runner.stdin.write(json.dumps(request) + "\n")
        runner.stdin.flush()
        answer = runner.stdout.readline()
        if not answer:
            raise RuntimeError(f"{dag_id}: the DAG runner stopped (exit {runner.poll()})")
        status = json.loads(answer)
        log = out.read_text(errors="replace") if out.exists() else ""
        lines = [line for line in log.splitlines() if line.startswith(RESULT_PREFIX)]
        if not lines:
            raise RuntimeError(f"{dag_id}: dag.test gave no result ({status}):\n{log[-6000:]}")
        result = json.loads(lines[-1].split(" ", 1)[1])
        result["wall_seconds"] = round(time.monotonic() - started, 3)
        result["log"] = log
        return result

    def _runner(self) -> subprocess.Popen:
        """The warm process that forks one child per run (started on first use, stopped with the rig)."""
        if getattr(self, "_runner_proc", None) is None or self._runner_proc.poll() is not None:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dr_sandbox.dag_runner"],
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=open(self.workdir / "dag_runner.log", "ab"),
                text=True,
            )
            ready = proc.stdout.readline()
            if not ready:
                raise RuntimeError(f"the DAG runner did not start; see {self.workdir / 'dag_runner.log'}")
            self._runner_proc = proc
            self._stack.append(self._stop_runner)
        return self._runner_proc

    def _stop_runner(self) -> None:
        proc, self._runner_proc = self._runner_proc, None
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def use_scratch_server(self) -> None:
        """Point the estate's scratch server (where verification and drills restore dumps) at the
        machine's PostgreSQL, as a role that may create databases: the Secret the pods read and the
        Airflow connection the tasks use."""
        from dr_sandbox.database import ADMIN_DSN
        from dr_sandbox.k8s_api import seed_cluster

        verification = self.estate.raw["verification"]
        secret = verification["scratch_credentials_secret"]
        seed_cluster(self.k8s, self.estate, {secret["name"]: {secret["key"]: ADMIN_DSN}})
        self.env[f"AIRFLOW_CONN_{verification['scratch_connection'].upper()}"] = json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "schema": "postgres",
            }
        )

    def task_env(self) -> Any:
        """A context in which this process reaches the rig's AWS and connections as its tasks do."""
        import unittest.mock

        wanted = {k: v for k, v in self.env.items() if k.startswith(("AIRFLOW_CONN_", "AWS_"))}
        return unittest.mock.patch.dict(os.environ, wanted)

    def aws(self, service: str, region: str = "us-east-1") -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.emulator.endpoint_url,
            region_name=region,
            aws_access_key_id=AWS_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )


def prepare_airflow_home(home: Path, *, metadata_database: str | None = None) -> dict[str, str]:
    """A fresh AIRFLOW_HOME with migrated metadata (for callers outside the test suite): SQLite in
    `home`, or the PostgreSQL database `metadata_database` (created here; drop it with
    ``database.drop``), which is faster per task instance."""
    home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{home / 'airflow.db'}"
    if metadata_database:
        from dr_sandbox import database

        database.drop(metadata_database)
        admin = database._admin()
        try:
            with admin.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{metadata_database}"')
        finally:
            admin.close()
        url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{metadata_database}"
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run(
        [airflow, "db", "migrate"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}, **env},
        check=True,
        capture_output=True,
        timeout=600,
    )
    return env


def scale_tier(doc: dict[str, Any], tier_key: str, count: int) -> dict[str, Any]:
    """Give a tier `count` systems: its own mix of system types repeated (names suffixed -0001, ...),
    so a bigger estate is the same kinds of work, more of it. Mutates and returns `doc`."""
    base = doc["tiers"][tier_key]["systems"]
    doc["tiers"][tier_key]["systems"] = [
        {**base[i % len(base)], "name": f"{base[i % len(base)]['name'][:50]}-{i:04d}"} for i in range(count)
    ]
    return doc
