"""dr-toolbox units: argument errors, redaction, stats/checksum helpers, Kubernetes object cleaning.

No database or S3 here: everything runs in-process through `dr_toolbox.cli.main` or the helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dr_toolbox import redact as redact_mod
from dr_toolbox.cli import main
from dr_toolbox.dbops import compare_stats, parse_labels, scratch_name, verify_sha256
from dr_toolbox.errors import UsageError
from dr_toolbox.k8s_export import api_path, clean_object, parse_kinds, skip_reason
from dr_toolbox.pg import parse_tables, resolve_target, stats_query
from dr_toolbox.redact import redact, register_secret
from dr_toolbox.storage import encryption_args, parse_location

REPO = Path(__file__).resolve().parents[2]


def run(capsys, *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


# ------------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    ("argv", "argument", "reason"),
    [
        (["db-dump", "--dsn-env", "X"], "--out", "required"),
        (["db-dump", "--out", "/tmp/x", "--tables", "users;drop"], "--tables", "not a valid table name"),
        (["db-dump", "--out", "/tmp/x", "--tables", "a,a"], "--tables", "more than once"),
        (["db-dump", "--out", "/tmp/x", "--kms-key-id", "k"], "--kms-key-id", "only applies to s3://"),
        (["db-dump", "--out", "s3://bkt/x", "--storage-class", "FAST"], "--storage-class", "invalid choice"),
        (["db-dump", "--out", "s3://bkt/x", "--label", "novalue"], "--label", "KEY=VALUE"),
        (["db-dump", "--out", "s3://Bad_Bucket/x"], "--out", "invalid S3 bucket name"),
        (["db-dump", "--out", "s3://bucket/"], "--out", "must name an object key"),
        (["db-dump", "--out", "gs://bucket/x"], "--out", "unsupported scheme"),
        (["db-dump", "--out", "s3://bucket/x.stats.json"], "--out", "reserved for the stats sidecar"),
        (["db-dump", "--out", "s3://bucket/x", "--dsn-env", "TBX_UNSET_VAR"], "--dsn-env", "is not set"),
        (
            ["db-restore", "--from", "s3://bucket/x", "--expect-sha256", "xyz"],
            "--expect-sha256",
            "64 hexadecimal",
        ),
        (
            ["db-restore", "--from", "s3://bucket/x", "--create-database", "a-b"],
            "--create-database",
            "plain database",
        ),
        (["db-restore", "--dsn-env", "X"], "--from", "required"),
        (["db-verify", "--from", "s3://bucket/x", "--stats", "ftp://x"], "--stats", "unsupported scheme"),
        (["checksum", "/tmp/x", "--expect", "1234"], "--expect", "64 hexadecimal"),
        (["selfcheck", "--bucket", "UPPER"], "--bucket", "not a valid S3 bucket name"),
        (
            ["export-k8s-objects", "--namespaces", "a", "--kinds", "pods", "--out", "/tmp/x"],
            "--api-url",
            "required",
        ),
        (
            [
                "export-k8s-objects",
                "--in-cluster",
                "--namespaces",
                "a",
                "--kinds",
                "pods",
                "--out",
                "s3://bkt/x",
            ],
            "--kinds",
            "unknown kind 'pods'",
        ),
        (
            [
                "export-k8s-objects",
                "--in-cluster",
                "--namespaces",
                "Bad_NS",
                "--kinds",
                "secrets",
                "--out",
                "s3://bkt/x",
            ],
            "--namespaces",
            "not a valid namespace",
        ),
        (
            [
                "export-k8s-objects",
                "--in-cluster",
                "--namespaces",
                "a",
                "--kinds",
                "secrets",
                "--out",
                "/tmp/x",
            ],
            "--out",
            "Secrets",
        ),
        (["no-such-command"], "COMMAND", "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(capsys, monkeypatch, argv, argument, reason):
    monkeypatch.delenv("TBX_UNSET_VAR", raising=False)
    code, result, err = run(capsys, *argv)
    assert code == 2
    assert result["ok"] is False and result["exit_code"] == 2
    assert argument in result["error"] and reason in result["error"]
    assert argument in err  # the operator reading the pod log sees it too


def test_dsn_passed_by_value_instead_of_name_is_refused_without_echoing_it(capsys):
    dsn = "postgresql://app:hunter2-secret@db.internal:5432/app"
    code, result, err = run(capsys, "db-stats", "--dsn-env", dsn)
    assert code == 2
    assert "--dsn-env" in result["error"] and "NAME" in result["error"]
    assert "hunter2-secret" not in json.dumps(result) and "hunter2-secret" not in err


def test_resolve_target_splits_password_off(monkeypatch):
    monkeypatch.setenv("TBX_DSN", "host=127.0.0.1 port=5432 dbname=app user=u password=pa55word-x")
    target = resolve_target("TBX_DSN")
    assert target.password == "pa55word-x"
    assert "pa55word-x" not in target.dsn() and "pa55word-x" not in repr(target)
    assert target.child_env()["PGPASSWORD"] == "pa55word-x"
    assert target.with_dbname("other").params["dbname"] == "other"
    assert (
        redact("connection to app failed, password pa55word-x wrong")
        == "connection to app failed, password *** wrong"
    )


def test_invalid_dsn_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("TBX_DSN", "this is = not a dsn 'x")
    with pytest.raises(UsageError) as info:
        resolve_target("TBX_DSN")
    assert info.value.argument == "--dsn-env"


# ------------------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("could not connect to postgresql://app:Tr0ub4dor@10.1.2.3:5432/db", "Tr0ub4dor"),
        ("dsn: host=h user=u password=Tr0ub4dor dbname=d", "Tr0ub4dor"),
        ("PGPASSWORD=Tr0ub4dor pg_dump ...", "Tr0ub4dor"),
        ('{"password": "Tr0ub4dor", "user": "u"}', "Tr0ub4dor"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI/K7MDENG"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi.payload.sig"),
        ("key AKIAIOSFODNN7EXAMPLE was denied", "AKIAIOSFODNN7EXAMPLE"),
    ],
)
def test_redact_masks_password_like_fragments(text, secret):
    out = redact(text)
    assert secret not in out
    assert "***" in out


def test_redact_keeps_ordinary_text_and_masks_registered_secrets(monkeypatch):
    plain = 'verification passed: 3 checks, "passed": true, sha256 ' + "a" * 64
    assert redact(plain) == plain
    monkeypatch.setattr(redact_mod, "_known_secrets", set())
    register_secret("opaque-value-123")
    register_secret("ab")  # too short to mask safely: ignored
    assert redact("token opaque-value-123 in error, ab stays") == "token *** in error, ab stays"


def test_error_output_is_redacted(capsys, monkeypatch):
    monkeypatch.setattr(redact_mod, "_known_secrets", set())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-aws-key-value")
    code, result, err = run(capsys, "checksum", "/nonexistent/super-secret-aws-key-value")
    assert code == 1
    assert "not found" in result["error"]
    assert "super-secret-aws-key-value" not in json.dumps(result) + err


# ------------------------------------------------------------------------------- stats/checksum


def test_stats_query_orders_by_primary_key_with_c_collation_for_text_columns():
    sql = stats_query([("tenant_id", False), ("email", True)])
    assert 'ORDER BY r."tenant_id", r."email" COLLATE "C"' in sql
    assert "count(*)" in sql and "md5(ROW(r.*)::text)" in sql and "{table}" in sql


def test_stats_query_without_primary_key_orders_by_row_hash():
    sql = stats_query([])
    assert 'ORDER BY md5(ROW(r.*)::text) COLLATE "C"' in sql
    assert "coalesce(" in sql  # empty table still gets a checksum (md5 of '')


def test_parse_tables():
    assert parse_tables("users, billing.invoices") == ["users", "billing.invoices"]
    assert parse_tables(None) is None
    for bad in ("", "a.b.c", "us*rs", "1abc"):
        with pytest.raises(UsageError):
            parse_tables(bad)


def test_compare_stats_gives_exact_reasons():
    expected = {
        "same": {"rows": 1, "checksum": "a"},
        "rows": {"rows": 5, "checksum": "b"},
        "sum": {"rows": 2, "checksum": "c"},
        "gone": {"rows": 0, "checksum": "d"},
    }
    actual = {
        "same": {"rows": 1, "checksum": "a"},
        "rows": {"rows": 4, "checksum": "b"},
        "sum": {"rows": 2, "checksum": "x"},
        "extra": {"rows": 1, "checksum": "e"},
    }
    checks, mismatches = compare_stats(expected, actual)
    assert [c["name"] for c in checks if c["ok"]] == ["table:same"]
    reasons = {(m["table"], m["reason"]) for m in mismatches}
    assert reasons == {
        ("gone", "table gone is missing from the restored database"),
        ("rows", "row count differs: recorded 5, restored 4"),
        ("sum", "checksum differs: recorded c, restored x"),
        ("extra", "table extra is in the restored database but not in the recorded stats"),
    }


def test_verify_sha256_requires_a_source_and_reports_each_mismatch():
    loc = parse_location("s3://bucket/k", "--from")
    good = "a" * 64
    assert verify_sha256(good, [("object metadata", good)], loc) == []
    problems = verify_sha256(good, [("object metadata", good), ("stats sidecar", "b" * 64)], loc)
    assert len(problems) == 1 and "stats sidecar" in problems[0] and "b" * 64 in problems[0]
    assert "sha256 unknown" in verify_sha256(good, [], loc)[0]


def test_checksum_command_on_local_file(capsys, tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"disaster recovery" * 1000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    code, result, _ = run(capsys, "checksum", str(path))
    assert (code, result["sha256"], result["size_bytes"]) == (0, digest, 17000)
    code, result, _ = run(capsys, "checksum", str(path), "--expect", digest.upper())
    assert code == 0 and result["matches"] is True
    code, result, _ = run(capsys, "checksum", str(path), "--expect", "0" * 64)
    assert code == 1 and result["matches"] is False and digest in result["error"]


def test_labels_and_encryption_and_scratch_names():
    assert parse_labels(["tier=gold", "run=manual__2026"]) == {"tier": "gold", "run": "manual__2026"}
    with pytest.raises(UsageError):
        parse_labels(["a=1", "a=2"])
    assert encryption_args(None) == {"ServerSideEncryption": "AES256"}
    assert encryption_args("k1") == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k1"}
    assert encryption_args(None, require_kms=True) == {"ServerSideEncryption": "aws:kms"}
    a, b = scratch_name(), scratch_name()
    assert a != b and a.startswith("dr_verify_") and len(a) <= 63


# ---------------------------------------------------------------------------------- Kubernetes


def test_api_paths_per_group():
    assert api_path("services", "ns") == "/api/v1/namespaces/ns/services"
    assert api_path("deployments", "ns") == "/apis/apps/v1/namespaces/ns/deployments"
    assert api_path("ingresses", "ns") == "/apis/networking.k8s.io/v1/namespaces/ns/ingresses"
    assert (
        api_path("horizontalpodautoscalers", "ns")
        == "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers"
    )
    assert parse_kinds("Deployment,services,deployments") == ["deployments", "services"]


def test_clean_object_strips_runtime_fields():
    raw = {
        "metadata": {
            "name": "web",
            "namespace": "app",
            "uid": "1",
            "resourceVersion": "9",
            "managedFields": [{}],
            "creationTimestamp": "t",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "core"},
        },
        "spec": {
            "clusterIP": "10.0.0.1",
            "clusterIPs": ["10.0.0.1"],
            "ports": [{"port": 80, "nodePort": 30001}],
        },
        "status": {"loadBalancer": {}},
    }
    obj = clean_object(raw, "services")
    assert obj["apiVersion"] == "v1" and obj["kind"] == "Service"
    assert obj["metadata"] == {"name": "web", "namespace": "app", "annotations": {"team": "core"}}
    assert obj["spec"] == {"ports": [{"port": 80}]}
    assert "status" not in obj
    assert raw["metadata"]["uid"] == "1"  # input untouched
    assert skip_reason({"type": "kubernetes.io/service-account-token", "metadata": {}}, "secrets")
    assert skip_reason({"type": "Opaque", "metadata": {"name": "x"}}, "secrets") is None


# --------------------------------------------------------------------------------------- import


def test_import_is_light_and_airflow_free():
    code = (
        "import sys, dr_toolbox.cli, dr_toolbox.dbops, dr_toolbox.k8s_export, dr_toolbox.misc;"
        "print([m for m in ('airflow', 'boto3', 'botocore', 'psycopg2') if m in sys.modules])"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]"
    sources = "".join(p.read_text() for p in (REPO / "plugins" / "dr_toolbox").glob("*.py"))
    assert "import airflow" not in sources and "from airflow" not in sources
