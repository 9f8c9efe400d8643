"""The tier DAGs as built from the estate: ids and schedules from the config, one mapped task per
system type (a bigger estate: more mapped instances, same tasks), the provider operators and toolbox
pods they use, the RPO deadline, retries with backoff, one run at a time, the asset, and every pod
rendered and validated (strict schema, restricted profile, secrets by reference only)."""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from dr_automation.backup import plan as p
from dr_automation.backup.dag import build_tier_dag
from dr_automation.estate import Estate
from dr_sandbox.backup_rig import scale_tier
from tests.backup_verify import TIER_DAGS
from tests.unit.conftest import load_doc
from tests.unit.test_pods import RUN_ID, pod_problems, render_mapped_manifests

CONTRACT = TIER_DAGS


@pytest.fixture(scope="module")
def dags(estate: Estate) -> dict[str, Any]:
    return {key: build_tier_dag(estate, key) for key in estate.tiers}


def mapped_length(task: Any) -> int:
    values = task._get_specified_expand_input().value  # op_kwargs for @task, kwargs for operators
    return len(next(iter(values.values()))) if isinstance(values, dict) else len(values)


def test_dag_ids_schedules_and_run_policy_come_from_the_config(estate: Estate, dags: dict[str, Any]) -> None:
    assert {key: dag.dag_id for key, dag in dags.items()} == CONTRACT
    for key, dag in dags.items():
        tier = estate.tiers[key]
        assert dag.timetable.expression == tier.schedule
        assert dag.max_active_runs == 1 and dag.catchup is False
        assert dag.default_args["retries"] >= 1 and dag.default_args["retry_exponential_backoff"] is True
        assert set(dag.tags) >= {"dr", "backup", key.split("_")[0]}
        assert dag.owner == estate.owner


def test_a_deadline_alert_at_the_rpo_calls_back_into_plugins(estate: Estate, dags: dict[str, Any]) -> None:
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DagRunQueuedAtDeadline

    for key, dag in dags.items():
        alerts = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
        assert len(alerts) == 1
        alert = alerts[0]
        assert isinstance(alert.reference, DagRunQueuedAtDeadline)
        assert alert.interval == timedelta(minutes=estate.tiers[key].rpo_minutes)
        assert isinstance(alert.callback, AsyncCallback)
        assert alert.callback.path == "dr_automation.backup.deadline.backup_deadline_missed"
        assert alert.callback.kwargs == {
            "tier": key,
            "dag_id": CONTRACT[key],
            "rpo_minutes": estate.tiers[key].rpo_minutes,
        }


