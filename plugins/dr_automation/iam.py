"""The minimum IAM policy of each DAG family, from the AWS calls its tasks make.

Each family declares the AWS API operations its tasks call (``service`` as in the SigV4 scope,
``action`` as the API names it); the backup tiers derive theirs from their plans
(``dr_automation.backup.plan.aws_actions``). ``policy_document`` turns that into an IAM policy:
operations mapped to IAM actions (``ListObjectsV2`` needs ``s3:ListBucket``, ``CopyObject`` needs
``s3:GetObject`` and ``s3:PutObject``...), S3 scoped to the estate's buckets and Route 53 record
changes to its hosted zone; the rest on ``*`` where AWS has no resource-level permissions for them.

The sandbox's emulator logs every call with the DAG that made it (``DagRunKey`` in the Amazon
provider's User-Agent); the e2e tests check each family's calls against its policy, so a policy
cannot silently fall behind the code.

    python -m dr_automation.iam [--estate FILE] [--out DIR]   # one <family>.json per family
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate

Operation = tuple[str, str]  # (SigV4 service, API operation)

# Sending notifications: every family that notifies (SNS topics, SES mail).
NOTIFY: tuple[Operation, ...] = (
    ("sns", "Publish"),
    ("sns", "ListTopics"),
    ("email", "SendEmail"),
    ("email", "SendRawEmail"),  # the provider's SesHook.send_email
)
# Reading which region serves: Route 53 records, health checks and their status.
ROUTING_VIEW: tuple[Operation, ...] = (
    ("route53", "ListHostedZonesByName"),
    ("route53", "ListResourceRecordSets"),
    ("route53", "ListHealthChecks"),
    ("route53", "GetHealthCheck"),
    ("route53", "GetHealthCheckStatus"),
    ("route53", "ListTagsForResources"),
)

FAMILY_DAGS: dict[str, tuple[str, ...]] = {
    "failover": ("dns_failover_setup", "regional_failover", "regional_failback"),
    "health": ("region_health_monitor",),
    "readiness": ("dr_readiness_check",),
    "verification": ("verify_backups",),
    "restore": ("restore_from_backup",),
    "drills": (
        "dr_test_quarterly",
        "dr_test_database_failure",
        "dr_test_region_outage",
        "dr_test_complete_disaster",
        "dr_test_data_corruption",
        "dr_test_security_incident",
    ),
}
# What the drill framework itself calls (results, reports under Object Lock, past reports, the
# registry of drills under way); each scenario adds its own
# (``dr_automation.drills.scenarios.<name>.AWS_ACTIONS``).
DRILL_FRAMEWORK: tuple[Operation, ...] = (
    ("s3", "PutObject"),
    ("s3", "GetObject"),
    ("s3", "ListObjectsV2"),
    ("s3", "ListObjectVersions"),
    ("s3", "DeleteObjects"),
    ("s3", "PutObjectRetention"),
    ("kms", "GenerateDataKey"),
    ("kms", "Decrypt"),
)
# What a drill makes for itself is named dr-drill-<scenario>-<hash> (dr_automation.drills.scenario).
DRILL_RESOURCE_PREFIX = "dr-drill-"

FAMILY_OPERATIONS: dict[str, tuple[Operation, ...]] = {
    "failover": (
        *ROUTING_VIEW,
        *NOTIFY,
        ("route53", "ChangeResourceRecordSets"),
        ("route53", "GetChange"),
        ("route53", "CreateHealthCheck"),
        ("route53", "UpdateHealthCheck"),
        ("route53", "ChangeTagsForResource"),
        ("autoscaling", "DescribeAutoScalingGroups"),
        ("autoscaling", "UpdateAutoScalingGroup"),
        ("elasticloadbalancing", "DescribeLoadBalancers"),
        ("elasticloadbalancing", "DescribeListeners"),
        ("elasticloadbalancing", "DescribeRules"),
        ("elasticloadbalancing", "DescribeTags"),
        ("elasticloadbalancing", "ModifyRule"),
        ("s3", "PutObject"),
        ("s3", "GetObject"),
        ("s3", "HeadObject"),
    ),
    "health": (
        *ROUTING_VIEW,
        *NOTIFY,
        ("monitoring", "GetMetricData"),
        ("s3", "GetObject"),
        ("s3", "HeadObject"),
    ),
    "readiness": (
        *NOTIFY,
        ("s3", "HeadBucket"),
        ("s3", "GetBucketEncryption"),
        ("s3", "GetBucketVersioning"),
        ("s3", "PutObject"),
        ("s3", "GetObject"),
        ("s3", "HeadObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "DeleteObject"),
        ("kms", "DescribeKey"),
        ("rds", "DescribeDBInstances"),
    ),
    # reads every backup, restores archives and snapshots into scratch, publishes verified RPO
    "verification": (
        *NOTIFY,
        ("s3", "GetObject"),
        ("s3", "HeadObject"),
        ("s3", "ListObjectsV2"),
        ("s3", "PutObject"),
        ("s3", "ListObjectVersions"),
        ("s3", "RestoreObject"),
        ("s3", "DeleteObject"),
        ("s3", "DeleteObjects"),
        ("kms", "Decrypt"),
        ("kms", "DescribeKey"),
        ("rds", "DescribeDBSnapshots"),
        ("rds", "DescribeDBInstances"),
        ("rds", "RestoreDBInstanceFromDBSnapshot"),
        ("rds", "DeleteDBInstance"),
        ("monitoring", "PutMetricData"),
    ),
}

# SigV4 service name -> IAM action prefix, where they differ.
_IAM_PREFIX = {"monitoring": "cloudwatch", "email": "ses"}
# S3 API operations whose IAM permission has another name (or needs two).
_S3_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "ListObjectsV2": ("ListBucket",),
    "ListObjects": ("ListBucket",),
    "ListObjectVersions": ("ListBucketVersions",),
    "HeadBucket": ("ListBucket",),
    "HeadObject": ("GetObject",),
    "CopyObject": ("GetObject", "PutObject"),
    "CreateMultipartUpload": ("PutObject",),
    "UploadPart": ("PutObject",),
    "CompleteMultipartUpload": ("PutObject",),
    "AbortMultipartUpload": ("AbortMultipartUpload",),
    "DeleteObjects": ("DeleteObject",),
    "GetObjectLockConfiguration": ("GetBucketObjectLockConfiguration",),
    "PutObjectLockConfiguration": ("PutBucketObjectLockConfiguration",),
    "GetBucketLifecycleConfiguration": ("GetLifecycleConfiguration",),
    "PutBucketLifecycleConfiguration": ("PutLifecycleConfiguration",),
    "GetBucketEncryption": ("GetEncryptionConfiguration",),
    "DeleteObject": ("DeleteObject", "DeleteObjectVersion"),  # with a VersionId, the latter
    "RestoreObject": ("RestoreObject",),
}
# S3 permissions that act on a bucket (the rest act on objects).
_S3_BUCKET_LEVEL = frozenset(
    {
        "ListBucket",
        "ListBucketVersions",
        "GetBucketObjectLockConfiguration",
        "PutBucketObjectLockConfiguration",
        "GetLifecycleConfiguration",
        "PutLifecycleConfiguration",
        "GetEncryptionConfiguration",
        "GetBucketVersioning",
    }
)
# Operations that need no permission at all.
_UNAUTHORISED = frozenset({("sts", "GetCallerIdentity")})


class UnknownFamilyError(ValueError):
    def __init__(self, family: str) -> None:
        super().__init__(f"family: unknown DAG family {family!r} (known: {', '.join(sorted(families()))})")


def families() -> tuple[str, ...]:
    return ("backup", *FAMILY_DAGS)


def family_dags(estate: Estate) -> dict[str, tuple[str, ...]]:
    """Every family's DAG ids (the backup tiers' from the estate)."""
    return {"backup": tuple(t.dag_id for t in estate.tiers.values()), **FAMILY_DAGS}


def family_of(estate: Estate, dag_id: str) -> str | None:
    return next((f for f, dags in family_dags(estate).items() if dag_id in dags), None)


def operations(estate: Estate, family: str) -> frozenset[Operation]:
    """The AWS operations the family's tasks may call."""
    if family == "backup":
        from dr_automation.backup.plan import aws_actions, tier_plan

        ops: set[Operation] = set(NOTIFY)
        for key, tier in estate.tiers.items():
            ops.update(aws_actions(tier_plan(estate, key), occasional=True))
            if tier.object_lock:  # writing with a retention date needs its own permission
                ops.add(("s3", "PutObjectRetention"))
        return frozenset(ops)
    if family == "restore":
        from dr_automation.restore.plan import AWS_ACTIONS as RESTORE_ACTIONS

        return frozenset((*NOTIFY, *RESTORE_ACTIONS))
    if family == "drills":
        return frozenset((*NOTIFY, *DRILL_FRAMEWORK, *drill_scenario_operations()))
    if family not in FAMILY_OPERATIONS:
        raise UnknownFamilyError(family)
    return frozenset(FAMILY_OPERATIONS[family])


