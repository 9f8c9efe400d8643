"""Where a tier's backups are written and where they end up: pure functions of the estate config.

Every run of a tier writes its components to one *work* location (the primary region's backup bucket,
SSE-KMS with the region's key), then places copies in the tier's final *locations*:

- tier not archival, not cross-region (tier 1): the work location is the only location;
- cross-region (tier 2): work (primary, the tier's storage class) + a copy in the DR region;
- archival storage class (GLACIER, DEEP_ARCHIVE; tier 3): components write STANDARD under
  ``staging/`` (archived objects cannot be read or copied until restored), then copies in the tier's
  class go to the primary and the DR region; staging expires after a day (lifecycle rule);
- Object Lock (tier 4): staging as above, copies to every archive bucket (two regions) under
  COMPLIANCE retention for ``archive.object_lock_years``.

A backup's id is its run id made safe for S3 keys, so every task of a run (and the pods, through the
``dr_backup_id`` Jinja filter) derives the same prefix without passing it around.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate, Tier

ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
BACKUP_ID_FILTER = "dr_backup_id"
BACKUP_ID_TEMPLATE = "{{ run_id | " + BACKUP_ID_FILTER + " }}"
DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY_SECONDS = 30
MANIFEST_NAME = "manifest.json"
RESULTS_DIR = "_results"
# A pod- or Python-run type's systems are mapped in batches of at most BATCH_SIZE per task instance
# (each batch backs its systems up side by side, BATCH_WORKERS at a time): a task instance and a pod
# cost seconds of scheduling each, a system's own backup a fraction of that. Up to MIN_INSTANCES
# systems stay one instance each (the dr_backup pool's slots run them side by side anyway).
BATCH_SIZE = 25
BATCH_WORKERS = 8
MIN_INSTANCES = 4

# How each system type is backed up: a toolbox pod, a Python task, S3 copies, or RDS snapshots.
POD_TYPES = ("postgres_database", "kubernetes_objects", "neo4j")
PYTHON_TYPES = ("postgres_wal", "redis_sessions", "secrets", "cloudwatch_metrics", "machine_images")
S3_TYPES = ("s3_bucket", "s3_prefix")
SNAPSHOT_TYPES = ("rds_snapshot",)
ALL_TYPES = POD_TYPES + PYTHON_TYPES + S3_TYPES + SNAPSHOT_TYPES

# Task ids of a tier DAG besides the per-type component tasks (backup_<type>).
CHECK_RETENTION = "check_retention"
COPY_S3 = "copy_s3_objects"
CREATE_SNAPSHOT = "create_rds_snapshot"
PLAN_SNAPSHOT_COPIES = "plan_rds_snapshot_copies"
COPY_SNAPSHOT = "copy_rds_snapshot"
RECORD_SNAPSHOT = "record_rds_snapshot"
FIND_EXPIRED_SNAPSHOTS = "find_expired_snapshots"
DELETE_EXPIRED_SNAPSHOTS = "delete_expired_snapshots"
PLAN_PLACEMENT = "plan_placement"
PLACE = "place_copies"
WRITE_MANIFEST = "write_manifest"
PUBLISH = "publish"

# Every AWS call a tier makes, by what makes it: the IAM permissions the tier needs, and what the
# throttling tests inject faults on (service = SigV4 signing name).
_RUN_ACTIONS = (
    ("s3", "GetBucketLifecycleConfiguration"),
    ("s3", "GetBucketVersioning"),
    ("s3", "GetBucketEncryption"),
    ("s3", "ListObjectsV2"),
    ("s3", "HeadObject"),
    ("s3", "PutObject"),
)
AWS_ACTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgres_database": (("s3", "PutObject"), ("s3", "HeadObject")),
    "kubernetes_objects": (("s3", "PutObject"), ("s3", "HeadObject")),
    "neo4j": (("s3", "PutObject"), ("s3", "HeadObject")),
    "postgres_wal": (("rds", "DescribeDBInstances"), ("s3", "PutObject")),
    "redis_sessions": (("s3", "PutObject"),),
    "secrets": (("secretsmanager", "GetSecretValue"), ("kms", "GenerateDataKey"), ("s3", "PutObject")),
    "cloudwatch_metrics": (
        ("monitoring", "ListMetrics"),
        ("monitoring", "GetMetricData"),
        ("s3", "PutObject"),
    ),
    "machine_images": (("ec2", "DescribeImages"), ("s3", "PutObject")),
    "s3_bucket": (("s3", "ListObjectsV2"), ("s3", "CopyObject")),
    "s3_prefix": (("s3", "ListObjectsV2"), ("s3", "CopyObject")),
    "rds_snapshot": (
        ("rds", "CreateDBSnapshot"),
        ("rds", "DescribeDBSnapshots"),
        ("rds", "CopyDBSnapshot"),
        ("kms", "DescribeKey"),
        ("s3", "PutObject"),
    ),
}

# Calls made only when something is missing: a lifecycle rule to put back, an image without its DR
# copy yet (IAM must allow them; a run that finds everything in place does not make them).
OCCASIONAL_ACTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "machine_images": (("ec2", "CopyImage"), ("ec2", "CreateTags")),
}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RDS_UNSAFE = re.compile(r"[^A-Za-z0-9]+")


def backup_id(run_id: str) -> str:
    """The run id as an S3-key-safe id (`scheduled__2026-11-04T10:05:00+00:00` ->
    `scheduled__2026-11-04T10-05-00-00-00`); distinct run ids stay distinct in practice."""
    cleaned = _UNSAFE.sub("-", run_id).strip("-.")
    if not cleaned:
        raise ValueError(f"run_id: {run_id!r} has no character usable in a backup id")
    return cleaned[:200]


def rds_identifier(text: str) -> str:
    """An RDS snapshot identifier: lowercase letters, digits and single hyphens, starting with a letter
    (RDS compares identifiers case-insensitively and answers them in lowercase)."""
    cleaned = _RDS_UNSAFE.sub("-", text).strip("-").lower()
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"dr-{cleaned}"
    return cleaned[:255].rstrip("-")


def component_task_id(system_type: str) -> str:
    """The mapped task backing up every system of one pod- or Python-run type."""
    return f"backup_{system_type}"


def batches(
    systems: Sequence[Mapping[str, Any]], size: int = BATCH_SIZE, least: int = MIN_INSTANCES
) -> list[list[Mapping[str, Any]]]:
    """Systems in config order, split evenly into ceil(N / `size`) batches but at least `least`
    (never more than N: one system each while N <= `least`); instance i backs up batch i."""
    if size < 1 or least < 1:
        raise ValueError(f"batches: size and least must be at least 1 (got {size}, {least})")
    count = min(len(systems), max(least, -(-len(systems) // size)))
    bounds = [i * len(systems) // count for i in range(count + 1)] if count else [0]
    return [list(systems[bounds[i] : bounds[i + 1]]) for i in range(count)]


def batch_label(names: Sequence[str]) -> str:
    """A batch's name in the UI and in S3 keys: the system's name, or `<first>+<how many more>`."""
    return names[0] if len(names) == 1 else f"{names[0]}+{len(names) - 1}"


@dataclass(frozen=True)
class Location:
    """A bucket in a region that holds a copy of the tier's backups, and how it is stored there."""

    region: str
    bucket: str
    kms_key_alias: str
    storage_class: str
    object_lock: bool = False

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def describe(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "bucket": self.bucket,
            "storage_class": self.storage_class,
            "kms_key": self.kms_key_alias,
            "object_lock": self.object_lock,
        }


