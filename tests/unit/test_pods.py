"""The toolbox pod factory, and every Kubernetes pod of the bundle, rendered and validated.

There is no cluster here, so each pod is rendered the way the operator builds it at run time
(``render_template_fields`` then ``build_pod_request_obj(dry_run=True)``), serialized to the camelCase
manifest the API server would receive, and checked three ways: the Kubernetes 1.37 OpenAPI schema
(strict, so a misspelt field fails), the "restricted" Pod Security Standard, and plaintext secrets.
"""

from __future__ import annotations

import copy
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dr_automation.estate import load_estate
from dr_automation.pod_security import restricted_violations, secret_leaks
from dr_automation.pods import POD_SIZES, pod_name, toolbox_pod

K8S_VERSION = "1.37"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LOGICAL_DATE = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
RUN_ID = "manual__2026-01-01T02:00:00+00:00"


@pytest.fixture(scope="module")
def estate():
    return load_estate()


def render_context(op: Any) -> dict[str, Any]:
    """Just enough of a task context for the bundle's templates; a missing name fails loudly (StrictUndefined)."""
    from airflow.sdk.execution_time import macros

    dag = op.get_dag()
    ti = SimpleNamespace(
        dag_id=dag.dag_id if dag else "adhoc",
        task_id=op.task_id,
        run_id=RUN_ID,
        try_number=1,
        map_index=-1,
        xcom_pull=lambda *args, **kwargs: "xcom-placeholder",
    )
    params = op.params.dump() if hasattr(op.params, "dump") else dict(op.params or {})
    return {
        "dag": dag,
        "task": op,
        "ti": ti,
        "task_instance": ti,
        "run_id": RUN_ID,
        "dag_run": SimpleNamespace(run_id=RUN_ID, conf={}, logical_date=LOGICAL_DATE, run_type="manual"),
        "params": params,
        "logical_date": LOGICAL_DATE,
        "data_interval_start": LOGICAL_DATE,
        "data_interval_end": LOGICAL_DATE,
        "ds": LOGICAL_DATE.strftime("%Y-%m-%d"),
        "ds_nodash": LOGICAL_DATE.strftime("%Y%m%d"),
        "ts": LOGICAL_DATE.isoformat(),
        "ts_nodash": LOGICAL_DATE.strftime("%Y%m%dT%H%M%S"),
        "macros": macros,
    }


def render_manifest(op: Any) -> dict[str, Any]:
    """The pod the operator would POST, as a camelCase manifest (rendering mutates, so work on a copy)."""
    from kubernetes.client import ApiClient

    op = copy.deepcopy(op)
    context = render_context(op)
    op.render_template_fields(context)
    pod = op.build_pod_request_obj(context, dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)


def pod_problems(manifest: dict[str, Any]) -> list[str]:
    """Schema errors, restricted-profile violations and plaintext secrets, as one list."""
    import kubernetes_validate

    problems: list[str] = []
    try:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problems.append(f"schema {K8S_VERSION}: {exc.message} at {'.'.join(map(str, exc.path))}")
    problems += restricted_violations(manifest)
    problems += secret_leaks(manifest)
    return problems


def base(manifest: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in manifest["spec"]["containers"] if c["name"] == "base")


