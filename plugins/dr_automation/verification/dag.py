"""Build the ``verify_backups`` DAG from the estate.

    select_backups -> check_backups -> restore_database[]   (toolbox pods, db-verify)
                                            -> restore_snapshot[]   (scratch RDS instances)
                           -> conclude (ALL_DONE: records, verified RPO, metrics, state, alerts)
                           -> cleanup_scratch (ALL_DONE teardown: scratch databases, instances, objects)
    watcher (ONE_FAILED: a failed task fails the run, though the teardown after it succeeded)

Scheduled on any tier's asset event, or the daily sweep (``AssetOrTimeSchedule``); one run at a time
(the verified-RPO state is read, updated and written by each run).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dr_automation.verification.settings import DAG_ID, SCRATCH_DSN_ENV, settings
from dr_automation.verification.targets import BACKUP_ID_PATTERN

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from dr_automation.estate import Estate

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
SELECT, CHECK, RESTORE_DB, RESTORE_SNAPSHOT = (
    "select_backups",
    "check_backups",
    "restore_database",
    "restore_snapshot",
)
CONCLUDE, CLEANUP, WATCHER = "conclude", "cleanup_scratch", "watcher"
PLAN_DB, PLAN_SNAPSHOT = "plan_database_restores", "plan_snapshot_restores"


def doc_md(estate: Estate) -> str:
    s = settings(estate)
    tiers = "\n".join(
        f"- `{k}` (`{t.dag_id}`): RPO {t.rpo_minutes} min, asset `dr_backup_{k}`"
        for k, t in estate.tiers.items()
    )
    return f"""
### Verify backups (`{DAG_ID}`)

**Why:** an untested backup is no backup. Every backup is proven to restore, and the age of the newest
fully verified backup (the *verified RPO*) is published and alerted on, even when the backup DAGs are green.

**When it runs:** on each tier's asset event (a backup run completed), and daily at `{s.sweep_schedule}` UTC
for backups not verified yet (at most {s.sweep_max_backups_per_tier} per tier). Manually: `tier` (sweep of that
tier) or `tier` + `backup_id` (that backup; an unknown id fails `select_backups` naming `backup_id`).

{tiers}

**What it checks**, per manifest entry and location: exists and is available (archives are restored
first), SSE-KMS with the location's key, size and SHA-256 recomputed from the bytes against the manifest
(the reason says whether the object changed or the manifest is wrong); the content parses and validates
(Kubernetes objects re-appliable, sealed secrets open, Neo4j export consistent, ...); each database dump is
restored by a toolbox pod into a scratch database on the scratch server (`{s.scratch_connection}`), whose
per-table row counts and checksums must equal those recorded at backup time; each RDS snapshot (and its
cross-region copy) is restored to a scratch instance ({s.scratch_instance_class}), checked and deleted.

**Where the answer is:** `verification.json` beside each manifest (every check, result, reason);
`s3://{estate.primary_region.backup_bucket}/verification/state.json` (verified RPO per tier); CloudWatch
`{s.metrics_namespace}` `VerifiedRPOMinutes`, `VerifiedRPOBreached`, `VerificationFailures` (dimension `Tier`).

**Alerts** (incident route of `{DAG_ID}`): any failed check (backup, entry, reason); a tier whose verified
RPO exceeds its RPO.

