"""The Kubernetes API stand-in against the real clients: KubernetesPodOperator, `kubernetes`, restarts."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dr_automation.estate import load_estate
from dr_sandbox.k8s_api import (
    K8sApiHandle,
    labels_match,
    parse_label_selector,
    resource_type,
    seed_cluster,
    start_k8s_api,
    toolbox_argv,
)

pytestmark = pytest.mark.integration

TOOLBOX = "ghcr.io/leanvibe/dr-toolbox"
POD_NS = "leanvibe-dr"
SECRET_VALUE = "s3cr3t-value-of-23-chars"


def _kubeconfig(path: Path, url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "sandbox", "user": {"token": "sandbox-token"}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox"}}],
        "current-context": "sandbox",
    }
    path.write_text(json.dumps(config))  # JSON is YAML: the kubeconfig loaders read it
    return path


@pytest.fixture
def k8s(tmp_path: Path) -> Iterator[K8sApiHandle]:
    handle = start_k8s_api(state_dir=tmp_path / "state", simulated_seconds=0.3)
    seed_cluster(handle, load_estate(), {"dr-database": {"password": SECRET_VALUE}})
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def kubeconfig(tmp_path: Path, k8s: K8sApiHandle) -> Path:
    return _kubeconfig(tmp_path / "kubeconfig.json", k8s.url)


@pytest.fixture
def core(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    return SimpleNamespace(v1=client.CoreV1Api(api_client), apps=client.AppsV1Api(api_client), client=client)


def _context(task_id: str) -> dict[str, Any]:
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        dag_id="k8s_api_test",
        task_id=task_id,
        run_id="manual__2026-01-01",
        map_index=-1,
        try_number=1,
        start_date=None,
        xcom_push=lambda key, value, **_: pushed.__setitem__(key, value),
    )
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "dag": SimpleNamespace(dag_id=ti.dag_id)}


def _kpo(
    kubeconfig: Path, task_id: str, image: str, cmds: list[str], arguments: list[str], **kwargs: Any
) -> Any:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    return KubernetesPodOperator(
        task_id=task_id,
        name=task_id,
        namespace=POD_NS,
        image=image,
        cmds=cmds,
        arguments=arguments,
        service_account_name="dr-toolbox",
        in_cluster=False,
        config_file=str(kubeconfig),
        kubernetes_conn_id=None,
        on_finish_action="delete_pod",
        get_logs=True,
        startup_timeout_seconds=30,
        **kwargs,
    )


class _PodLog:
    """The container log lines KPO relays: its PodManager logs them through structlog to stdout."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    @property
    def lines(self) -> list[str]:
        captured = self.capsys.readouterr()
        sys.stdout.write(captured.out)  # keep it visible in a failure report
        return [line for line in (captured.out + captured.err).splitlines() if "[base]" in line]


@pytest.fixture
def pod_log(capsys: pytest.CaptureFixture[str]) -> _PodLog:
    return _PodLog(capsys)


def _pods(core: Any) -> list[str]:
    return [p.metadata.name for p in core.v1.list_namespaced_pod(POD_NS).items]


# --------------------------------------------------------------------------------------------- KPO
def test_kpo_runs_toolbox_pod_as_local_process_resolving_secret(
    kubeconfig: Path, core: Any, pod_log: _PodLog
) -> None:
    from airflow.providers.cncf.kubernetes.secret import Secret

    script = (
        "import os, sys, time; v = os.environ['DB_PASSWORD']; "
        "print('password length', len(v), flush=True); time.sleep(0.4); "
        "print('tmp is home', os.environ['TMPDIR'] == os.getcwd()); "
        "print('warning on stderr', file=sys.stderr)"
    )
    op = _kpo(
        kubeconfig,
        "toolbox-ok",
        f"{TOOLBOX}:test",
        ["python", "-c"],
        [script],
        deferrable=False,
        secrets=[Secret("env", "DB_PASSWORD", "dr-database", "password")],
    )
    op.execute(_context("toolbox-ok"))

    text = "\n".join(pod_log.lines)
    assert f"password length {len(SECRET_VALUE)}" in text
    assert "tmp is home True" in text
    assert "warning on stderr" in text
    assert SECRET_VALUE not in text
    assert _pods(core) == []  # on_finish_action=delete_pod