# -- the factory ----------------------------------------------------------------------------------
def test_factory_pod_is_schema_valid_restricted_and_keeps_secrets_out(estate) -> None:
    op = toolbox_pod(
        "backup.dump_primary_db",
        ["backup", "postgres", "--date", "{{ ds }}", "--run", "{{ run_id }}"],
        estate=estate,
        secret_env={
            "PRIMARY_DB_DSN": ("dr-primary-database", "dsn"),
            "AWS_SECRET_ACCESS_KEY": ("aws", "secret"),
        },
        env={"DR_REGION": "us-east-1"},
        labels={"dr.leanvibe.ai/tier": "tier1"},
    )
    manifest = render_manifest(op)
    assert pod_problems(manifest) == []

    container = base(manifest)
    assert container["command"] == ["dr-toolbox"]
    assert container["args"] == ["backup", "postgres", "--date", "2026-01-01", "--run", RUN_ID]
    assert container["image"] == estate.kubernetes["toolbox_image"]
    assert manifest["metadata"]["namespace"] == estate.kubernetes["pod_namespace"]
    assert manifest["spec"]["serviceAccountName"] == estate.kubernetes["service_account"]
    assert manifest["spec"]["automountServiceAccountToken"] is False
    assert manifest["metadata"]["labels"]["app.kubernetes.io/name"] == "dr-toolbox"
    assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dr-automation"
    assert manifest["metadata"]["labels"]["dr.leanvibe.ai/tier"] == "tier1"
    assert manifest["metadata"]["labels"]["task_id"] == "backup.dump_primary_db"

    env = {e["name"]: e for e in container["env"]}
    assert env["TMPDIR"]["value"] == env["HOME"]["value"] == "/tmp"
    assert env["DR_REGION"]["value"] == "us-east-1"
    assert env["PRIMARY_DB_DSN"] == {
        "name": "PRIMARY_DB_DSN",
        "valueFrom": {"secretKeyRef": {"name": "dr-primary-database", "key": "dsn"}},
    }
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]

    # The root fs is read-only, so /tmp must be a writable, size-capped emptyDir.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in manifest["spec"]["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"] == POD_SIZES["small"]["tmp"]["sizeLimit"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert manifest["spec"]["securityContext"]["fsGroup"] == 10001

    assert op.deferrable is True
    assert op.on_finish_action.value == "delete_pod"
    assert op.get_logs is True
    assert op.do_xcom_push is False
    assert op.kubernetes_conn_id == estate.connections["kubernetes"]
    assert 60 <= op.startup_timeout_seconds <= 900


def test_known_secret_value_would_be_caught_in_a_rendered_pod(estate) -> None:
    """The leak check over a real rendered pod: a value templated into args is found, by path."""
    op = toolbox_pod(
        "leaky", ["restore", "--dsn", "{{ params.dsn }}"], estate=estate, params={"dsn": "pg://u:pw-123@h/db"}
    )
    manifest = render_manifest(op)
    assert secret_leaks(manifest, ["pw-123"]) == [
        "spec.containers[0].args[2]: plaintext secret: contains secret value #1"
    ]


@pytest.mark.parametrize("name", ["DB_PASSWORD", "API_TOKEN", "PRIMARY_DB_DSN", "SIGNING_KEY", "SlackSecret"])
def test_secret_looking_env_is_refused(estate, name: str) -> None:
    with pytest.raises(ValueError, match=rf"env\['{name}'\]: the name looks like a secret"):
        toolbox_pod("t", ["selfcheck"], estate=estate, env={name: "plaintext"})