def drill_scenario_operations() -> set[Operation]:
    import importlib

    from dr_automation.drills.report import SCENARIOS

    ops: set[Operation] = set()
    for name in SCENARIOS:
        module = importlib.import_module(f"dr_automation.drills.scenarios.{name}")
        for entry in module.AWS_ACTIONS:
            service, _, action = entry.partition(":")
            ops.add((service, action))
    return ops


def iam_actions(service: str, action: str) -> tuple[str, ...]:
    """The IAM actions an API operation needs (``s3:ListBucket`` for ListObjectsV2...)."""
    if (service, action) in _UNAUTHORISED:
        return ()
    if service == "s3":
        return tuple(f"s3:{p}" for p in _S3_PERMISSIONS.get(action, (action,)))
    return (f"{_IAM_PREFIX.get(service, service)}:{action}",)


def allowed(estate: Estate, family: str) -> frozenset[str]:
    return frozenset(a for op in operations(estate, family) for a in iam_actions(*op))


def _buckets(estate: Estate) -> list[str]:
    raw = estate.raw
    names = {r.backup_bucket for r in estate.regions.values()}
    names.update((raw.get("archive") or {}).get("buckets", {}).values())
    for tier in estate.tiers.values():
        names.update(s["bucket"] for s in tier.systems if s.get("bucket"))
    return sorted(names)


