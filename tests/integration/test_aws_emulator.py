"""The AWS emulator: moto behind fault injection, driven the way DAG tasks drive it (boto3, provider hooks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from dr_sandbox.aws_emulator import (
    EmulatorHandle,
    FaultSpecError,
    clear_calls,
    clear_faults,
    inject_fault,
    list_calls,
    list_faults,
    start_emulator,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})
RETRY5 = Config(retries={"mode": "standard", "max_attempts": 5})


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    handle = start_emulator("127.0.0.1", 0)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorHandle) -> Iterator[None]:
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "sandbox")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sandbox")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    _control(emulator, "DELETE")
    yield
    _control(emulator, "DELETE")


@pytest.fixture(autouse=True)
def _short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep botocore's retry decisions but shrink its jittered backoff (up to 1 s, 2 s, ...) to ms."""
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.01)


def _control(
    emulator: EmulatorHandle, method: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        f"{emulator.endpoint_url}/_sandbox/faults",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _add_fault(emulator: EmulatorHandle, **spec: Any) -> dict[str, Any]:
    status, body = _control(emulator, "POST", spec)
    assert status == 201, body
    return body


def _fault(emulator: EmulatorHandle, fault_id: str) -> dict[str, Any]:
    _, body = _control(emulator, "GET")
    return next(f for f in body["faults"] if f["id"] == fault_id)


def _client(
    emulator: EmulatorHandle, service: str, config: Config = NO_RETRY, region: str = "us-east-1"
) -> Any:
    return boto3.client(service, endpoint_url=emulator.endpoint_url, region_name=region, config=config)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _error(call: Callable[[], Any]) -> tuple[str, int]:
    with pytest.raises(ClientError) as excinfo:
        call()
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_health_endpoint(emulator: EmulatorHandle) -> None:
    with urllib.request.urlopen(f"{emulator.endpoint_url}/_sandbox/health", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "ok"}


def test_throttled_rds_call_succeeds_with_standard_retries(emulator: EmulatorHandle) -> None:
    fault = _add_fault(emulator, service="rds", action="DescribeDBInstances", mode="throttle", count=2)

    response = _client(emulator, "rds", RETRY5).describe_db_instances()

    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert _fault(emulator, fault["id"])["hits"] == 2
    assert _fault(emulator, fault["id"])["active"] is False


def test_throttle_outlasting_retries_surfaces_throttling(emulator: EmulatorHandle) -> None:
    fault = _add_fault(emulator, service="rds", action="DescribeDBInstances", mode="throttle", count=2)
    # botocore's retries["max_attempts"] counts retries: 1 retry = 2 attempts, both throttled.
    one_retry = Config(retries={"mode": "standard", "max_attempts": 1})

    code, status = _error(lambda: _client(emulator, "rds", one_retry).describe_db_instances())

    assert (code, status) == ("Throttling", 400)
    assert _fault(emulator, fault["id"])["hits"] == 2


def test_fault_on_one_action_leaves_other_actions_alone(emulator: EmulatorHandle) -> None:
    fault = _add_fault(emulator, service="rds", action="DescribeDBSnapshots", mode="throttle", count=3)
    rds = _client(emulator, "rds")

    rds.describe_db_instances()  # other action: untouched
    _client(emulator, "s3").list_buckets()  # other service: untouched

    assert _fault(emulator, fault["id"])["hits"] == 0
    assert _error(rds.describe_db_snapshots)[0] == "Throttling"
    assert _fault(emulator, fault["id"])["hits"] == 1


@pytest.mark.parametrize(
    ("service", "fault_service", "action", "call", "code", "status"),
    [
        ("s3", "s3", "ListBuckets", lambda c: c.list_buckets(), "SlowDown", 503),
        ("kms", "kms", "ListKeys", lambda c: c.list_keys(), "ThrottlingException", 400),
        (
            "secretsmanager",
            "secretsmanager",
            "ListSecrets",
            lambda c: c.list_secrets(),
            "ThrottlingException",
            400,
        ),
        ("sqs", "sqs", "ListQueues", lambda c: c.list_queues(), "ThrottlingException", 400),
        ("sns", "sns", "ListTopics", lambda c: c.list_topics(), "Throttling", 400),
        ("route53", "route53", "ListHealthChecks", lambda c: c.list_health_checks(), "Throttling", 400),
        (
            "route53",
            "route53",
            "ChangeResourceRecordSets",
            lambda c: c.change_resource_record_sets(
                HostedZoneId="ZNOPE", ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": {}}]}
            ),
            "PriorRequestNotComplete",
            400,
        ),
        # CloudWatch speaks smithy-rpc-v2-cbor: the error body is CBOR.
        ("cloudwatch", "cloudwatch", "ListMetrics", lambda c: c.list_metrics(), "ThrottlingException", 400),
    ],
)
def test_throttle_shape_per_protocol_is_retryable(
    emulator: EmulatorHandle,
    service: str,
    fault_service: str,
    action: str,
    call: Callable[[Any], Any],
    code: str,
    status: int,
) -> None:
    if action == "ChangeResourceRecordSets":
        zone = _client(emulator, "route53").create_hosted_zone(
            Name=f"{_unique('z')}.test", CallerReference=_unique("r")
        )
        zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]

        def call(c: Any) -> Any:
            rrset = {
                "Name": f"a.{zone['HostedZone']['Name']}",
                "Type": "A",
                "TTL": 60,
                "ResourceRecords": [{"Value": "127.0.0.9"}],
            }
            return c.change_resource_record_sets(
                HostedZoneId=zone_id,
                ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": rrset}]},
            )

    first = _add_fault(emulator, service=fault_service, action=action, mode="throttle", count=1)
    assert _error(lambda: call(_client(emulator, service))) == (code, status)
    assert _fault(emulator, first["id"])["hits"] == 1

    second = _add_fault(emulator, service=fault_service, action=action, mode="throttle", count=1)
    response = call(_client(emulator, service, RETRY5))
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert _fault(emulator, second["id"])["hits"] == 1


