"""deploy/: the Kubernetes RBAC, the Helm values and the image recipe agree with the bundle.

Each RBAC object validates against the Kubernetes 1.37 schema (strict); names and namespaces are the
estate's; the pod launcher may do what the KubernetesPodOperator does; the Helm values carry the
settings the sandbox is measured with (preload, scheduler idle sleep).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_VERSION = "1.37"
# What the KubernetesPodOperator does with its pods (create, find, watch, read logs, label, delete).
KPO_POD_VERBS = {"create", "get", "list", "watch", "delete", "patch"}


@pytest.fixture(scope="module")
def rbac() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / "rbac.yaml").read_text()) if d]


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def _objects(rbac: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in rbac if d["kind"] == kind]


def test_every_rbac_object_validates_strictly(rbac: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    problems = []
    for doc in rbac:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    assert problems == []


def test_rbac_names_the_estates_service_account_and_namespaces(rbac: list[dict[str, Any]]) -> None:
    k8s = load_estate(DEFAULT_ESTATE_PATH).raw["kubernetes"]
    (account,) = _objects(rbac, "ServiceAccount")
    assert (account["metadata"]["name"], account["metadata"]["namespace"]) == (
        k8s["service_account"],
        k8s["pod_namespace"],
    )
    namespace = next(d for d in _objects(rbac, "Namespace") if d["metadata"]["name"] == k8s["pod_namespace"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    restore_roles = {
        d["metadata"]["namespace"] for d in _objects(rbac, "Role") if d["metadata"]["name"] == "dr-restore"
    }
    assert restore_roles == set(k8s["namespaces"])
    bound = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in _objects(rbac, "RoleBinding")}
    assert {(ns, "dr-restore") for ns in k8s["namespaces"]} | {
        (k8s["pod_namespace"], "dr-pod-launcher")
    } <= bound


def test_the_pod_launcher_may_do_what_the_pod_operator_does_and_no_more(rbac: list[dict[str, Any]]) -> None:
    launcher = next(d for d in _objects(rbac, "Role") if d["metadata"]["name"] == "dr-pod-launcher")
    verbs = {r: set(rule["verbs"]) for rule in launcher["rules"] for r in rule["resources"]}
    assert verbs["pods"] == KPO_POD_VERBS and verbs["pods/log"] == {"get"}
    assert "secrets" not in verbs and "*" not in {v for vs in verbs.values() for v in vs}
    export = next(d for d in _objects(rbac, "ClusterRole") if d["metadata"]["name"] == "dr-toolbox-export")
    assert {v for rule in export["rules"] for v in rule["verbs"]} == {"get", "list"}  # read-only


def test_helm_values_carry_the_bundle_and_its_latency_settings(
    values: dict[str, Any], tmp_path: Path, monkeypatch
) -> None:
    from dr_sandbox.airflow_runtime import airflow_env, generate_credentials
    from dr_sandbox.layout import SandboxLayout

    assert values["executor"] in ("CeleryExecutor", "KubernetesExecutor")
    assert values["airflowVersion"] == "3.3.2"
    assert "preload()" in values["airflowLocalSettings"]
    assert "preload()" in (REPO / "plugins" / "airflow_local_settings.py").read_text()
    # the same scheduler setting the sandbox runs (and bench/detection measures) with
    layout = SandboxLayout.for_tests(tmp_path, list(load_estate(DEFAULT_ESTATE_PATH).regions))
    monkeypatch.delenv("DR_SANDBOX_SCHEDULER_IDLE_SLEEP", raising=False)  # the sandbox's own loop
    sandbox = airflow_env(layout, generate_credentials(), {})
    idle = values["config"]["scheduler"]["scheduler_idle_sleep_time"]
    assert sandbox["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == idle == "0.2"
    env = {e["name"]: e["value"] for e in values["env"]}
    estate_in_image = env["DR_ESTATE_CONFIG"].removeprefix("/opt/airflow/")
    assert (REPO / estate_in_image).is_file()
    assert values["postgresql"]["enabled"] is False  # metadata in RDS, not in the cluster
    assert not any("password" in str(v).lower() for v in values.get("env", []))


def test_the_image_ships_dags_library_and_estate() -> None:
    recipe = (DEPLOY / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in recipe
    for part in ("dags/", "plugins/", "include/", "requirements.txt"):
        assert f"COPY --chown=airflow:0 {part}" in recipe
    assert "USER 50000" in recipe