def test_kpo_failing_command_raises_and_deletes_pod(kubeconfig: Path, core: Any, pod_log: _PodLog) -> None:
    from airflow.exceptions import AirflowException

    op = _kpo(
        kubeconfig,
        "toolbox-fail",
        f"{TOOLBOX}:test",
        ["python", "-c"],
        ["import sys; print('about to fail'); sys.exit(3)"],
        deferrable=False,
    )
    with pytest.raises(AirflowException, match=r"Pod toolbox-fail.* returned a failure"):
        op.execute(_context("toolbox-fail"))
    assert any("about to fail" in line for line in pod_log.lines)
    assert _pods(core) == []


def test_kpo_simulated_image_logs_simulated_line(kubeconfig: Path, core: Any, pod_log: _PodLog) -> None:
    op = _kpo(
        kubeconfig, "other-image", "busybox:1.36", ["sh", "-c"], ["echo from busybox"], deferrable=False
    )
    op.execute(_context("other-image"))
    simulated = [line for line in pod_log.lines if "SIMULATED" in line]
    assert simulated and "busybox:1.36" in simulated[0] and "echo from busybox" in simulated[0]
    assert not any(line.endswith("from busybox") for line in pod_log.lines)  # it did not run
    assert _pods(core) == []


def test_kpo_deferrable_path_through_trigger(kubeconfig: Path, core: Any, pod_log: _PodLog) -> None:
    """Deferrable: execute defers, the trigger (kubernetes_asyncio) polls, execute_complete finishes."""
    from airflow.sdk.exceptions import TaskDeferred

    op = _kpo(
        kubeconfig,
        "toolbox-deferred",
        f"{TOOLBOX}:test",
        ["python", "-c"],
        ["import time; print('deferred hello'); time.sleep(0.5); print('deferred bye')"],
        deferrable=True,
        poll_interval=0.5,
    )
    context = _context("toolbox-deferred")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    async def first_event() -> Any:
        async for event in deferred.value.trigger.run():
            return event
        return None

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    assert event is not None and event.payload["status"] == "success", event
    getattr(op, deferred.value.method_name)(context, event.payload)
    text = "\n".join(pod_log.lines)
    assert "deferred hello" in text and "deferred bye" in text
    assert _pods(core) == []


# ------------------------------------------------------------------------- direct client behaviour
def _wait_phase(core: Any, name: str, phases: tuple[str, ...], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.v1.read_namespaced_pod(name, POD_NS)
        if pod.status.phase in phases:
            return pod
        time.sleep(0.1)
    raise AssertionError(f"pod {name} never reached {phases}: {pod.status}")


def test_missing_secret_key_keeps_pod_pending_with_config_error(core: Any) -> None:
    body = {
        "metadata": {"name": "needs-secret"},
        "spec": {
            "serviceAccountName": "dr-toolbox",
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "base",
                    "image": f"{TOOLBOX}:test",
                    "command": ["python", "-c", "print('ran')"],
                    "env": [
                        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "dr-database", "key": "nope"}}}
                    ],
                }
            ],
        },
    }
    core.v1.create_namespaced_pod(POD_NS, body)
    deadline = time.monotonic() + 10
    waiting = None
    while time.monotonic() < deadline and waiting is None:
        pod = core.v1.read_namespaced_pod("needs-secret", POD_NS)
        statuses = pod.status.container_statuses or []
        if (
            statuses
            and statuses[0].state.waiting
            and statuses[0].state.waiting.reason == "CreateContainerConfigError"
        ):
            waiting = statuses[0].state.waiting
        time.sleep(0.1)
    assert waiting is not None
    assert waiting.message == f"couldn't find key nope in Secret {POD_NS}/dr-database"
    assert pod.status.phase == "Pending"
    events = core.v1.list_namespaced_event(POD_NS, field_selector="involvedObject.name=needs-secret").items
    assert any(e.type == "Warning" and "couldn't find key nope" in e.message for e in events)
    with pytest.raises(core.client.ApiException) as exc:
        core.v1.read_namespaced_pod_log("needs-secret", POD_NS, container="base")
    assert exc.value.status == 400 and "waiting to start: CreateContainerConfigError" in exc.value.body

    # The kubelet retries: once the key exists, the pod runs.
    core.v1.patch_namespaced_secret("dr-database", POD_NS, {"stringData": {"nope": "now-there"}})
    pod = _wait_phase(core, "needs-secret", ("Succeeded", "Failed"))
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_active_deadline_kills_and_delete_stops_process(core: Any) -> None:
    def pod(name: str, **spec: Any) -> dict[str, Any]:
        return {
            "metadata": {"name": name},
            "spec": {
                "serviceAccountName": "dr-toolbox",
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "base",
                        "image": f"{TOOLBOX}:t",
                        "command": ["python", "-c", "import time; time.sleep(60)"],
                    }
                ],
                **spec,
            },
        }

    core.v1.create_namespaced_pod(POD_NS, pod("deadline", activeDeadlineSeconds=1))
    started = time.monotonic()
    done = _wait_phase(core, "deadline", ("Succeeded", "Failed"))
    assert time.monotonic() - started < 10
    assert done.status.phase == "Failed" and done.status.reason == "DeadlineExceeded"

    core.v1.create_namespaced_pod(POD_NS, pod("sleeper"))
    running = _wait_phase(core, "sleeper", ("Running",))
    pid = int(running.status.container_statuses[0].container_id.rsplit("/", 1)[1])
    core.v1.delete_namespaced_pod("sleeper", POD_NS)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
        if stat.split(") ")[-1].startswith("Z"):
            break
        time.sleep(0.1)
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[-1].startswith("Z")