def test_error_mode_on_s3_put_object(emulator: EmulatorHandle) -> None:
    bucket = _unique("bucket")
    s3 = _client(emulator, "s3")
    s3.create_bucket(Bucket=bucket)
    _add_fault(emulator, service="s3", action="PutObject", mode="error", count=1)
    _add_fault(emulator, service="s3", action="PutObject", mode="error", count=1, status=503)

    assert _error(lambda: s3.put_object(Bucket=bucket, Key="a", Body=b"x" * 200_000)) == (
        "InternalError",
        500,
    )
    assert _error(lambda: s3.put_object(Bucket=bucket, Key="a", Body=b"x")) == ("ServiceUnavailable", 503)
    # The failed puts never reached moto.
    assert _error(lambda: s3.head_object(Bucket=bucket, Key="a"))[1] == 404

    s3.put_object(Bucket=bucket, Key="a", Body=b"y")  # faults used up
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"y"


def test_error_mode_on_json_service(emulator: EmulatorHandle) -> None:
    _add_fault(emulator, service="kms", mode="error", count=1)  # no action: any KMS call
    assert _error(lambda: _client(emulator, "kms").list_keys()) == ("InternalFailure", 500)


@pytest.mark.parametrize(
    ("action", "call"),
    [
        ("PutObject", lambda s3, b: s3.put_object(Bucket=b, Key="k2", Body=b"z")),
        ("GetObject", lambda s3, b: s3.get_object(Bucket=b, Key="k")),
        ("HeadObject", lambda s3, b: s3.head_object(Bucket=b, Key="k")),
        ("ListObjectsV2", lambda s3, b: s3.list_objects_v2(Bucket=b)),
        ("DeleteObject", lambda s3, b: s3.delete_object(Bucket=b, Key="k")),
        (
            "CopyObject",
            lambda s3, b: s3.copy_object(Bucket=b, Key="k3", CopySource={"Bucket": b, "Key": "k"}),
        ),
    ],
)
def test_s3_operations_are_recognised(
    emulator: EmulatorHandle, action: str, call: Callable[[Any, str], Any]
) -> None:
    s3 = _client(emulator, "s3")
    bucket = _unique("ops")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    fault = _add_fault(emulator, service="s3", action=action, mode="error", count=1)

    for other in ("GetObject", "HeadObject", "ListObjectsV2", "PutObject", "CopyObject", "DeleteObject"):
        if other != action:  # every other operation passes through while the fault waits
            {
                "GetObject": lambda: s3.get_object(Bucket=bucket, Key="k"),
                "HeadObject": lambda: s3.head_object(Bucket=bucket, Key="k"),
                "ListObjectsV2": lambda: s3.list_objects_v2(Bucket=bucket),
                "PutObject": lambda: s3.put_object(Bucket=bucket, Key="other", Body=b"o"),
                "CopyObject": lambda: s3.copy_object(
                    Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"}
                ),
                "DeleteObject": lambda: s3.delete_object(Bucket=bucket, Key="absent"),
            }[other]()
    assert _fault(emulator, fault["id"])["hits"] == 0

    assert _error(lambda: call(s3, bucket))[1] == 500
    assert _fault(emulator, fault["id"])["hits"] == 1