def policy_document(estate: Estate, family: str) -> dict[str, Any]:
    """The family's IAM policy for this estate: least privilege, S3 and Route 53 scoped.

    The drills' family also makes and removes resources of its own (an IAM user, a secret, an Object
    Lock bucket, objects under ``drills/``): what only it needs is scoped to those names, so a drill
    role can never delete a production bucket, user or secret."""
    actions = sorted(allowed(estate, family))
    drill_only: list[str] = []
    if family == "drills":
        drill_only = [a for a in actions if _drill_scoped(a)]
        actions = [a for a in actions if not _drill_scoped(a)]
    buckets = _buckets(estate)
    s3_bucket = [a for a in actions if a.startswith("s3:") and a[3:] in _S3_BUCKET_LEVEL]
    s3_object = [a for a in actions if a.startswith("s3:") and a[3:] not in _S3_BUCKET_LEVEL]
    zone_scoped = [
        a for a in actions if a in ("route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets")
    ]
    other = [a for a in actions if not a.startswith("s3:") and a not in zone_scoped]
    statements: list[dict[str, Any]] = []
    if s3_bucket:
        statements.append(_statement("S3Buckets", s3_bucket, [f"arn:aws:s3:::{b}" for b in buckets]))
    if s3_object:
        statements.append(_statement("S3Objects", s3_object, [f"arn:aws:s3:::{b}/*" for b in buckets]))
    if zone_scoped:
        # the hosted zone's id is only known in the account: scope by the zone's records' ARN pattern
        statements.append(_statement("Route53Zone", zone_scoped, ["arn:aws:route53:::hostedzone/*"]))
    if other:
        statements.append(_statement("NoResourceLevelPermissions", other, ["*"]))
    statements.extend(_drill_statements(estate, drill_only, buckets))
    return {"Version": "2012-10-17", "Statement": statements}


