"""
### DR readiness check

**What it proves:** every path the DR programme depends on works *right now*: the estate config is
valid, the primary database is available in AWS, every region's backup bucket exists, is versioned
and encrypted, and a toolbox pod on the cluster can reach the database and take a real backup
(a consistent `pg_dump` with per-table row counts and checksums) into the primary backup bucket.

**When to run it:** after deploying or changing the bundle, before a drill, and during an incident
before trusting a restore. Manual or REST-triggered; it changes nothing except writing one trial
backup under `readiness/` in the primary backup bucket.

**If it fails:** the failed task names the broken dependency. `validate_estate`: fix the config file
named in the error. `primary_database_available`: the RDS instance is missing or not available.
`backup_buckets_ready`: a bucket is missing, unversioned or unencrypted (see the task log for which).
`toolbox_selfcheck` / `trial_backup`: the pod log says whether the database or the bucket was
unreachable; check the `dr-primary-database` Secret and the pod's service account.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.sensors.rds import RdsDbSensor
from airflow.sdk import dag, task

from dr_automation.dag_defaults import dag_tags, default_args
from dr_automation.estate import load_estate
from dr_automation.pods import toolbox_pod

estate = load_estate()
primary = estate.primary_region
db = estate.databases["primary"]
dsn_secret = {"PRIMARY_DB_DSN": (db["credentials_secret"]["name"], db["credentials_secret"]["key"])}


@dag(
    dag_id="dr_readiness_check",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(estate, retries=2),
    tags=dag_tags("readiness"),
    doc_md=__doc__,
)
def dr_readiness_check() -> None:
    @task
    def validate_estate() -> dict:
        """Re-validate at run time: the file may have changed since the DAG was parsed."""
        current = load_estate()
        return {
            "estate": current.path,
            "regions": {name: r.role for name, r in current.regions.items()},
            "tiers": sorted(current.tiers),
        }

    primary_database_available = RdsDbSensor(
        task_id="primary_database_available",
        db_identifier=db["rds_instance_id"],
        db_type="instance",
        target_statuses=["available"],
        aws_conn_id=estate.connections["aws"],
        region_name=db["region"],
        poke_interval=5,
        timeout=120,
        mode="reschedule",
    )

    @task
    def backup_buckets_ready() -> dict:
        """A bucket that is missing, unversioned or unencrypted cannot hold a trustworthy backup."""
        from dr_automation.readiness import check_backup_buckets

        return check_backup_buckets(load_estate())

    selfcheck = toolbox_pod(
        "toolbox_selfcheck",
        ["selfcheck", "--dsn-env", "PRIMARY_DB_DSN", "--bucket", primary.backup_bucket],
        estate=estate,
        secret_env=dsn_secret,
    )

    trial_backup = toolbox_pod(
        "trial_backup",
        [
            "db-dump",
            "--dsn-env",
            "PRIMARY_DB_DSN",
            "--out",
            f"s3://{primary.backup_bucket}/readiness/{{{{ run_id | replace(':', '_') }}}}/primary.dump",
            "--kms-key-id",
            primary.kms_key_alias,
            "--label",
            "purpose=readiness",
        ],
        estate=estate,
        secret_env=dsn_secret,
        size="medium",
    )

    validate_estate() >> [primary_database_available, backup_buckets_ready()] >> selfcheck >> trial_backup


dr_readiness_check()
