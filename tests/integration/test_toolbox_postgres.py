"""dr-toolbox end to end: the CLI as a subprocess against the local PostgreSQL and a moto S3 server.

Each test builds its own uniquely named databases and drops them in finalizers; the DSN carries a
password (ignored by trust auth) so every test can assert the secret never reaches stdout/stderr.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from moto.server import ThreadedMotoServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
SECRET_PW = "s3cr3t-Passw0rd-xyz"
AWS_SECRET = "fake-secret-key-do-not-print"


def _admin() -> Any:
    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True
    return conn


def _db_exists(name: str) -> bool:
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cur.fetchone() is not None


def _drop_db(name: str) -> None:
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _dsn(dbname: str) -> str:
    return f"postgresql://postgres:{SECRET_PW}@127.0.0.1:5432/{dbname}"


@pytest.fixture
def databases():
    """Factory for unique database names; every name handed out is dropped afterwards."""
    names: list[str] = []

    def new(prefix: str = "tbx") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        names.append(name)
        return name

    yield new
    for name in names:
        _drop_db(name)


@pytest.fixture
def source_db(databases) -> str:
    name = databases("tbx_src")
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    with contextlib.closing(psycopg2.connect(dbname=name, **PG)) as conn, conn.cursor() as cur:
        cur.execute(
            """
            CREATE TABLE tenants (id serial PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now());
            CREATE TABLE users (tenant_id int REFERENCES tenants(id), email text, score float8,
                                balance numeric(12,2), avatar bytea, prefs jsonb,
                                PRIMARY KEY (tenant_id, email));
            CREATE TABLE audit_log (tenant_id int, action text, at timestamptz);  -- no primary key
            CREATE SCHEMA billing;
            CREATE TABLE billing.invoices (id bigserial PRIMARY KEY, amount numeric, note text);
            INSERT INTO tenants (name) SELECT 'tenant-' || g FROM generate_series(1, 20) g;
            INSERT INTO users SELECT t, 'user' || u || '@t' || t || '.example', u / 3.0, u * 1.25,
                                     decode(md5(u::text), 'hex'), jsonb_build_object('u', u, 'é', 'ü')
                              FROM generate_series(1, 20) t, generate_series(1, 15) u;
            INSERT INTO audit_log SELECT g % 20 + 1, 'login', '2026-01-01'::timestamptz + g * interval '1 min'
                                  FROM generate_series(1, 200) g;
            INSERT INTO audit_log SELECT 1, 'dup', '2026-01-01' FROM generate_series(1, 3);  -- identical rows
            INSERT INTO billing.invoices (amount, note) SELECT g * 10, NULL FROM generate_series(1, 50) g;
            """
        )
        conn.commit()
    return name


@pytest.fixture(scope="module")
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch) -> dict[str, Any]:
    kwargs = {
        "endpoint_url": moto_endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": AWS_SECRET,
    }
    s3 = boto3.client("s3", **kwargs)
    bucket = f"tbx-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    key_id = boto3.client("kms", **kwargs).create_key(Description="toolbox test")["KeyMetadata"]["KeyId"]
    return {"s3": s3, "bucket": bucket, "kms_key_id": key_id, "endpoint": moto_endpoint}


@pytest.fixture
def env(aws, source_db) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG"))}
    base.update(
        {
            "AWS_ENDPOINT_URL": aws["endpoint"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "PYTHONPATH": str(REPO / "plugins"),
            "SRC_DSN": _dsn(source_db),
            "ADMIN_DSN": _dsn("postgres"),
        }
    )
    return base


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dr_toolbox", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    for secret in (SECRET_PW, AWS_SECRET):
        assert secret not in proc.stdout and secret not in proc.stderr, "secret leaked into output"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no stdout; stderr:\n{proc.stderr}"
    return proc.returncode, json.loads(lines[-1]), proc.stderr


def live_stats(env: dict[str, str], dsn_var: str) -> dict[str, Any]:
    rc, result, err = run_cli(env, "db-stats", "--dsn-env", dsn_var)
    assert rc == 0, err
    return result["tables"]


def dump(env: dict[str, str], aws: dict[str, Any], key: str, *extra: str) -> dict[str, Any]:
    rc, result, err = run_cli(
        env, "db-dump", "--dsn-env", "SRC_DSN", "--out", f"s3://{aws['bucket']}/{key}", *extra
    )
    assert rc == 0, err
    return result


def scratch_databases() -> list[str]:
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dr\\_verify\\_%'")
        return [r[0] for r in cur.fetchall()]


def test_dump_uploads_encrypted_object_and_sidecar(env, aws):
    result = dump(
        env,
        aws,
        "db/primary/full.dump",
        "--kms-key-id",
        aws["kms_key_id"],
        "--storage-class",
        "STANDARD_IA",
        "--label",
        "tier=gold",
    )
    s3, bucket = aws["s3"], aws["bucket"]
    assert result["ok"] is True
    assert result["tables"]["tenants"]["rows"] == 20
    assert result["tables"]["users"]["rows"] == 300
    assert result["tables"]["audit_log"]["rows"] == 203
    assert result["tables"]["billing.invoices"]["rows"] == 50
    assert all(len(t["checksum"]) == 32 for t in result["tables"].values())
    assert result["wal_lsn"] and "/" in result["wal_lsn"]
    assert result["snapshot_time"].startswith("20")

    obj = s3.head_object(Bucket=bucket, Key="db/primary/full.dump")
    assert obj["ServerSideEncryption"] == "aws:kms"
    assert aws["kms_key_id"] in obj["SSEKMSKeyId"]
    assert obj["StorageClass"] == "STANDARD_IA"
    assert obj["Metadata"]["sha256"] == result["sha256"]
    assert obj["Metadata"]["tables"] == "4"
    body = s3.get_object(Bucket=bucket, Key="db/primary/full.dump")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == result["sha256"]
    assert len(body) == result["size_bytes"]
    assert body[:5] == b"PGDMP"  # pg_dump custom format
    tags = s3.get_object_tagging(Bucket=bucket, Key="db/primary/full.dump")["TagSet"]
    assert {"Key": "tier", "Value": "gold"} in tags

    assert result["stats_location"] == f"s3://{bucket}/db/primary/full.dump.stats.json"
    side_head = s3.head_object(Bucket=bucket, Key="db/primary/full.dump.stats.json")
    assert side_head["ServerSideEncryption"] == "aws:kms"
    sidecar = json.loads(s3.get_object(Bucket=bucket, Key="db/primary/full.dump.stats.json")["Body"].read())
    assert sidecar["tables"] == result["tables"]
    assert sidecar["sha256"] == result["sha256"]

    # Stats of the dump equal those of the (quiescent) live database.
    assert live_stats(env, "SRC_DSN") == result["tables"]

    # Without a KMS key the object is still encrypted (SSE-S3), and --tables limits the dump.
    plain = dump(env, aws, "db/primary/tenants.dump", "--tables", "tenants,billing.invoices")
    assert set(plain["tables"]) == {"tenants", "billing.invoices"}
    assert plain["encryption"] == {"type": "AES256"}
    head2 = s3.head_object(Bucket=bucket, Key="db/primary/tenants.dump")
    assert head2["ServerSideEncryption"] == "AES256"

    rc, res, _ = run_cli(env, "checksum", f"s3://{bucket}/db/primary/full.dump", "--expect", result["sha256"])
    assert (rc, res["matches"]) == (0, True)
    rc, res, _ = run_cli(env, "checksum", f"s3://{bucket}/db/primary/full.dump", "--expect", "0" * 64)
    assert rc == 1 and res["matches"] is False and "mismatch" in res["error"]


def test_dump_of_missing_table_fails_clearly(env, aws):
    rc, result, _ = run_cli(
        env, "db-dump", "--dsn-env", "SRC_DSN", "--out", f"s3://{aws['bucket']}/x.dump", "--tables", "nope"
    )
    assert rc == 1
    assert "nope" in result["error"] and "not found" in result["error"]
    assert "Contents" not in aws["s3"].list_objects_v2(Bucket=aws["bucket"])


def test_restore_into_new_database_has_same_stats(env, aws, databases):
    dumped = dump(env, aws, "r/full.dump")
    target = databases("tbx_restored")
    rc, result, err = run_cli(
        env,
        "db-restore",
        "--from",
        f"s3://{aws['bucket']}/r/full.dump",
        "--dsn-env",
        "ADMIN_DSN",
        "--create-database",
        target,
    )
    assert rc == 0, err
    assert result["database"] == target
    assert result["tables"] == dumped["tables"]
    assert "object metadata" in result["sha256_verified_against"]
    env2 = {**env, "RESTORED_DSN": _dsn(target)}
    assert live_stats(env2, "RESTORED_DSN") == dumped["tables"]

    # A second restore into the same name must refuse rather than mix data.
    rc, result, _ = run_cli(
        env, "db-restore", "--from", f"s3://{aws['bucket']}/r/full.dump", "--dsn-env", "ADMIN_DSN",
        "--create-database", target,
    )  # fmt: skip
    assert rc == 1 and "already exists" in result["error"]

    # --clean restores over an existing database (here: after a destructive change).
    with contextlib.closing(psycopg2.connect(dbname=target, **PG)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM audit_log WHERE action = 'dup'")
        conn.commit()
    rc, result, err = run_cli(
        env2,
        "db-restore",
        "--from",
        f"s3://{aws['bucket']}/r/full.dump",
        "--dsn-env",
        "RESTORED_DSN",
        "--clean",
    )
    assert rc == 0, err
    assert result["tables"] == dumped["tables"]


def test_verify_passes_and_leaves_no_scratch_database(env, aws):
    dump(env, aws, "v/full.dump")
    before = set(scratch_databases())
    rc, result, err = run_cli(
        env, "db-verify", "--from", f"s3://{aws['bucket']}/v/full.dump", "--dsn-env", "ADMIN_DSN"
    )
    assert rc == 0, err
    assert result["passed"] is True and result["mismatches"] == []
    assert result["dropped"] is True and result["scratch_created"] is True
    names = {c["name"] for c in result["checks"] if c["ok"]}
    assert {"sha256", "restore", "table:users", "table:audit_log", "table:billing.invoices"} <= names
    assert result["scratch_database"].startswith("dr_verify_")
    assert not _db_exists(result["scratch_database"])
    assert set(scratch_databases()) == before


def test_tampered_object_fails_verify_and_restore(env, aws, databases):
    s3, bucket = aws["s3"], aws["bucket"]
    dumped = dump(env, aws, "t/full.dump")
    head = s3.head_object(Bucket=bucket, Key="t/full.dump")
    body = bytearray(s3.get_object(Bucket=bucket, Key="t/full.dump")["Body"].read())
    body[len(body) // 2] ^= 0xFF
    # The attacker keeps the original metadata: only the bytes betray the change.
    s3.put_object(Bucket=bucket, Key="t/full.dump", Body=bytes(body), Metadata=head["Metadata"])

    rc, result, _ = run_cli(
        env, "db-verify", "--from", f"s3://{bucket}/t/full.dump", "--dsn-env", "ADMIN_DSN"
    )
    assert rc == 1
    assert result["passed"] is False
    assert any(m.get("check") == "sha256" and dumped["sha256"] in m["reason"] for m in result["mismatches"])
    assert "sha256" in result["error"]
    assert result["scratch_created"] is False and result["dropped"] is True
    assert not _db_exists(result["scratch_database"])

    target = databases("tbx_tampered")
    rc, result, _ = run_cli(
        env, "db-restore", "--from", f"s3://{bucket}/t/full.dump", "--dsn-env", "ADMIN_DSN",
        "--create-database", target,
    )  # fmt: skip
    assert rc == 1 and "refusing to restore" in result["error"] and "sha256 mismatch" in result["error"]
    assert not _db_exists(target)  # refused BEFORE anything was created

    # An explicit expectation is checked too, even when the metadata matches.
    dump(env, aws, "t/ok.dump")
    rc, result, _ = run_cli(
        env, "db-restore", "--from", f"s3://{bucket}/t/ok.dump", "--dsn-env", "ADMIN_DSN",
        "--create-database", target, "--expect-sha256", "ab" * 32,
    )  # fmt: skip
    assert rc == 1 and "--expect-sha256" in result["error"]
    assert not _db_exists(target)

    # A missing dump is a failed verification with its reason, not a crash.
    rc, result, _ = run_cli(
        env, "db-verify", "--from", f"s3://{bucket}/t/missing.dump", "--dsn-env", "ADMIN_DSN",
        "--stats", f"s3://{bucket}/t/ok.dump.stats.json",
    )  # fmt: skip
    assert rc == 1 and result["passed"] is False
    assert result["mismatches"][0]["check"] == "download" and "not found" in result["mismatches"][0]["reason"]


def test_verify_reports_table_whose_recorded_row_count_differs(env, aws):
    s3, bucket = aws["s3"], aws["bucket"]
    dump(env, aws, "s/full.dump")
    sidecar = json.loads(s3.get_object(Bucket=bucket, Key="s/full.dump.stats.json")["Body"].read())
    sidecar["tables"]["users"]["rows"] += 1
    del sidecar["tables"]["tenants"]
    s3.put_object(Bucket=bucket, Key="s/altered.stats.json", Body=json.dumps(sidecar).encode())

    rc, result, _ = run_cli(
        env, "db-verify", "--from", f"s3://{bucket}/s/full.dump", "--dsn-env", "ADMIN_DSN",
        "--stats", f"s3://{bucket}/s/altered.stats.json",
    )  # fmt: skip
    assert rc == 1 and result["passed"] is False
    by_table = {m["table"]: m["reason"] for m in result["mismatches"]}
    assert set(by_table) == {"users", "tenants"}
    assert "row count differs: recorded 301, restored 300" in by_table["users"]
    assert "not in the recorded stats" in by_table["tenants"]
    assert result["dropped"] is True and not _db_exists(result["scratch_database"])


def test_dump_under_concurrent_inserts_matches_restore(env, aws, source_db, databases):
    with contextlib.closing(psycopg2.connect(dbname=source_db, **PG)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE events (id bigserial PRIMARY KEY, payload text)")
        cur.execute("INSERT INTO events (payload) SELECT repeat('x', 200) FROM generate_series(1, 50000)")
        conn.commit()

    stop = threading.Event()
    inserted = [0]

    def writer() -> None:
        with contextlib.closing(psycopg2.connect(dbname=source_db, **PG)) as wconn:
            wconn.autocommit = True
            with wconn.cursor() as wcur:
                deadline = time.monotonic() + 60
                while not stop.is_set() and inserted[0] < 20000 and time.monotonic() < deadline:
                    wcur.execute(
                        "INSERT INTO events (payload) VALUES ('live'); "
                        "INSERT INTO audit_log VALUES (1, 'live', now())"
                    )
                    inserted[0] += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        while inserted[0] < 20:
            time.sleep(0.01)
        dumped = dump(env, aws, "c/full.dump")
        during = inserted[0]
        while inserted[0] < during + 20 and thread.is_alive():
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(timeout=30)

    recorded = dumped["tables"]["events"]["rows"]
    assert 50000 + 20 <= recorded < 50000 + inserted[0], "dump should fall strictly inside the write stream"
    target = databases("tbx_conc")
    rc, result, err = run_cli(
        env, "db-restore", "--from", f"s3://{aws['bucket']}/c/full.dump", "--dsn-env", "ADMIN_DSN",
        "--create-database", target,
    )  # fmt: skip
    assert rc == 0, err
    assert result["tables"] == dumped["tables"]
    rc, result, err = run_cli(
        env, "db-verify", "--from", f"s3://{aws['bucket']}/c/full.dump", "--dsn-env", "ADMIN_DSN"
    )
    assert rc == 0 and result["passed"] is True, result.get("mismatches")


def test_selfcheck_reports_each_dependency(env, aws):
    rc, result, err = run_cli(env, "selfcheck", "--dsn-env", "SRC_DSN", "--bucket", aws["bucket"])
    assert rc == 0, err
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["database"]["ok"] and checks["database"]["server_version"]
    assert checks["bucket"]["ok"]

    bad = {**env, "BAD_DSN": f"postgresql://postgres:{SECRET_PW}@127.0.0.1:1/postgres?connect_timeout=2"}
    rc, result, _ = run_cli(bad, "selfcheck", "--dsn-env", "BAD_DSN", "--bucket", "no-such-bucket-tbx")
    assert rc == 1 and result["passed"] is False
    checks = {c["name"]: c for c in result["checks"]}
    assert not checks["database"]["ok"] and "cannot connect" in checks["database"]["reason"]
    assert not checks["bucket"]["ok"] and "does not exist" in checks["bucket"]["reason"]


# ------------------------------------------------------------------------------ Kubernetes export


class _KubeStub(http.server.BaseHTTPRequestHandler):
    """Serves namespaced lists at the paths the real API uses; the batch group is "not installed"."""

    objects: dict[str, list[dict[str, Any]]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        self.seen.append(parsed.path)
        items = self.objects.get(parsed.path)
        if items is None and not parsed.path.startswith("/apis/batch/"):
            items = []  # like the real API: an empty namespace lists nothing
        if items is None:  # an API group this "cluster" does not serve
            self._send(404, {"kind": "Status", "message": f"the server could not find {parsed.path}"})
            return
        query = urllib.parse.parse_qs(parsed.query)
        start = int(query.get("continue", ["0"])[0])
        page = items[start : start + 2]  # tiny pages so pagination is exercised
        more = start + 2 < len(items)
        self._send(
            200, {"kind": "List", "items": page, "metadata": {"continue": str(start + 2) if more else ""}}
        )

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _obj(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "app",
            "uid": "u-1",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "labels": {"app": name},
        },
        "status": {"ready": True},
        **extra,
    }


@pytest.fixture
def kube_api():
    _KubeStub.seen = []
    _KubeStub.objects = {
        "/apis/apps/v1/namespaces/app/deployments": [_obj(f"d{i}", spec={"replicas": i}) for i in range(5)],
        "/api/v1/namespaces/app/services": [
            _obj("web", spec={"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "ports": [{"port": 80}]}),
            _obj("headless", spec={"clusterIP": "None"}),
        ],
        "/api/v1/namespaces/app/secrets": [
            _obj("db", type="Opaque", data={"password": "c2VjcmV0"}),
            _obj("sa-token", type="kubernetes.io/service-account-token", data={"token": "eA=="}),
        ],
        "/apis/networking.k8s.io/v1/namespaces/app/ingresses": [_obj("ing")],
        "/apis/autoscaling/v2/namespaces/app/horizontalpodautoscalers": [_obj("hpa")],
        "/api/v1/namespaces/other/services": [],
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KubeStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_export_k8s_objects_strips_runtime_fields_and_encrypts_secrets(env, aws, kube_api, tmp_path):
    s3, bucket = aws["s3"], aws["bucket"]
    rc, result, err = run_cli(
        env, "export-k8s-objects", "--api-url", kube_api, "--namespaces", "app,other",
        "--kinds", "deployments,services,secrets,ingresses,horizontalpodautoscalers",
        "--out", f"s3://{bucket}/k8s/export.json.gz",
    )  # fmt: skip
    assert rc == 0, err
    assert result["counts"] == {
        "Deployment": 5,
        "Service": 2,
        "Secret": 1,
        "Ingress": 1,
        "HorizontalPodAutoscaler": 1,
    }
    assert result["skipped"][0]["name"] == "sa-token"
    assert "/apis/autoscaling/v2/namespaces/app/horizontalpodautoscalers" in _KubeStub.seen
    head = s3.head_object(Bucket=bucket, Key="k8s/export.json.gz")
    assert head["ServerSideEncryption"] == "aws:kms"  # Secrets inside: KMS even without --kms-key-id
    payload = s3.get_object(Bucket=bucket, Key="k8s/export.json.gz")["Body"].read()
    assert hashlib.sha256(payload).hexdigest() == result["sha256"] == head["Metadata"]["sha256"]
    doc = json.loads(gzip.decompress(payload))
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in doc["items"]}
    dep = by_name[("Deployment", "d3")]
    assert dep["apiVersion"] == "apps/v1" and dep["spec"] == {"replicas": 3}
    assert "status" not in dep
    assert set(dep["metadata"]) == {"name", "namespace", "labels"}
    assert "clusterIP" not in by_name[("Service", "web")]["spec"]
    assert by_name[("Service", "headless")]["spec"]["clusterIP"] == "None"
    assert by_name[("Secret", "db")]["data"] == {"password": "c2VjcmV0"}
    assert by_name[("Ingress", "ing")]["apiVersion"] == "networking.k8s.io/v1"

    # Without Secrets a local path is fine; with Secrets it is refused before anything is fetched.
    out = tmp_path / "noscrets.json.gz"
    rc, result, err = run_cli(
        env, "export-k8s-objects", "--api-url", kube_api, "--namespaces", "app", "--kinds", "deployments",
        "--out", str(out),
    )  # fmt: skip
    assert rc == 0, err
    assert len(json.loads(gzip.decompress(out.read_bytes()))["items"]) == 5
    rc, result, _ = run_cli(
        env, "export-k8s-objects", "--api-url", kube_api, "--namespaces", "app", "--kinds", "secrets",
        "--out", str(tmp_path / "s.json.gz"),
    )  # fmt: skip
    assert rc == 2 and "--out" in result["error"] and "Secrets" in result["error"]
    assert not (tmp_path / "s.json.gz").exists()

    # A kind the API does not serve fails clearly.
    rc, result, _ = run_cli(
        env, "export-k8s-objects", "--api-url", kube_api, "--namespaces", "app", "--kinds", "cronjobs",
        "--out", str(tmp_path / "c.json.gz"),
    )  # fmt: skip
    assert (
        rc == 1
        and "HTTP 404" in result["error"]
        and "/apis/batch/v1/namespaces/app/cronjobs" in result["error"]
    )