def _drill_scoped(action: str) -> bool:
    """Whether a drill may do this only to what drills make: every write, delete and IAM change."""
    service, _, name = action.partition(":")
    if service == "s3":
        return not name.startswith(("Get", "List", "Head"))
    if service == "secretsmanager":
        return name != "ListSecrets"  # (list has no resource-level permission)
    return service == "iam" or action == "route53:ChangeResourceRecordSets"


def _drill_statements(estate: Estate, actions: list[str], buckets: list[str]) -> list[dict[str, Any]]:
    """What drills change, on what drills make: ``dr-drill-*`` names, ``drills/`` and
    ``reports/drills/`` keys, and DNS records under ``drills.record_domain``."""
    own = DRILL_RESOURCE_PREFIX
    scopes = {
        "s3": [
            f"arn:aws:s3:::{own}*",
            f"arn:aws:s3:::{own}*/*",
            *(f"arn:aws:s3:::{b}/{p}*" for b in buckets for p in ("drills/", "reports/drills/")),
        ],
        "iam": [f"arn:aws:iam::*:user/{own}*"],
        "secretsmanager": [f"arn:aws:secretsmanager:*:*:secret:{own}*"],
    }
    statements = []
    for service, resources in scopes.items():
        mine = [a for a in actions if a.startswith(f"{service}:")]
        if mine:
            sid = {"s3": "S3", "iam": "Iam", "secretsmanager": "SecretsManager"}[service]
            statements.append(_statement(f"DrillOwned{sid}", mine, resources))
    if "route53:ChangeResourceRecordSets" in actions:
        records = _statement(
            "DrillRecords", ["route53:ChangeResourceRecordSets"], ["arn:aws:route53:::hostedzone/*"]
        )
        domain = (estate.raw.get("drills") or {}).get("record_domain", "drill.invalid")
        records["Condition"] = {
            "ForAllValues:StringLike": {
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": [f"*.{domain}"]
            }
        }
        statements.append(records)
    return statements


def _statement(sid: str, actions: Iterable[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}


def undeclared(
    estate: Estate, calls: Iterable[Mapping[str, Any]], dag_keys: Mapping[str, str]
) -> dict[str, list[str]]:
    """Calls (from the sandbox emulator's log) that their DAG family's policy does not allow.

    `dag_keys` maps the provider's DagRunKey (uuid5 of a dag_id) to the dag_id. A call made by an
    Airflow component outside a task (a trigger: no DAG key) must be allowed by some family.
    """
    union = frozenset(a for f in families() for a in allowed(estate, f))
    missing: dict[str, set[str]] = {}
    for call in calls:
        if call.get("caller") is None:  # not Airflow's (the sandbox's seeding, the DNS stand-in)
            continue
        dag_id = dag_keys.get(call.get("dag_key") or "")
        family = family_of(estate, dag_id) if dag_id else None
        permitted = allowed(estate, family) if family else union
        need = iam_actions(call["service"], call["action"])
        gaps = [a for a in need if a not in permitted]
        if gaps:
            missing.setdefault(family or f"(no DAG: {call['caller']})", set()).update(gaps)
    return {k: sorted(v) for k, v in missing.items()}


def dag_keys(estate: Estate) -> dict[str, str]:
    """DagRunKey (as the Amazon provider computes it) -> dag_id, for every family's DAG."""
    from airflow.providers.amazon.aws.utils.identifiers import generate_uuid

    return {generate_uuid(d): d for dags in family_dags(estate).values() for d in dags}


def main(argv: list[str] | None = None) -> int:
    from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate

    parser = argparse.ArgumentParser(description="Write each DAG family's minimum IAM policy.")
    parser.add_argument("--estate", type=Path, default=Path(DEFAULT_ESTATE_PATH))
    parser.add_argument("--out", type=Path, help="directory for <family>.json (default: print)")
    args = parser.parse_args(argv)
    estate = load_estate(args.estate)
    documents = {f: policy_document(estate, f) for f in families()}
    if args.out is None:
        print(json.dumps(documents, indent=2))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for family, document in documents.items():
        (args.out / f"{family}.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