def test_seeded_objects_scale_and_status_shapes(core: Any) -> None:
    estate = load_estate()
    for ns in estate.kubernetes["namespaces"]:
        deployments = core.apps.list_namespaced_deployment(ns).items
        assert deployments and all(d.status.ready_replicas == d.spec.replicas for d in deployments)
        assert core.apps.list_namespaced_stateful_set(ns).items
        secrets = core.v1.list_namespaced_secret(ns).items
        assert any(s.data and all(v for v in s.data.values()) for s in secrets)
    assert {d.metadata.namespace for d in core.apps.list_deployment_for_all_namespaces().items} >= set(
        estate.kubernetes["namespaces"]
    )

    scale = core.apps.read_namespaced_deployment_scale("api", "leanvibe-production")
    assert scale.spec.replicas == 3 and scale.status.selector == "app=api"
    core.apps.patch_namespaced_deployment_scale("api", "leanvibe-production", {"spec": {"replicas": 0}})
    dep = core.apps.read_namespaced_deployment("api", "leanvibe-production")
    assert dep.spec.replicas == 0 and not dep.status.ready_replicas and not dep.status.available_replicas
    core.apps.patch_namespaced_deployment_scale("api", "leanvibe-production", {"spec": {"replicas": 3}})
    dep = core.apps.read_namespaced_deployment("api", "leanvibe-production")
    assert dep.status.replicas == dep.status.ready_replicas == dep.status.available_replicas == 3

    with pytest.raises(core.client.ApiException) as exc:
        core.apps.patch_namespaced_deployment_scale("api", "leanvibe-production", {"spec": {"replicas": -1}})
    assert exc.value.status == 422 and json.loads(exc.value.body)["reason"] == "Invalid"

    with pytest.raises(core.client.ApiException) as exc:
        core.v1.read_namespaced_config_map("missing", "leanvibe-production")
    status = json.loads(exc.value.body)
    assert exc.value.status == 404
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "missing" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "missing", "kind": "configmaps"},
    }
    with pytest.raises(core.client.ApiException) as exc:
        core.v1.create_namespaced_config_map("leanvibe-production", {"metadata": {"name": "api-config"}})
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(core.client.ApiException) as exc:
        core.v1.create_namespaced_config_map("leanvibe-production", {"metadata": {"name": "Bad_Name"}})
    assert exc.value.status == 422 and "metadata.name" in json.loads(exc.value.body)["message"]

    # A watch starts with the current objects as ADDED, then streams changes.
    from kubernetes import watch

    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.v1.list_namespaced_config_map, "leanvibe-production", timeout_seconds=1
        )
    ]
    assert seen == [("ADDED", "api-config")]

    # Label selectors, stale-resourceVersion conflicts, json patch.
    picked = core.v1.list_namespaced_config_map("leanvibe-production", label_selector="app=api,!nope").items
    assert [c.metadata.name for c in picked] == ["api-config"]
    cm = core.v1.read_namespaced_config_map("api-config", "leanvibe-production")
    core.v1.patch_namespaced_config_map(
        "api-config", "leanvibe-production", [{"op": "replace", "path": "/data/LOG_LEVEL", "value": "debug"}]
    )
    with pytest.raises(core.client.ApiException) as exc:
        core.v1.replace_namespaced_config_map("api-config", "leanvibe-production", cm)
    assert exc.value.status == 409 and json.loads(exc.value.body)["reason"] == "Conflict"
    assert (
        core.v1.read_namespaced_config_map("api-config", "leanvibe-production").data["LOG_LEVEL"] == "debug"
    )


