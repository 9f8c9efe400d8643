"""Restore steps that decide or touch state, on their own: the outcome read from task states, what a
rollback puts back, the per-target lock (moto in-process), finding a backup and its verification
record, and scaling / applying objects through the Kubernetes API stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dr_automation.restore.plan import RestoreInputError
from dr_automation.restore.record import outcome
from dr_automation.restore.steps import rollback_plan
from tests.unit.backup_moto import client, mocked_estate_aws

PLAN = {
    "restore_id": "restore-manual__x",
    "request": {"dry_run": False, "rollback_on_failure": True, "target": "in_place"},
    "actions": [{"action": "pg_restore_in_place", "database": "primary", "system": "primary-database"}],
    "safety": {"kubernetes": True},
}


@pytest.mark.parametrize(
    ("states", "plan_overrides", "expected"),
    [
        ({"validate": "failed"}, None, "refused"),
        ({"validate": "success"}, {"dry_run": True}, "dry_run"),
        ({"verify_data": "success", "verify_health": "success"}, {}, "success"),
        ({"verify_data": "success", "verify_health": "skipped"}, {}, "success"),
        (
            {"restore_files": "failed", "rollback_rest": "success", "rollback_database_primary": "success"},
            {},
            "failed_rolled_back",
        ),
        (
            {"restore_files": "failed", "rollback_rest": "success", "rollback_database_primary": "failed"},
            {},
            "failed_rollback_incomplete",
        ),
        ({"restore_files": "failed", "rollback_rest": "failed"}, {}, "failed_rollback_incomplete"),
        ({"restore_database_primary": "failed"}, {"rollback_on_failure": False}, "failed_not_rolled_back"),
    ],
)
def test_outcome_is_read_from_task_states(
    states: dict[str, str], plan_overrides: dict | None, expected: str
) -> None:
    plan = None if plan_overrides is None else {**PLAN, "request": {**PLAN["request"], **plan_overrides}}
    assert outcome(states, plan)[0] == expected


def test_rollback_puts_back_only_what_ran() -> None:
    # the files restore failed after the database was restored: both go back, configuration never ran
    what = rollback_plan(
        PLAN,
        {
            "stop_services": "success",
            "safety_dump_primary": "success",
            "restore_database_primary": "success",
            "restore_files": "failed",
            "restore_configuration": "upstream_failed",
        },
    )
    assert what == {
        "rollback": True,
        "databases": ["rollback_database_primary"],
        "files": True,
        "configuration": False,
        "services": True,
    }
    # the safety dump failed: the live database was never touched, nothing to restore into it
    early = rollback_plan(
        PLAN,
        {
            "stop_services": "success",
            "safety_dump_primary": "failed",
            "restore_database_primary": "upstream_failed",
        },
    )
    assert early["databases"] == [] and early["services"] is True
    off = rollback_plan(
        {**PLAN, "request": {**PLAN["request"], "rollback_on_failure": False}}, {"restore_files": "failed"}
    )
    assert off["rollback"] is False and off["databases"] == []


@pytest.fixture
def aws(estate):
    with mocked_estate_aws(estate) as keys:
        yield keys


def test_one_restore_per_target_at_a_time(estate, aws) -> None:
    from dr_automation.restore.backup import acquire_lock, lock_holder, release_lock

    taken = acquire_lock(estate, "in-place", "run-a")
    assert taken["lock"] == "s3://leanvibe-backups-prod/restores/_locks/in-place.json"
    assert acquire_lock(estate, "in-place", "run-a")["lock"] == taken["lock"]  # a retry of the same run
    with pytest.raises(
        RestoreInputError, match=r"target: another restore of in-place is running \(run run-a"
    ):
        acquire_lock(estate, "in-place", "run-b")
    acquire_lock(estate, "new-instance-tier1_realtime-x", "run-b")  # another target is free
    assert release_lock(estate, "in-place", "run-b") is False  # never another run's lock
    assert lock_holder(estate, "in-place")["run_id"] == "run-a"
    assert release_lock(estate, "in-place", "run-a") is True
    acquire_lock(estate, "in-place", "run-b")
    later = datetime.now(UTC) + timedelta(hours=7)  # run-b's lock is stale by then
    assert acquire_lock(estate, "in-place", "run-c", now=later)["lock"] == taken["lock"]
    assert lock_holder(estate, "in-place")["run_id"] == "run-c"


def put_manifest(tier: str, backup: str, bucket: str = "leanvibe-backups-prod", **extra: Any) -> None:
    body = {
        "backup_id": backup,
        "tier": tier,
        "status": "complete",
        "locations": [{"storage_class": "STANDARD"}],
        "components": [],
    }
    client("s3").put_object(
        Bucket=bucket, Key=f"backups/{tier}/{backup}/manifest.json", Body=json.dumps(body | extra)
    )


def test_find_backup_reads_the_manifest_and_its_verification_record(estate, aws) -> None:
    from dr_automation.restore.backup import find_backup

    put_manifest("tier1_realtime", "b1")
    client("s3").put_object(
        Bucket="leanvibe-backups-prod",
        Key="backups/tier1_realtime/b1/verification.json",
        Body=json.dumps({"result": "passed"}),
    )
    hit = find_backup(estate, "b1", None)
    assert hit["tier"] == "tier1_realtime" and hit["verification"] == {"result": "passed"}
    assert hit["verification_url"] == "s3://leanvibe-backups-prod/backups/tier1_realtime/b1/verification.json"
    with pytest.raises(RestoreInputError, match="backup_id: no backup 'b2'"):
        find_backup(estate, "b2", None)
    put_manifest("tier2_frequent", "b1")
    with pytest.raises(RestoreInputError, match="exists in tiers tier1_realtime, tier2_frequent: set tier"):
        find_backup(estate, "b1", None)
    assert find_backup(estate, "b1", "tier2_frequent")["verification"] is None


@pytest.fixture
def kube_api(estate):
    from kubernetes.client import ApiClient, Configuration

    from dr_sandbox.k8s_api import seed_cluster, start_k8s_api

    with start_k8s_api() as handle:
        seed_cluster(handle, estate)
        config = Configuration(host=handle.url)
        yield ApiClient(config)


def test_services_scale_to_zero_and_back_through_the_kubernetes_api(estate, kube_api) -> None:
    from dr_automation.restore import kube

    found = kube.deployments(kube_api, estate.kubernetes["namespaces"])
    assert found and all(n > 0 for n in found.values())
    before = kube.scale_deployments(kube_api, {ref: 0 for ref in found})
    assert before == found
    assert set(kube.deployments(kube_api, estate.kubernetes["namespaces"]).values()) == {0}
    kube.scale_deployments(kube_api, before)
    assert kube.deployments(kube_api, estate.kubernetes["namespaces"]) == found
    assert all(s["ready"] == s["desired"] for s in kube.ready(kube_api, found).values())


def test_applied_objects_replace_live_ones_and_stopped_deployments_stay_stopped(estate, kube_api) -> None:
    from dr_automation.restore import kube

    ns = estate.kubernetes["namespaces"][0]
    live = kube.call(kube_api, "GET", kube.collection("v1", "configmaps", ns) + "/api-config")
    deployment = kube.call(kube_api, "GET", kube.collection("apps/v1", "deployments", ns) + "/api")
    exported = [
        {**live, "data": {"LOG_LEVEL": "warn"}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "new-config", "namespace": ns},
            "data": {"a": "1"},
        },
        {**deployment, "spec": {**deployment["spec"], "replicas": 5}},
    ]
    done = kube.apply_objects(estate, kube_api, exported, hold_replicas={f"{ns}/api": 0})
    assert done == {
        "created": [f"ConfigMap/{ns}/new-config"],
        "replaced": [f"ConfigMap/{ns}/api-config", f"Deployment/{ns}/api"],
    }
    assert kube.call(kube_api, "GET", kube.collection("v1", "configmaps", ns) + "/api-config")["data"] == {
        "LOG_LEVEL": "warn"
    }
    assert kube.deployments(kube_api, [ns])[f"{ns}/api"] == 0
    with pytest.raises(kube.KubeError, match="not a namespaced object of a configured kind"):
        kube.apply_objects(
            estate,
            kube_api,
            [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns}}],
        )