@dataclass(frozen=True)
class TierPlan:
    """One tier's DAG, work location, final locations and systems."""

    key: str
    dag_id: str
    schedule: str
    rpo_minutes: int
    retention_days: int
    storage_class: str
    staged: bool
    work: Location
    copies: tuple[Location, ...]
    systems: tuple[Mapping[str, Any], ...]
    retries: int
    retry_delay_seconds: int
    lock_mode: str | None = None
    lock_years: int | None = None

    # -- keys -------------------------------------------------------------------------------------
    def final_prefix(self, backup: str) -> str:
        return f"backups/{self.key}/{backup}/"

    def work_prefix(self, backup: str) -> str:
        return f"staging/{self.key}/{backup}/" if self.staged else self.final_prefix(backup)

    def component_prefix(self, backup: str, system: str) -> str:
        return f"{self.work_prefix(backup)}{system}/"

    def result_key(self, backup: str, system: str) -> str:
        """Where a toolbox pod leaves its JSON result, success or failure (read by the manifest)."""
        return f"{self.work_prefix(backup)}{RESULTS_DIR}/{system}.json"

    def manifest_keys(self, backup: str) -> list[tuple[Location, str]]:
        return [(loc, f"{self.final_prefix(backup)}{MANIFEST_NAME}") for loc in self.locations]

    # -- locations --------------------------------------------------------------------------------
    @property
    def locations(self) -> tuple[Location, ...]:
        """Where the backups end up (the first is home); staged work copies expire and are not listed."""
        return self.copies if self.staged else (self.work, *self.copies)

    @property
    def home(self) -> Location:
        return self.locations[0]

    # -- systems ----------------------------------------------------------------------------------
    @property
    def types(self) -> list[str]:
        """The system types present, in the order of ALL_TYPES (one mapped task group per type)."""
        present = {s["type"] for s in self.systems}
        return [t for t in ALL_TYPES if t in present]

    def systems_of(self, *types: str) -> list[Mapping[str, Any]]:
        return [s for s in self.systems if s["type"] in types]

    def batches_of(self, system_type: str) -> list[list[Mapping[str, Any]]]:
        """The mapped task instances of a pod- or Python-run type, each a batch of its systems."""
        return batches(self.systems_of(system_type))

    def system(self, name: str) -> Mapping[str, Any]:
        for s in self.systems:
            if s["name"] == name:
                return s
        raise KeyError(f"tiers.{self.key}.systems: no system named {name!r}")