**If it fails:** `conclude` names every failed backup and why: treat that backup as unusable and check the
previous one's record. `cleanup_scratch` failing means a scratch database, instance or object is left: its
error names them; remove them by hand, then clear the task. A failed run is never green: `watcher`.
"""


def build_verify_dag(estate: Estate) -> DAG:
    from airflow.sdk import DAG, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable, Param, task
    from airflow.task.trigger_rule import TriggerRule

    from dr_automation.backup.assets import tier_asset
    from dr_automation.dag_defaults import dag_tags, default_args
    from dr_automation.pods import SAMPLE_ARGUMENTS, toolbox_pod_partial

    conf = settings(estate)
    tiers = list(estate.tiers)
    schedule = AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(conf.sweep_schedule, timezone="UTC"),
        assets=AssetAny(*[tier_asset(estate, key) for key in tiers]),
    )
    poll = float(estate.kubernetes.get("pod_poll_seconds", 1.0))

    with DAG(
        dag_id=DAG_ID,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(estate, retries=2, retry_delay_seconds=10),
        dagrun_timeout=timedelta(hours=6),
        params={
            "tier": Param(
                None,
                type=["null", "string"],
                enum=[None, *tiers],
                title="Tier",
                description="Verify this tier only (with backup_id: that backup; alone: its unverified backups).",
            ),
            "backup_id": Param(
                None,
                type=["null", "string"],
                pattern=BACKUP_ID_PATTERN,
                title="Backup id",
                description="A backup of `tier` to verify (its directory under backups/<tier>/), e.g. "
                "scheduled__2026-11-04T10-05-00-00-00.",
            ),
        },
        tags=dag_tags("verification", "backup"),
        doc_md=doc_md(estate),
    ) as dag:

        @task(task_id=SELECT)
        def select_backups(**context: Any) -> dict[str, Any]:
            """Which backups: the requested one, the triggering asset events', or the unverified."""
            from airflow.sdk.exceptions import AirflowFailException

            from dr_automation.verification.targets import VerificationInputError, select

            try:
                return select(estate, dict(context["params"]), context.get("triggering_asset_events"))
            except VerificationInputError as exc:
                raise AirflowFailException(f"Invalid input for param {exc}") from None

        @task(task_id=CHECK)
        def check_backups(selection: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Manifest, objects (exists, encrypted, checksum) and content of every entry."""
            from dr_automation.verification.verify import check_backup

            checked = [check_backup(estate, context["run_id"], t) for t in selection["targets"]]
            database_jobs = [job for c in checked for job in c.pop("database_jobs")]
            snapshot_jobs = [job for c in checked for job in c.pop("snapshot_jobs")]
            return {"checked": checked, "database_jobs": database_jobs, "snapshot_jobs": snapshot_jobs}

        @task(task_id=PLAN_DB)
        def plan_database_restores(checked: dict[str, Any]) -> list[list[str]]:
            """The toolbox arguments of each dump's restore test (one pod each)."""
            return [job["arguments"] for job in checked["database_jobs"]]

        @task(task_id=PLAN_SNAPSHOT)
        def plan_snapshot_restores(checked: dict[str, Any]) -> list[dict[str, Any]]:
            return checked["snapshot_jobs"]

        @task(task_id=RESTORE_SNAPSHOT, map_index_template="{{ dr_system }}")
        def restore_snapshot(job: dict[str, Any], **context: Any) -> dict[str, Any]:
            """Restore to a scratch instance, check it, delete it."""
            from dr_automation.backup.components import label_instance
            from dr_automation.verification.restores import restore_snapshot as restore

            label_instance(context, f"{job['system']} {job['region']}")
            return restore(estate, job)

        @task(task_id=CONCLUDE, trigger_rule=TriggerRule.ALL_DONE, retries=0, on_failure_callback=None)
        def conclude(**context: Any) -> dict[str, Any]:
            """Records beside the manifests, verified RPO (state + metrics), alerts; fails naming
            every backup that failed (it alerts itself: no second page from the failure callback)."""
            from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

            from dr_automation.verification.record import VerificationFailed
            from dr_automation.verification.record import conclude as decide
            from dr_automation.verification.restores import database_checks, read_result

            ti = context["ti"]
            selection = ti.xcom_pull(task_ids=SELECT)
            if selection is None:  # nothing was selected (bad input): nothing to conclude
                raise AirflowSkipException("select_backups did not select anything")
            result = ti.xcom_pull(task_ids=CHECK) or {}
            checked = result.get("checked") or []
            restore_checks: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}

            def add(job: dict[str, Any], checks: list[dict[str, Any]]) -> None:
                per = restore_checks.setdefault((job["tier"], job["backup_id"]), {})
                per.setdefault(job["system"], []).extend(checks)

            for job in result.get("database_jobs") or []:
                add(job, database_checks(job, read_result(estate, job["result"])))
            done = {
                (r["tier"], r["backup_id"], r["instance"]): r
                for r in _values(ti.xcom_pull(task_ids=RESTORE_SNAPSHOT))
            }
            for job in result.get("snapshot_jobs") or []:
                found = done.get((job["tier"], job["backup_id"], job["instance"]))
                if found is None:
                    from dr_automation.verification.objects import check

                    reason = (
                        f"{job['system']}: the restore of {job['snapshot']} in {job['region']} did not finish"
                    )
                    add(job, [check("restore", job["snapshot"], False, reason)])
                else:
                    add(job, found["checks"])
            try:
                return decide(
                    estate,
                    run_id=context["run_id"],
                    checked=checked,
                    restore_checks=restore_checks,
                    targets=selection["targets"],
                    sweep=selection["mode"] == "sweep",
                    context=context,
                )
            except VerificationFailed as exc:
                raise AirflowFailException(str(exc)) from None

        @task(task_id=CLEANUP, trigger_rule=TriggerRule.ALL_DONE)
        def cleanup_scratch(**context: Any) -> dict[str, Any]:
            """Teardown, whatever happened: drop this run's scratch databases, delete its scratch
            instances and objects (names derived from the run and its targets)."""
            from dr_automation.verification.restores import cleanup

            selection = context["ti"].xcom_pull(task_ids=SELECT) or {"targets": []}
            return cleanup(estate, context["run_id"], selection["targets"])

        @task(task_id=WATCHER, trigger_rule=TriggerRule.ONE_FAILED, retries=0, on_failure_callback=None)
        def watcher() -> None:
            """Fails the run when any task failed (the teardown alone would not)."""
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException("a task of this run failed: see the failed task's log")

        selected = select_backups()
        checks = check_backups(selected)
        databases = toolbox_pod_partial(
            RESTORE_DB,
            estate=estate,
            secret_env={SCRATCH_DSN_ENV: conf.scratch_secret},
            size="medium",
            labels={"dr-automation/purpose": "verify-restore"},
            retries=0,  # a dump that does not restore will not restore on a retry either
            on_failure_callback=None,  # conclude alerts with the reason
            poll_interval=poll,
            startup_check_interval_seconds=poll,
            map_index_template="{{ task.arguments[1].split('/')[-1].split('--')[0] }}",
        ).expand(arguments=plan_database_restores(checks))
        SAMPLE_ARGUMENTS[(DAG_ID, RESTORE_DB)] = sample_restore_arguments(estate)
        snapshots = restore_snapshot.expand(job=plan_snapshot_restores(checks))
        concluded = conclude()
        cleanup = cleanup_scratch()
        selected >> [databases, snapshots] >> concluded >> cleanup
        list(dag.tasks) >> watcher()
    return dag


def sample_restore_arguments(estate: Estate) -> list[str]:
    """What a restore pod runs, for the bundle's pod audit (the real lists exist only at run time)."""
    from dr_automation.verification.restores import database_job

    entry = {
        "name": "primary-database",
        "locations": [
            f"s3://{estate.primary_region.backup_bucket}/backups/tier1_realtime/sample/primary-database/"
        ],
        "artifacts": [{"name": "primary-database.pgdump"}],
    }
    return database_job(estate, "scheduled__2026-01-01T00:00:00+00:00", "tier1_realtime", "sample", entry)[
        "arguments"
    ]


def _values(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)]