def test_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "restart-state"
    first = start_k8s_api(state_dir=state)
    try:
        seed_cluster(first.url, load_estate(), {"dr-database": {"password": "x"}})
        uid = first.store.get(resource_type("apps/v1", "deployments"), "leanvibe-production", "api")[
            "metadata"
        ]["uid"]
    finally:
        first.stop()
    second = start_k8s_api(state_dir=state)
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(_kubeconfig(tmp_path / "kc.json", second.url)))
        dep = client.AppsV1Api(api).read_namespaced_deployment("api", "leanvibe-production")
        assert dep.metadata.uid == uid and dep.spec.replicas == 3
        secret = client.CoreV1Api(api).read_namespaced_secret("dr-database", POD_NS)
        assert secret.data == {"password": "eA=="}
        # resourceVersions keep increasing across the restart
        cm = client.CoreV1Api(api).create_namespaced_config_map("default", {"metadata": {"name": "after"}})
        assert int(cm.metadata.resource_version) > int(dep.metadata.resource_version)
    finally:
        second.stop()


def test_selector_parsing_and_toolbox_mapping() -> None:
    reqs = parse_label_selector("a=1,b!=2,c,!d,e in (x, y),f notin (z)")
    assert labels_match({"a": "1", "c": "", "e": "y"}, reqs)
    assert not labels_match({"a": "1", "c": "", "e": "y", "d": "0"}, reqs)
    assert not labels_match({"a": "1", "b": "2", "c": "", "e": "y"}, reqs)
    assert not labels_match({"a": "1", "c": "", "e": "q"}, reqs)
    assert toolbox_argv(["dr-toolbox"], ["backup", "--x"]) == [
        sys.executable,
        "-m",
        "dr_toolbox",
        "backup",
        "--x",
    ]
    assert toolbox_argv([], ["restore"]) == [sys.executable, "-m", "dr_toolbox", "restore"]


def test_container_start_delay_keeps_pod_creating_like_a_real_node(tmp_path: Path) -> None:
    """Pods are not instant on a real node (scheduling, image pull, container creation)."""
    handle = start_k8s_api(state_dir=tmp_path / "slow", simulated_seconds=0.1, container_start_seconds=1.5)
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(
            config_file=str(_kubeconfig(tmp_path / "kc-slow.json", handle.url))
        )
        v1 = client.CoreV1Api(api)
        v1.create_namespace({"metadata": {"name": "slow"}})
        body = {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "base", "image": "busybox:1.36", "command": ["true"]}]},
        }
        t0 = time.monotonic()
        v1.create_namespaced_pod("slow", body)
        time.sleep(0.5)
        pod = v1.read_namespaced_pod("p", "slow")
        assert pod.status.phase == "Pending"
        assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
        while v1.read_namespaced_pod("p", "slow").status.phase != "Succeeded":
            assert time.monotonic() - t0 < 10
            time.sleep(0.1)
        assert time.monotonic() - t0 >= 1.5
    finally:
        handle.stop()
