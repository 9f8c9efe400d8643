"""The verify_backups DAG as built from the estate: its schedule (any tier's asset event, or the
daily sweep), its Params refusing a bad tier or backup id naming the field, the teardown and the
watcher that keeps a failed run from looking green."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dr_automation.estate import Estate


@pytest.fixture(scope="module")
def dag(estate: Estate) -> Any:
    from dr_automation.verification.dag import build_verify_dag

    return build_verify_dag(estate)


def test_it_runs_on_any_tier_asset_event_or_the_daily_sweep(dag: Any, estate: Estate) -> None:
    from airflow.sdk import AssetOrTimeSchedule

    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable.expression == estate.raw["verification"]["sweep_schedule"]
    names = {a.name for a in dag.timetable.asset_condition.objects}
    assert names == {f"dr_backup_{key}" for key in estate.tiers}
    assert type(dag.timetable.asset_condition).__name__ == "AssetAny"
    assert dag.max_active_runs == 1 and dag.catchup is False


@pytest.mark.parametrize(
    ("conf", "field"),
    [({"tier": "tier9"}, "tier"), ({"tier": "tier1_realtime", "backup_id": "../../etc/passwd"}, "backup_id")],
)
def test_bad_params_are_refused_naming_the_field(dag: Any, conf: dict[str, Any], field: str) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {field}"):
        params.update(conf)
        params.validate()


def test_good_params_validate(dag: Any) -> None:
    params = copy.deepcopy(dag.params)
    params.update({"tier": "tier1_realtime", "backup_id": "scheduled__2026-11-04T10-05-00-00-00"})
    assert params.validate() == {
        "tier": "tier1_realtime",
        "backup_id": "scheduled__2026-11-04T10-05-00-00-00",
    }


def test_scratch_is_always_cleaned_and_a_failure_always_fails_the_run(dag: Any) -> None:
    cleanup, watcher = dag.get_task("cleanup_scratch"), dag.get_task("watcher")
    assert cleanup.trigger_rule == "all_done" and dag.get_task("conclude").trigger_rule == "all_done"
    assert "conclude" in cleanup.upstream_task_ids
    assert watcher.trigger_rule == "one_failed" and watcher.retries == 0
    assert watcher.upstream_task_ids == {t.task_id for t in dag.tasks} - {"watcher"}
    assert dag.get_task("restore_database").partial_kwargs["retries"] == 0  # a bad dump stays bad


def test_the_restore_pod_reads_the_scratch_dsn_from_a_secret_only(dag: Any, estate: Estate) -> None:
    from dr_automation.pods import SAMPLE_ARGUMENTS

    pod = dag.get_task("restore_database").partial_kwargs
    refs = [(s.deploy_target, s.secret, s.key) for s in pod["secrets"]]
    assert refs == [("VERIFY_SCRATCH_DSN", "dr-verify-scratch", "dsn")]
    sample = SAMPLE_ARGUMENTS[("verify_backups", "restore_database")]
    assert sample[sample.index("--dsn-env") + 1] == "VERIFY_SCRATCH_DSN"
    assert sample[sample.index("--scratch-database") + 1].startswith("dr_verify_")
