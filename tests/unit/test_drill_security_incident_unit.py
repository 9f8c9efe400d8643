"""The security incident drill's steps against moto in-process: the attack is refused where Object
Lock holds, recovery rotates, revokes and restores, verification recomputes hashes, the forced fault
fails naming the missing object, and cleanup leaves nothing whatever state the drill is in."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from dr_automation.drills.scenario import DrillContext, DrillError
from dr_automation.drills.scenarios import security_incident as si
from dr_automation.estate import Estate


@pytest.fixture
def aws(mocked_aws: None, estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{estate.connections['aws'].upper()}", json.dumps({"conn_type": "aws"}))


def context(estate: Estate, run_id: str = "manual__unit", **conf: Any) -> DrillContext:
    return DrillContext(estate=estate, scenario="security_incident", run_id=run_id, conf=conf)


def step(ctx: DrillContext, name: str) -> None:
    """What run_step does around a scenario step (without the production probe)."""
    ctx.mark(f"{name}_started")
    ctx.state.update(getattr(si.SCENARIO, name)(ctx) or {})
    ctx.mark(f"{name}_finished")


def leftovers(ctx: DrillContext) -> dict[str, list[str]]:
    n = si.names(ctx)
    s3, sm, iam = (boto3.client(s, region_name="us-east-1") for s in ("s3", "secretsmanager", "iam"))
    return {
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(ctx.drill_id)],
        "secrets": [s["Name"] for s in sm.list_secrets()["SecretList"] if s["Name"].startswith(ctx.drill_id)],
        "users": [u["UserName"] for u in iam.list_users(PathPrefix=n["user_path"])["Users"]],
    }


def test_names_come_from_the_drill_id_and_fit_aws_limits(estate: Estate) -> None:
    ctx = context(estate)
    n = si.names(ctx)
    assert all(n[k].startswith(ctx.drill_id) for k in ("user", "policy", "secret", "bucket"))
    assert len(n["bucket"]) <= 63 and len(n["user"]) <= 64 and n["user_path"].endswith(f"/{ctx.drill_id}/")
    assert si.names(context(estate)) == n and si.names(context(estate, "manual__other")) != n


def test_an_accepted_deletion_of_a_locked_version_is_a_failure(estate: Estate) -> None:
    ctx = context(estate)
    ctx.state.update(
        manifest={"objects": {"k": {}}, "mode": "GOVERNANCE"},
        marks={"backup_written": 1.0, "incident": 2.0},
        attempts=[
            {"action": "s3:DeleteObject", "target": "s3://b/k?versionId=1", "outcome": "accepted"},
            {"action": "s3:PutObject", "target": "s3://b/k", "outcome": "accepted"},
        ],
    )
    assert si.SCENARIO.measure(ctx)["failures"] == [
        "s3:DeleteObject s3://b/k?versionId=1 was accepted: the lock did not hold"
    ]


def test_tampering_and_missing_versions_are_told_apart_from_the_manifest() -> None:
    manifest = si.build_manifest(
        "b", "p/", {"p/a": {"version_id": "1", "sha256": "x"}, "p/b": {"version_id": "2", "sha256": "y"}}, {}
    )
    listing = {
        "Versions": [{"Key": "p/a", "VersionId": "1"}, {"Key": "p/a", "VersionId": "9"}],
        "DeleteMarkers": [{"Key": "p/b", "VersionId": "8"}],
    }
    assert si.missing_from_listing(manifest, listing) == ["p/b (version 2)"]
    assert si.unknown_versions(manifest, listing) == [
        {"kind": "version", "key": "p/a", "version_id": "9"},
        {"kind": "delete_marker", "key": "p/b", "version_id": "8"},
    ]
    assert si.integrity([{"ok": True}, {"ok": False}, {"ok": True}, {"ok": True}]) == 0.75
    assert si.integrity([]) == 0.0


def test_the_drill_user_may_never_bypass_the_lock(estate: Estate) -> None:
    policy = si.user_policy(context(estate), "arn:aws:secretsmanager:us-east-1:1:secret:x")
    deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert deny and "s3:BypassGovernanceRetention" in deny[0]["Action"]


def test_a_drill_refuses_the_attack_rotates_revokes_restores_and_leaves_nothing(
    aws: None, estate: Estate
) -> None:
    ctx = context(estate)
    for name in ("setup", "inject", "recover", "verify"):
        step(ctx, name)
    attempts = ctx.state["attempts"]
    refused = [a for a in attempts if a["outcome"] == "refused"]
    # deleting a locked version is refused, one by one and in bulk; overwrites only add versions
    assert {(a["action"], a["code"]) for a in refused} == {
        ("s3:DeleteObject", "AccessDenied"),
        ("s3:DeleteObjects", "AccessDenied"),
    }
    assert len(refused) == len(ctx.state["manifest"]["objects"]) + 1
    assert any(
        a["action"] == "secretsmanager:PutSecretValue" and a["outcome"] == "accepted" for a in attempts
    )
    assert ctx.state["detection"]["secret_changed"] is True
    assert ctx.state["detection"]["unknown_backup_versions"] >= 2 * len(ctx.state["manifest"]["objects"])
    compromised = ctx.state["compromised_key_id"]
    iam = boto3.client("iam", region_name="us-east-1")
    keys = [
        k["AccessKeyId"] for k in iam.list_access_keys(UserName=si.names(ctx)["user"])["AccessKeyMetadata"]
    ]
    assert compromised not in keys and len(keys) == 1
    assert ctx.state["integrity_score"] == 1.0
    secret = json.loads(
        boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
            SecretId=si.names(ctx)["secret"]
        )["SecretString"]
    )
    assert secret["aws_access_key_id"] == keys[0] and "attacker" not in json.dumps(secret["settings"])

    figures = si.SCENARIO.measure(ctx)
    assert figures["rto_seconds"] > 0 and figures["rpo_seconds"] > 0
    assert figures["figures"]["attempts_refused"] == len(refused)
    assert set(figures["phases"]) == {"detect", "decide", "restore", "verify"}
    assert figures["failures"] == [] and len(figures["figures"]["attempt_log"]) == len(attempts)
    assert "aws_secret_access_key" not in json.dumps(figures)

    assert si.SCENARIO.cleanup(ctx) == []
    assert leftovers(ctx) == {"buckets": [], "secrets": [], "users": []}
    assert si.SCENARIO.cleanup(ctx) == []  # idempotent


def test_a_removed_backup_fails_recovery_naming_the_object(aws: None, estate: Estate) -> None:
    ctx = context(estate, "manual__fault", fault="remove_backup")
    step(ctx, "setup")
    step(ctx, "inject")
    assert len(ctx.state["backup_removed"]) == len(ctx.state["manifest"]["objects"])
    with pytest.raises(
        DrillError, match=r"immutable backup object s3://.*/backup/\S+ \(version \S+\) is missing"
    ):
        step(ctx, "recover")
    assert si.SCENARIO.cleanup(ctx) == []
    assert leftovers(ctx) == {"buckets": [], "secrets": [], "users": []}


def test_cleanup_finds_a_half_made_drill_from_its_id_alone(aws: None, estate: Estate) -> None:
    ctx = context(estate, "manual__halfway")
    n = si.names(ctx)
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName=n["user"], Path=n["user_path"])
    iam.create_access_key(UserName=n["user"])
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name=n["secret"], SecretString="{}")
    assert leftovers(ctx)["users"] == [n["user"]]
    assert si.SCENARIO.cleanup(context(estate, "manual__halfway")) == []  # a fresh context: no state
    assert leftovers(ctx) == {"buckets": [], "secrets": [], "users": []}