def test_the_deadline_callback_imports_without_the_dags_folder_or_providers() -> None:
    """The triggerer imports it: plugins only, and nothing heavy until a deadline is missed."""
    code = (
        "import sys, dr_automation.backup.deadline as d, inspect; "
        "assert inspect.iscoroutinefunction(d.backup_deadline_missed); "
        "print(any(m.startswith(('airflow.providers', 'boto3')) for m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_every_system_is_a_mapped_instance_of_its_types_task(estate: Estate, dags: dict[str, Any]) -> None:
    for key, dag in dags.items():
        plan = p.tier_plan(estate, key)
        for system_type in plan.types:
            systems = plan.systems_of(system_type)
            if system_type in p.POD_TYPES + p.PYTHON_TYPES:
                task = dag.get_task(p.component_task_id(system_type))
            elif system_type in p.S3_TYPES:
                task = dag.get_task(p.COPY_S3)
                systems = plan.systems_of(*p.S3_TYPES)
            else:
                task = dag.get_task(p.CREATE_SNAPSHOT)
            assert task.is_mapped and mapped_length(task) == len(systems), (key, system_type)


def test_a_bigger_estate_means_more_mapped_instances_not_more_tasks(
    tmp_path: Path, doc: dict[str, Any], estate: Estate, dags: dict[str, Any]
) -> None:
    for count, instances in ((40, 4), (400, 4), (500, 5)):
        big = load_doc(tmp_path, scale_tier(copy.deepcopy(doc), "tier1_realtime", count))
        dag = build_tier_dag(big, "tier1_realtime")
        assert set(dag.task_ids) == set(dags["tier1_realtime"].task_ids)
        plan = p.tier_plan(big, "tier1_realtime")
        for system_type in ("postgres_database", "postgres_wal", "redis_sessions", "secrets"):
            # batches of at most BATCH_SIZE systems, each system in exactly one
            assert mapped_length(dag.get_task(p.component_task_id(system_type))) == instances
            batches = plan.batches_of(system_type)
            assert max(len(b) for b in batches) <= p.BATCH_SIZE
            assert [s for b in batches for s in b] == plan.systems_of(system_type)
        pods = dag.get_task(p.component_task_id("postgres_database"))._get_specified_expand_input().value
        pods = pods["arguments"]
        assert all(args[4] == "batch" for args in pods)  # one pod per batch, a job per system
        assert sum(args.count("--job") for args in pods) == count // 4


def test_the_providers_operators_do_the_aws_work(dags: dict[str, Any]) -> None:
    from airflow.providers.amazon.aws.operators.rds import (
        RdsCopyDbSnapshotOperator,
        RdsCreateDbSnapshotOperator,
        RdsDeleteDbSnapshotOperator,
    )
    from airflow.providers.amazon.aws.operators.s3 import S3CopyPrefixOperator
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    def cls(dag: Any, task_id: str) -> type:
        task = dag.get_task(task_id)
        return getattr(task, "operator_class", type(task))

    t3 = dags["tier3_daily"]
    assert issubclass(cls(t3, p.CREATE_SNAPSHOT), RdsCreateDbSnapshotOperator)
    assert issubclass(cls(t3, p.COPY_SNAPSHOT), RdsCopyDbSnapshotOperator)
    assert issubclass(cls(t3, p.DELETE_EXPIRED_SNAPSHOTS), RdsDeleteDbSnapshotOperator)
    for dag in (dags["tier2_frequent"], t3, dags["tier4_archival"]):
        assert issubclass(cls(dag, p.COPY_S3), S3CopyPrefixOperator)
        assert issubclass(cls(dag, p.PLACE), S3CopyPrefixOperator)
    assert issubclass(cls(dags["tier1_realtime"], "backup_postgres_database"), KubernetesPodOperator)
    assert issubclass(cls(dags["tier2_frequent"], "backup_kubernetes_objects"), KubernetesPodOperator)
    assert issubclass(cls(t3, "backup_neo4j"), KubernetesPodOperator)


def test_the_run_wide_steps_run_whatever_happened_and_publish_the_asset(dags: dict[str, Any]) -> None:
    for key, dag in dags.items():
        manifest, publish = dag.get_task(p.WRITE_MANIFEST), dag.get_task(p.PUBLISH)
        assert manifest.trigger_rule == publish.trigger_rule == "all_done"
        assert publish.retries == 0  # an incomplete backup is final for this run
        assert [o.name for o in publish.outlets] == [f"dr_backup_{key}"]
        assert publish.outlets[0].uri.startswith("s3://") and publish.outlets[0].uri.endswith(
            f"/backups/{key}"
        )
        assert dag.get_task(p.CHECK_RETENTION).task_id in manifest.upstream_task_ids
        component = dag.get_task(next(t for t in dag.task_ids if t.startswith("backup_")))
        assert component.on_failure_callback in (None, []) and component.pool == "dr_backup"
    assert dags["tier1_realtime"].get_task(p.WRITE_MANIFEST).upstream_task_ids >= {
        "backup_postgres_database",
        "backup_secrets",
    }
    assert dags["tier2_frequent"].get_task(p.PLAN_PLACEMENT).trigger_rule == "all_done"
    assert p.PLAN_PLACEMENT not in dags["tier1_realtime"].task_ids  # nothing to copy in tier 1


def test_jinja_renders_the_runs_backup_id(dags: dict[str, Any]) -> None:
    env = dags["tier1_realtime"].get_template_env()
    run_id = "scheduled__2026-11-04T10:05:00+00:00"
    assert env.from_string(p.BACKUP_ID_TEMPLATE).render(run_id=run_id) == p.backup_id(run_id)


@pytest.mark.parametrize("key", list(CONTRACT))
def test_every_backup_pod_renders_and_validates(estate: Estate, dags: dict[str, Any], key: str) -> None:
    dag = dags[key]
    plan = p.tier_plan(estate, key)
    pods = [dag.get_task(p.component_task_id(t)) for t in plan.types if t in p.POD_TYPES]
    assert pods, "every LeanVibe tier has at least one pod-run system"
    for task in pods:
        system_type = task.task_id.removeprefix("backup_")
        manifests = render_mapped_manifests(task)
        assert manifests is not None and len(manifests) == len(plan.systems_of(system_type))
        for system, manifest in zip(plan.systems_of(system_type), manifests, strict=True):
            assert pod_problems(manifest) == [], (task.task_id, system["name"])
            container = next(c for c in manifest["spec"]["containers"] if c["name"] == "base")
            args = container["args"]
            assert args[0] == "--result-out" and args[1].endswith(f"/_results/{system['name']}.json")
            out = args[args.index("--out") + 1]
            assert out.startswith(plan.work.url(plan.component_prefix(p.backup_id(RUN_ID), system["name"])))
            assert "{{" not in " ".join(args)
            assert args[args.index("--kms-key-id") + 1] == plan.work.kms_key_alias
            assert args[args.index("--storage-class") + 1] == plan.work.storage_class
            env = {e["name"]: e for e in container.get("env", [])}
            for name, entry in env.items():
                if name not in ("TMPDIR", "HOME"):
                    assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], name
            if system_type == "kubernetes_objects":
                kinds = args[args.index("--kinds") + 1].split(",")
                expected = (
                    [k["plural"] for k in estate.kubernetes["resource_kinds"]]
                    if system["kinds"] == "all"
                    else [
                        k["plural"]
                        for k in estate.kubernetes["resource_kinds"]
                        if k["kind"] in system["kinds"]
                    ]
                )
                assert sorted(kinds) == sorted(expected)
                assert manifest["spec"]["automountServiceAccountToken"] is True  # in-cluster API access
