"""Each DAG family's IAM policy: operations mapped to IAM actions, scoping, and no drift from deploy/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dr_automation.estate import DEFAULT_ESTATE_PATH, Estate, load_estate
from dr_automation.iam import (
    UnknownFamilyError,
    allowed,
    dag_keys,
    families,
    iam_actions,
    operations,
    policy_document,
    undeclared,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "iam"


@pytest.fixture(scope="module")
def estate() -> Estate:
    return load_estate(DEFAULT_ESTATE_PATH)


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (("s3", "ListObjectsV2"), ("s3:ListBucket",)),
        (("s3", "HeadObject"), ("s3:GetObject",)),
        (("s3", "CopyObject"), ("s3:GetObject", "s3:PutObject")),
        (("s3", "GetObjectLockConfiguration"), ("s3:GetBucketObjectLockConfiguration",)),
        (("monitoring", "GetMetricData"), ("cloudwatch:GetMetricData",)),
        (("email", "SendEmail"), ("ses:SendEmail",)),
        (("route53", "ChangeResourceRecordSets"), ("route53:ChangeResourceRecordSets",)),
        (("sts", "GetCallerIdentity"), ()),
    ],
)
def test_operations_map_to_the_iam_actions_aws_documents(operation, expected) -> None:
    assert iam_actions(*operation) == expected


def test_committed_policies_match_the_estate(estate: Estate) -> None:
    """deploy/iam is generated (`python -m dr_automation.iam --out deploy/iam`): never edited by hand."""
    committed = {p.stem: json.loads(p.read_text()) for p in DEPLOY.glob("*.json")}
    assert committed == {f: policy_document(estate, f) for f in families()}


def test_s3_is_scoped_to_the_estates_buckets_and_failover_may_not_touch_backups_config(
    estate: Estate,
) -> None:
    backup = {s["Sid"]: s for s in policy_document(estate, "backup")["Statement"]}
    assert "arn:aws:s3:::leanvibe-backups-prod/*" in backup["S3Objects"]["Resource"]
    assert "*" not in backup["S3Objects"]["Resource"] + backup["S3Buckets"]["Resource"]
    assert "s3:PutObjectRetention" in backup["S3Objects"]["Action"]  # tier 4 writes under Object Lock
    failover = allowed(estate, "failover")
    assert "route53:ChangeResourceRecordSets" in failover and "s3:PutLifecycleConfiguration" not in failover
    assert "route53:ChangeResourceRecordSets" not in allowed(estate, "backup")
    assert not any(
        a.startswith(("iam:", "s3:DeleteBucket"))
        for f in families()
        if f != "drills"
        for a in allowed(estate, f)
    )
    # only the families that read sealed backups back may decrypt them (drills restore them too)
    assert {f for f in families() if "kms:Decrypt" in allowed(estate, f)} == {
        "verification",
        "restore",
        "drills",
    }


def test_unknown_family_is_refused_by_name(estate: Estate) -> None:
    with pytest.raises(UnknownFamilyError, match="family: unknown DAG family 'billing'"):
        operations(estate, "billing")


def test_undeclared_calls_are_reported_per_family(estate: Estate) -> None:
    keys = dag_keys(estate)
    key_of = {dag: key for key, dag in keys.items()}
    calls = [
        {
            "service": "route53",
            "action": "ChangeResourceRecordSets",
            "caller": "Op",
            "dag_key": key_of["regional_failover"],
        },
        {
            "service": "route53",
            "action": "ChangeResourceRecordSets",
            "caller": "Op",
            "dag_key": key_of["backup_tier1_realtime"],
        },
        {"service": "iam", "action": "DeleteRole", "caller": "Unknown", "dag_key": None},
        {"service": "s3", "action": "DeleteBucket", "caller": None, "dag_key": None},  # the sandbox's own
    ]
    assert undeclared(estate, calls, keys) == {
        "backup": ["route53:ChangeResourceRecordSets"],
        "(no DAG: Unknown)": ["iam:DeleteRole"],
    }


def test_what_drills_change_is_scoped_to_what_drills_make(estate: Estate) -> None:
    """A drill role may create and delete users, secrets, buckets, objects and DNS records: only
    its own (dr-drill-* names, drills/ keys, records under the drill domain)."""
    statements = {s["Sid"]: s for s in policy_document(estate, "drills")["Statement"]}
    iam = statements["DrillOwnedIam"]
    assert "iam:DeleteUser" in iam["Action"] and iam["Resource"] == ["arn:aws:iam::*:user/dr-drill-*"]
    s3 = statements["DrillOwnedS3"]
    assert {"s3:DeleteBucket", "s3:DeleteObject", "s3:PutObject"} <= set(s3["Action"])
    assert "arn:aws:s3:::leanvibe-backups-prod/drills/*" in s3["Resource"]
    assert not any(r in ("*", "arn:aws:s3:::leanvibe-backups-prod/*") for r in s3["Resource"])
    secrets = statements["DrillOwnedSecretsManager"]
    assert "secretsmanager:DeleteSecret" in secrets["Action"]
    assert secrets["Resource"] == ["arn:aws:secretsmanager:*:*:secret:dr-drill-*"]
    records = statements["DrillRecords"]
    assert records["Condition"]["ForAllValues:StringLike"][
        "route53:ChangeResourceRecordSetsNormalizedRecordNames"
    ] == ["*.drill.leanvibe.ai"]
    elsewhere = [a for sid, s in statements.items() if not sid.startswith("Drill") for a in s["Action"]]
    assert not [a for a in elsewhere if a.startswith(("iam:", "s3:Delete", "s3:Put", "secretsmanager:Put"))]
    assert "route53:ChangeResourceRecordSets" not in elsewhere
