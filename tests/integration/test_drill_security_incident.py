"""dr_test_security_incident, really run (``dag.test()``) on the backup rig's AWS emulator (moto with
the sandbox's call log): the drill makes its IAM user and key, its secret and its Object Lock bucket,
the leaked key tampers with the secret and attacks the locked backup, the drill rotates, revokes,
restores and verifies every locked version's SHA-256.

Proves: the drill passes with measured figures in its stored result (RTO/RPO and phases from the run's
own marks, integrity 1.0 over every locked version, the attacker's version deletions refused by the
emulator and counted, rotation and revocation times, IAM no longer knowing the compromised key); the
remove_backup fault fails the run with a reason naming the missing backup object; after either run no
bucket, secret or IAM user of the drill remains; every AWS call the DAG made is one its AWS_ACTIONS
declares (and within the family policies once the drills family is in dr_automation.iam).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from dr_automation.drills.scenario import drill_id
from dr_automation.drills.scenarios import security_incident as si
from dr_sandbox.aws_emulator import clear_faults, list_calls
from dr_sandbox.backup_rig import BackupRig
from dr_sandbox.layout import REPO_ROOT
from tests.drill_runs import run_drill
from tests.iam_check import assert_calls_within_policies

pytestmark = pytest.mark.integration

DAG_ID = "dr_test_security_incident"


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory, airflow_env: dict[str, str], airflow_db: str
) -> Iterator[BackupRig]:
    with BackupRig(tmp_path_factory.mktemp("drill-security-rig"), airflow_env=airflow_env) as handle:
        shutil.copy(REPO_ROOT / "dags" / f"{DAG_ID}.py", handle.dags_folder / f"{DAG_ID}.py")
        clear_faults(handle.emulator.endpoint_url)
        yield handle
        assert_calls_declared(handle)


def assert_calls_declared(rig: BackupRig) -> None:
    """The DAG's own AWS calls (its DagRunKey in the User-Agent) are all in AWS_ACTIONS; the family
    policies' check too once dr_automation.iam knows the drill DAGs."""
    from airflow.providers.amazon.aws.utils.identifiers import generate_uuid

    from dr_automation.iam import NOTIFY, iam_actions

    calls = [c for c in list_calls(rig.emulator.endpoint_url) if c["dag_key"] == generate_uuid(DAG_ID)]
    made = {f"{c['service']}:{c['action']}" for c in calls}
    assert {"iam:CreateUser", "secretsmanager:PutSecretValue", "s3:ListObjectVersions"} <= made
    # IAM permissions, as dr_automation.iam derives them; the framework's failure notifications are
    # every family's NOTIFY
    declared = {p for op in (*(a.split(":", 1) for a in si.AWS_ACTIONS), *NOTIFY) for p in iam_actions(*op)}
    needed = {p for c in calls for p in iam_actions(c["service"], c["action"])}
    assert needed - declared == set(), "AWS calls missing from AWS_ACTIONS"
    assert_calls_within_policies(rig.emulator.endpoint_url, rig.estate_file)


def drill(rig: BackupRig, conf: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One drill run and its stored result; asserts that nothing of the drill remains."""
    run, result = run_drill(rig, DAG_ID, conf)
    assert_nothing_left(rig, drill_id("security_incident", run["run_id"]))
    return run, result


def assert_nothing_left(rig: BackupRig, drill: str) -> None:
    s3, sm, iam = rig.aws("s3"), rig.aws("secretsmanager"), rig.aws("iam")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(drill)] == []
    assert [s["Name"] for s in sm.list_secrets()["SecretList"] if s["Name"].startswith(drill)] == []
    assert [u["UserName"] for u in iam.list_users()["Users"] if u["UserName"].startswith(drill)] == []


def test_the_drill_refuses_the_attack_rotates_revokes_restores_and_measures(rig: BackupRig) -> None:
    run, result = drill(rig)
    assert run["state"] == "success", run["log"][-6000:]
    assert result["passed"] is True and result["reason"] is None, result["reason"]
    figures = result["figures"]
    # every locked version and the manifest verified from their bytes; none deleted
    assert result["integrity_score"] == 1.0
    assert figures["backup_objects"] == 2 and figures["versions_checked"] >= 2 * figures["backup_objects"]
    # the emulator refused every deletion of a locked version, one by one and in bulk
    assert figures["attempts_refused"] == figures["backup_objects"] + 1
    assert figures["refused"] == ["s3:DeleteObject (AccessDenied)", "s3:DeleteObjects (AccessDenied)"]
    assert figures["attempts_accepted"] >= 1 + 2 * figures["backup_objects"]  # secret, overwrites, markers
    assert figures["unknown_versions_detected"] >= 2 * figures["backup_objects"]
    assert figures["compromised_key_lookup"] == "NoSuchEntity"
    attempts = figures["attempt_log"]  # recorded with the emulator's real answers
    assert {(a["outcome"], a["status"]) for a in attempts if "?versionId=" in a["target"]} == {
        ("refused", 403)
    }
    assert [a["outcome"] for a in attempts if a["action"] == "secretsmanager:PutSecretValue"] == ["accepted"]
    assert "attacker (key AKIA" in run["log"] and "refused" in run["log"]
    phases = result["phases"]
    assert set(phases) == {"detect", "decide", "restore", "verify"} and all(v >= 0 for v in phases.values())
    assert 0 < result["rto_seconds"] < 240 * 60
    assert result["rto_seconds"] >= phases["restore"] + phases["verify"]
    assert 0 < result["rpo_seconds"] < result["rto_seconds"] + 300
    assert (
        0 < figures["rotation_seconds"] < phases["restore"]
        and 0 < figures["revocation_seconds"] < phases["restore"]
    )
    assert result["simulated"] == list(si.SCENARIO.simulated)
    assert "SecretAccessKey" not in run["log"] and "aws_secret_access_key" not in run["log"]


def test_a_removed_backup_fails_the_drill_naming_the_object_and_still_cleans_up(rig: BackupRig) -> None:
    run, result = drill(rig, {"fault": "remove_backup"})
    assert run["state"] == "failed"
    states = {t["task_id"]: t["state"] for t in run["tis"]}
    assert states["recover"] == "failed" and states["verify"] == "upstream_failed"
    assert result["passed"] is False and result["fault"] == "remove_backup"
    assert result["reason"].startswith("recover: immutable backup object s3://"), result["reason"]
    assert "/backup/" in result["reason"] and "is missing" in result["reason"]