def _tier_option(estate: Estate, key: str, name: str, default: int) -> int:
    value = estate.raw["tiers"][key].get(name)
    return default if value is None else int(value)


def tier_plan(estate: Estate, key: str) -> TierPlan:
    """The plan of tier `key` (e.g. 'tier1_realtime'); raises KeyError naming the known tiers."""
    if key not in estate.tiers:
        raise KeyError(f"tiers.{key}: no such tier (tiers: {', '.join(estate.tiers)})")
    tier: Tier = estate.tiers[key]
    primary = estate.primary_region
    archival = tier.storage_class in ARCHIVE_CLASSES
    staged = archival or tier.object_lock
    work = Location(
        region=primary.name,
        bucket=primary.backup_bucket,
        kms_key_alias=primary.kms_key_alias,
        storage_class="STANDARD" if staged else tier.storage_class,
    )
    copies: list[Location] = []
    lock_mode = lock_years = None
    if tier.object_lock:
        archive = estate.raw["archive"]
        lock_mode, lock_years = archive["object_lock_mode"], int(archive["object_lock_years"])
        copies = [
            Location(region, bucket, estate.regions[region].kms_key_alias, tier.storage_class, True)
            for region, bucket in archive["buckets"].items()
        ]
    else:
        if staged:
            copies.append(
                Location(primary.name, primary.backup_bucket, primary.kms_key_alias, tier.storage_class)
            )
        if tier.cross_region:
            dr = estate.dr_region
            copies.append(Location(dr.name, dr.backup_bucket, dr.kms_key_alias, tier.storage_class))
    return TierPlan(
        key=key,
        dag_id=tier.dag_id,
        schedule=tier.schedule,
        rpo_minutes=tier.rpo_minutes,
        retention_days=tier.retention_days,
        storage_class=tier.storage_class,
        staged=staged,
        work=work,
        copies=tuple(copies),
        systems=tuple(tier.systems),
        retries=_tier_option(estate, key, "retries", DEFAULT_RETRIES),
        retry_delay_seconds=_tier_option(estate, key, "retry_delay_seconds", DEFAULT_RETRY_DELAY_SECONDS),
        lock_mode=lock_mode,
        lock_years=lock_years,
    )


def aws_actions(plan: TierPlan, *, occasional: bool = False) -> list[tuple[str, str]]:
    """(service, action) of every AWS call one run of the tier makes when everything is in place;
    with `occasional`, also those made to put something missing in place (the IAM permissions)."""
    actions = set(_RUN_ACTIONS)
    for system_type in plan.types:
        actions.update(AWS_ACTIONS[system_type])
        if occasional:
            actions.update(OCCASIONAL_ACTIONS.get(system_type, ()))
    if occasional:
        actions.add(("s3", "PutBucketLifecycleConfiguration"))
    if plan.copies:
        actions.add(("s3", "CopyObject"))
    if any(loc.object_lock for loc in plan.locations):
        actions.add(("s3", "GetObjectLockConfiguration"))
    return sorted(actions)