def test_route53_operations_are_recognised(emulator: EmulatorHandle) -> None:
    r53 = _client(emulator, "route53")
    zone = r53.create_hosted_zone(Name=f"{_unique('ops')}.test", CallerReference=_unique("ref"))
    zone_id = zone["HostedZone"]["Id"].rsplit("/", 1)[-1]
    change_id = zone["ChangeInfo"]["Id"].rsplit("/", 1)[-1]
    hc_config = {"Type": "HTTP", "IPAddress": "127.0.0.5", "Port": 8080, "ResourcePath": "/health"}
    hc_id = r53.create_health_check(CallerReference=_unique("hc"), HealthCheckConfig=hc_config)[
        "HealthCheck"
    ]["Id"]
    calls: dict[str, Callable[[], Any]] = {
        "ListResourceRecordSets": lambda: r53.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="100"),
        "GetHealthCheck": lambda: r53.get_health_check(HealthCheckId=hc_id),
        "CreateHealthCheck": lambda: r53.create_health_check(
            CallerReference=_unique("hc"), HealthCheckConfig=hc_config
        ),
        "UpdateHealthCheck": lambda: r53.update_health_check(HealthCheckId=hc_id, FailureThreshold=2),
        "GetChange": lambda: r53.get_change(Id=change_id),
        "GetHostedZone": lambda: r53.get_hosted_zone(Id=zone_id),
    }
    for action, call in calls.items():
        fault = _add_fault(emulator, service="route53", action=action, mode="error", count=1, status=502)
        for other_action, other in calls.items():
            if other_action not in (action, "CreateHealthCheck"):
                other()
        assert _fault(emulator, fault["id"])["hits"] == 0, action
        assert _error(call) == ("InternalFailure", 502), action
        assert _fault(emulator, fault["id"])["hits"] == 1, action


def test_slow_mode_delays_then_passes_through(emulator: EmulatorHandle) -> None:
    sns = _client(emulator, "sns")
    topic = sns.create_topic(Name=_unique("slow"))["TopicArn"]
    fault = _add_fault(
        emulator, service="sns", action="GetTopicAttributes", mode="slow", count=1, delay_seconds=0.4
    )

    started = time.monotonic()
    attributes = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    slow = time.monotonic() - started
    started = time.monotonic()
    sns.get_topic_attributes(TopicArn=topic)
    fast = time.monotonic() - started

    assert attributes["TopicArn"] == topic
    assert slow >= 0.4
    assert fast < 0.4
    assert _fault(emulator, fault["id"])["hits"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"service": "rds", "mode": "explode", "count": 1}, "mode"),
        ({"service": "rds", "count": 1}, "mode"),
        ({"service": "rds", "mode": "throttle", "count": 0}, "count"),
        ({"service": "rds", "mode": "throttle", "count": "2"}, "count"),
        ({"service": "rds", "mode": "throttle", "count": True}, "count"),
        ({"service": "rds", "mode": "slow", "count": 1}, "delay_seconds"),
        ({"service": "rds", "mode": "slow", "count": 1, "delay_seconds": -1}, "delay_seconds"),
        ({"service": "rds", "mode": "slow", "count": 1, "delay_seconds": 10_000}, "delay_seconds"),
        ({"service": "rds", "mode": "error", "count": 1, "status": 404}, "status"),
        ({"service": "rds", "mode": "throttle", "count": 1, "status": 500}, "status"),
        ({"mode": "throttle", "count": 1}, "service"),
        ({"service": "rds", "action": "Describe DB", "mode": "throttle"}, "action"),
        ({"service": "rds", "mode": "throttle", "cuont": 1}, "cuont"),
        ([1, 2], "body"),
    ],
)
def test_control_input_is_validated(emulator: EmulatorHandle, body: Any, field: str) -> None:
    status, answer = _control(emulator, "POST", body)
    assert status == 400
    assert answer["field"] == field
    assert answer["error"].startswith(f"{field}:")
    assert _control(emulator, "GET")[1]["faults"] == []


def test_http_client_helpers(emulator: EmulatorHandle) -> None:
    fault = inject_fault(emulator.endpoint_url, service="s3", action="HeadBucket", mode="throttle", count=1)
    assert [f["id"] for f in list_faults(emulator.endpoint_url)] == [fault["id"]]
    with pytest.raises(FaultSpecError, match=r"^count:"):
        inject_fault(emulator.endpoint_url, service="s3", mode="throttle", count=-1)
    assert clear_faults(emulator.endpoint_url) == 1
    assert list_faults(emulator.endpoint_url) == []