def test_templated_credential_in_env_is_refused(estate) -> None:
    with pytest.raises(ValueError, match=r"env\['DB_URI'\]: the template reads a credential"):
        toolbox_pod("t", ["selfcheck"], estate=estate, env={"DB_URI": "{{ conn.postgres_primary.password }}"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret_env": {"A": ("only-one",)}}, r"secret_env\['A'\]: expected \(secret_name, key\)"),
        (
            {"secret_env": {"BAD-NAME": ("s", "k")}},
            r"secret_env\['BAD-NAME'\]: not a valid environment variable name",
        ),
        ({"env": {"X": "1"}, "secret_env": {"X": ("s", "k")}}, r"secret_env\['X'\]: also set in env"),
        ({"size": "huge"}, r"size must be one of"),
    ],
)
def test_bad_input_is_refused_with_the_field_named(estate, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        toolbox_pod("t", ["selfcheck"], estate=estate, **kwargs)


@pytest.mark.parametrize(
    "kwarg", ["security_context", "container_security_context", "env_vars", "secrets", "cmds", "hostnetwork"]
)
def test_kwargs_that_would_undo_a_house_default_are_refused(estate, kwarg: str) -> None:
    with pytest.raises(TypeError, match=rf"'{kwarg}' is not accepted"):
        toolbox_pod("t", ["selfcheck"], estate=estate, **{kwarg: None})


@pytest.mark.parametrize("size", sorted(POD_SIZES))
def test_sizes_map_to_requests_and_limits(estate, size: str) -> None:
    manifest = render_manifest(toolbox_pod("sized", ["backup"], estate=estate, size=size))
    assert pod_problems(manifest) == []
    resources = base(manifest)["resources"]
    assert resources == {
        "requests": dict(POD_SIZES[size]["requests"]),
        "limits": dict(POD_SIZES[size]["limits"]),
    }
    for kind in ("cpu", "memory", "ephemeral-storage"):
        assert kind in resources["requests"] and kind in resources["limits"]
    tmp = next(v for v in manifest["spec"]["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["sizeLimit"] == POD_SIZES[size]["tmp"]["sizeLimit"]


def test_sizes_grow_monotonically() -> None:
    from kubernetes.utils import parse_quantity

    order = ["small", "medium", "large"]
    for section in ("requests", "limits"):
        for kind in ("cpu", "memory", "ephemeral-storage"):
            values = [parse_quantity(POD_SIZES[s][section][kind]) for s in order]
            assert values == sorted(values) and len(set(values)) == 3, (section, kind, values)
    for s in order:
        # /tmp counts against the pod's ephemeral storage: a full /tmp must not get the pod evicted first.
        assert parse_quantity(POD_SIZES[s]["tmp"]["sizeLimit"]) < parse_quantity(
            POD_SIZES[s]["limits"]["ephemeral-storage"]
        )
        for kind in ("cpu", "memory", "ephemeral-storage"):
            assert parse_quantity(POD_SIZES[s]["requests"][kind]) <= parse_quantity(
                POD_SIZES[s]["limits"][kind]
            )


@pytest.mark.parametrize(
    "task_id",
    [
        "x" * 250,
        "restore.Restore_Primary_DB__from_snapshot." + "very_long_segment_" * 10,
        "failover.dns.UPSERT_records",
        "9_starts_with_a_digit",
        "___",
    ],
)
def test_pod_names_are_dns1123_for_any_task_id(estate, task_id: str) -> None:
    assert DNS1123_LABEL.match(pod_name(task_id)) and len(pod_name(task_id)) <= 54
    manifest = render_manifest(toolbox_pod(task_id, ["selfcheck"], estate=estate))
    name = manifest["metadata"]["name"]
    assert DNS1123_LABEL.match(name) and len(name) <= 63, name
    assert pod_problems(manifest) == []


def test_overrides_via_kwargs(estate) -> None:
    op = toolbox_pod(
        "k8s_backup",
        ["backup", "kubernetes"],
        estate=estate,
        image="registry.local/dr-toolbox:test",
        deferrable=False,
        automount_service_account_token=True,
        on_finish_action="delete_succeeded_pod",
    )
    manifest = render_manifest(op)
    assert op.deferrable is False
    assert op.on_finish_action.value == "delete_succeeded_pod"
    assert manifest["spec"]["automountServiceAccountToken"] is True
    assert base(manifest)["image"] == "registry.local/dr-toolbox:test"
    assert pod_problems(manifest) == []


def test_import_is_light() -> None:
    """DAG files import the factory at parse time; the provider must only load when a pod is built."""
    import subprocess
    import sys

    code = "import sys, dr_automation.pods; print('airflow.providers.cncf.kubernetes.operators.pod' in sys.modules, 'kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- every pod of the bundle ---------------------------------------------------------------------
def kpo_tasks(dag_folder: Path) -> tuple[dict[str, str], list[Any]]:
    """Parse a folder like the dag processor does and return (import errors, every KPO task)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    bag = DagBag(dag_folder=str(dag_folder), safe_mode=False)
    tasks: list[Any] = []
    for dag in bag.dags.values():
        for task in dag.tasks:
            operator_class = getattr(task, "operator_class", type(task))
            if isinstance(operator_class, type) and issubclass(operator_class, KubernetesPodOperator):
                tasks.append(task)
    return bag.import_errors, tasks


def render_mapped_manifests(task: Any) -> list[dict[str, Any]] | None:
    """Every pod of a mapped KubernetesPodOperator whose expand() values are known at parse time
    (literal lists, e.g. one pod per system of the estate); None when they come from an XCom."""
    from airflow.sdk.definitions.xcom_arg import XComArg
    from kubernetes.client import ApiClient

    from dr_automation.pods import SAMPLE_ARGUMENTS

    values = getattr(task.expand_input, "value", None)
    if not isinstance(values, dict) or any(isinstance(v, XComArg) for v in values.values()):
        sample = SAMPLE_ARGUMENTS.get((task.dag_id, task.task_id))
        if sample is None:
            return None
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        kwargs = {k: v for k, v in task.partial_kwargs.items() if k != "map_index_template"}
        op = KubernetesPodOperator(task_id=task.task_id, arguments=sample, **kwargs)
        return [render_manifest(op)]
    lengths = {len(v) for v in values.values()}
    manifests = []
    for index in range(min(lengths) if lengths else 0):
        context = render_context(task)
        context["ti"].map_index = index
        task.render_template_fields(context)  # puts the unmapped, rendered operator in context["task"]
        pod = context["task"].build_pod_request_obj(context, dry_run=True)
        manifests.append(ApiClient().sanitize_for_serialization(pod))
    return manifests


def audit_pods(tasks: list[Any]) -> dict[str, list[str]]:
    """Problems per '<dag_id>.<task_id>' (mapped pods: every instance, suffixed [i]); mapped pods
    whose arguments come from an XCom cannot be rendered without a run and are flagged."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    report: dict[str, list[str]] = {}
    for task in tasks:
        key = f"{task.dag_id}.{task.task_id}"
        if isinstance(task, KubernetesPodOperator):
            manifests = {key: render_manifest(task)}
        else:
            rendered = render_mapped_manifests(task)
            if rendered is None:
                report[key] = [
                    "mapped KubernetesPodOperator expanded from an XCom: not rendered by this audit; "
                    "expand it over literal lists built with toolbox_pod_partial()"
                ]
                continue
            manifests = {f"{key}[{i}]": m for i, m in enumerate(rendered)}
        for name, manifest in manifests.items():
            problems = pod_problems(manifest)
            if manifest["metadata"]["labels"].get("app.kubernetes.io/managed-by") != "dr-automation":
                problems.append("not built by dr_automation.pods.toolbox_pod (house defaults missing)")
            report[name] = problems
    return report


def test_collector_finds_and_judges_pods_in_a_dag_folder(tmp_path: Path) -> None:
    """Proves the collector on a throwaway folder: one factory pod passes, one hand-rolled pod is caught."""
    (tmp_path / "pods_probe_dag.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations

            from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
            from airflow.sdk import DAG

            from dr_automation.estate import load_estate
            from dr_automation.pods import toolbox_pod

            with DAG(dag_id="pods_probe", schedule=None, params={"target": "us-west-2"}):
                toolbox_pod("good", ["failover", "--to", "{{ params.target }}"], estate=load_estate())
                KubernetesPodOperator(
                    task_id="hand_rolled",
                    namespace="default",
                    image="busybox",
                    cmds=["sh"],
                    container_security_context={"privileged": True},
                    env_vars={"DB_PASSWORD": "plaintext"},
                )
            """
        )
    )
    errors, tasks = kpo_tasks(tmp_path)
    assert errors == {}
    report = audit_pods(tasks)
    assert sorted(report) == ["pods_probe.good", "pods_probe.hand_rolled"]
    assert report["pods_probe.good"] == []
    bad = report["pods_probe.hand_rolled"]
    assert any(p.startswith("spec.containers[0].securityContext.privileged: privileged") for p in bad), bad
    assert any(p.startswith("spec.containers[0].env[0].value: plaintext secret") for p in bad), bad
    assert "not built by dr_automation.pods.toolbox_pod (house defaults missing)" in bad


def test_every_pod_of_the_bundle_is_valid_and_restricted(dags_folder: Path) -> None:
    errors, tasks = kpo_tasks(dags_folder)
    assert errors == {}, f"DAG files failed to import, their pods were not checked: {sorted(errors)}"
    assert tasks, f"no KubernetesPodOperator task found in {dags_folder}"
    report = audit_pods(tasks)
    failing = {key: problems for key, problems in report.items() if problems}
    assert failing == {}, "\n".join(f"{k}:\n  " + "\n  ".join(v) for k, v in failing.items())