def test_control_rejects_invalid_json(emulator: EmulatorHandle) -> None:
    status, answer = _control(emulator, "POST", raw=b"{not json")
    assert status == 400
    assert answer["field"] == "body"


def test_list_and_clear_faults(emulator: EmulatorHandle) -> None:
    a = _add_fault(emulator, service="cloudwatch", mode="throttle", count=3)
    b = _add_fault(emulator, service="s3", action="GetObject", mode="slow", count=1, delay_seconds=0.1)
    assert a["service"] == "monitoring"  # CloudWatch signs its calls as "monitoring"

    status, listed = _control(emulator, "GET")
    assert status == 200
    assert [(f["id"], f["remaining"], f["hits"]) for f in listed["faults"]] == [
        (a["id"], 3, 0),
        (b["id"], 1, 0),
    ]

    assert _control(emulator, "DELETE") == (200, {"cleared": 2})
    assert _control(emulator, "GET")[1]["faults"] == []
    _client(emulator, "cloudwatch").list_metrics()  # cleared faults no longer apply


def test_moto_reset_still_works(emulator: EmulatorHandle) -> None:
    s3 = _client(emulator, "s3")
    bucket = _unique("reset")
    s3.create_bucket(Bucket=bucket)
    request = urllib.request.Request(f"{emulator.endpoint_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_airflow_rds_hook_through_connection_and_env(
    emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.amazon.aws.hooks.rds import RdsHook

    extra = {
        "endpoint_url": emulator.endpoint_url,
        "config_kwargs": {"retries": {"mode": "standard", "max_attempts": 3}},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_TEST", json.dumps({"conn_type": "aws", "extra": extra}))
    rds = _client(emulator, "rds")
    instance_id = _unique("hooked")
    rds.create_db_instance(
        DBInstanceIdentifier=instance_id,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="tester",
        MasterUserPassword=uuid.uuid4().hex,
    )
    fault = _add_fault(emulator, service="rds", action="DescribeDBInstances", mode="throttle", count=1)

    hook = RdsHook(aws_conn_id="aws_test", region_name="us-east-1")
    assert hook.get_db_instance_state(instance_id) == "available"
    assert _fault(emulator, fault["id"])["hits"] == 1  # the hook's client retried the throttle

    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint_url)  # what boto3 uses without a connection
    env_hook = RdsHook(aws_conn_id=None, region_name="us-east-1")
    assert env_hook.conn.meta.endpoint_url == emulator.endpoint_url
    assert env_hook.get_db_instance_state(instance_id) == "available"


def test_call_log_counts_calls_and_names_the_airflow_caller(
    emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.amazon.aws.utils.identifiers import generate_uuid

    clear_calls(emulator.endpoint_url)
    s3 = _client(emulator, "s3")
    bucket = _unique("calls")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="b", Body=b"2")
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_CALLS",
        json.dumps({"conn_type": "aws", "extra": {"endpoint_url": emulator.endpoint_url}}),
    )
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "backup_tier1_realtime")  # what a task's context sets
    assert S3Hook(aws_conn_id="aws_calls").check_for_key("a", bucket)
    calls = {
        (c["service"], c["action"], c["caller"] is not None, c["dag_key"]): c["count"]
        for c in list_calls(emulator.endpoint_url)
    }
    assert calls[("s3", "PutObject", False, None)] == 2 and calls[("s3", "CreateBucket", False, None)] == 1
    hooked = [key for key in calls if key[2]]
    assert hooked == [("s3", "HeadObject", True, generate_uuid("backup_tier1_realtime"))], calls
    assert clear_calls(emulator.endpoint_url) == sum(calls.values())
    assert list_calls(emulator.endpoint_url) == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serves_and_stops_on_sigterm() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("include", "plugins"))}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dr_sandbox.aws_emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_sandbox/health", timeout=2
                ) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "emulator CLI did not become healthy in 30 s"
                time.sleep(0.2)
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
        assert "Buckets" in s3.list_buckets()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert f"listening on http://127.0.0.1:{port}" in out.decode()


def test_cli_refuses_non_loopback_host() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("include", "plugins"))}
    result = subprocess.run(
        [sys.executable, "-m", "dr_sandbox.aws_emulator", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "host: must be a loopback address" in result.stderr
