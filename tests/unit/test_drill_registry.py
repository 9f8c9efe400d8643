"""One drill at a time, and what a killed drill left is removed by the next (moto S3 registry)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dr_automation.drills import dag as drill_dag
from dr_automation.drills import registry
from dr_automation.drills.scenario import DrillContext, DrillError
from dr_automation.estate import Estate
from tests.unit.backup_moto import client, mocked_estate_aws


@pytest.fixture
def aws(estate: Estate) -> Any:
    with mocked_estate_aws(estate):
        yield


@pytest.fixture
def audited(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    rows: list[tuple] = []

    def record(estate: Any, event_type: str, status: str, context: Any = None, **fields: Any) -> bool:
        rows.append((event_type, status, fields.get("target"), fields.get("detail")))
        return True

    monkeypatch.setattr("dr_automation.audit.audit_step", record)
    return rows


def drill(estate: Estate, scenario: str, run_id: str) -> DrillContext:
    return DrillContext(estate=estate, scenario=scenario, run_id=run_id, dag_id=f"dr_test_{scenario}")


def states(**by_run: str | None) -> Any:
    return lambda dag_id, run_id: by_run.get(run_id, "success")


def versions_left(estate: Estate, drill_id: str) -> list:
    listed = client("s3").list_object_versions(
        Bucket=estate.primary_region.backup_bucket, Prefix=registry.entry_key(drill_id)
    )
    return listed.get("Versions", []) + listed.get("DeleteMarkers", [])


def test_registering_is_idempotent_and_finishing_leaves_no_version(aws: None, estate: Estate) -> None:
    ctx = drill(estate, "region_outage", "manual__a")
    first = registry.register(ctx)
    assert registry.register(ctx)["registered_at"] == first["registered_at"]  # a retried setup
    assert [e["drill_id"] for e in registry.entries(estate)] == [ctx.drill_id]
    assert first["run_id"] == "manual__a" and first["dag_id"] == "dr_test_region_outage"
    registry.finish(ctx)
    assert registry.entries(estate) == [] and versions_left(estate, ctx.drill_id) == []


def test_a_drill_refuses_to_start_while_another_runs_and_touches_nothing(
    aws: None, estate: Estate, audited: list
) -> None:
    running = drill(estate, "region_outage", "manual__running")
    registry.register(running)
    cleaned: list[str] = []
    late = drill(estate, "complete_disaster", "manual__late")
    with pytest.raises(DrillError) as refused:
        registry.start(
            late, states(manual__running="running"), cleanup=lambda c: cleaned.append(c.drill_id) or []
        )
    message = str(refused.value)
    assert running.drill_id in message and "is running" in message and "one runs at a time" in message
    assert cleaned == [] and audited == []
    # the refused drill is not registered (its cleanup will do nothing); the running one still is
    assert [e["drill_id"] for e in registry.entries(estate)] == [running.drill_id]
    assert registry.entry(estate, late.drill_id) is None


def test_a_queued_drill_also_holds_the_stack(aws: None, estate: Estate) -> None:
    registry.register(drill(estate, "database_failure", "manual__queued"))
    with pytest.raises(DrillError, match="is queued"):
        registry.start(drill(estate, "data_corruption", "manual__next"), states(manual__queued="queued"))


def test_a_killed_drill_is_cleaned_up_audited_and_forgotten_before_the_next_starts(
    aws: None, estate: Estate, audited: list
) -> None:
    killed = drill(estate, "region_outage", "manual__killed")
    registry.register(killed)
    cleaned: list[DrillContext] = []
    nxt = drill(estate, "region_outage", "manual__next")
    started = registry.start(nxt, states(manual__killed="failed"), cleanup=lambda c: cleaned.append(c) or [])
    assert [c.drill_id for c in cleaned] == [killed.drill_id]  # found from the entry's run id alone
    assert cleaned[0].scenario == "region_outage" and cleaned[0].run_id == "manual__killed"
    assert started["swept"] == [
        {
            "drill_id": killed.drill_id,
            "dag_id": "dr_test_region_outage",
            "run_id": "manual__killed",
            "run_state": "failed",
        }
    ]
    assert [e["drill_id"] for e in registry.entries(estate)] == [nxt.drill_id]
    assert versions_left(estate, killed.drill_id) == []
    assert [(a[0], a[1], a[2]) for a in audited] == [("drill.sweep", "succeeded", killed.drill_id)]


def test_a_deleted_run_counts_as_over(aws: None, estate: Estate, audited: list) -> None:
    gone = drill(estate, "data_corruption", "manual__deleted")
    registry.register(gone)
    started = registry.start(
        drill(estate, "data_corruption", "manual__now"), states(manual__deleted=None), cleanup=lambda c: []
    )
    assert [s["drill_id"] for s in started["swept"]] == [gone.drill_id]


def test_what_an_orphan_left_and_could_not_be_removed_stops_the_next_drill(
    aws: None, estate: Estate, audited: list
) -> None:
    stuck = drill(estate, "security_incident", "manual__stuck")
    registry.register(stuck)
    with pytest.raises(DrillError) as failed:
        registry.start(
            drill(estate, "security_incident", "manual__after"),
            states(manual__stuck="failed"),
            cleanup=lambda c: [f"IAM user {c.drill_id}-attacker"],
        )
    assert "could not be removed: IAM user" in str(failed.value) and stuck.drill_id in str(failed.value)
    assert registry.entry(estate, stuck.drill_id) is not None  # kept: the next try sweeps it again
    assert audited[0][:3] == ("drill.sweep", "failed", stuck.drill_id)
    assert audited[0][3]["remaining"] == [f"IAM user {stuck.drill_id}-attacker"]


def test_two_drills_starting_together_both_give_way(aws: None, estate: Estate) -> None:
    first = drill(estate, "region_outage", "manual__first")
    second = drill(estate, "complete_disaster", "manual__second")
    registry.register(first)
    registry.register(second)  # both registered before either looked
    both_live = states(manual__first="running", manual__second="running")
    with pytest.raises(DrillError, match=first.drill_id):
        registry.start(second, both_live)
    assert registry.entry(estate, second.drill_id) is None
    # the first looks after the second gave way: it goes on; had it looked before, it would have
    # given way too (neither has made anything yet)
    assert registry.start(first, both_live)["swept"] == []
    assert [e["drill_id"] for e in registry.entries(estate)] == [first.drill_id]


def test_an_entry_that_does_not_match_its_run_is_refused(aws: None, estate: Estate) -> None:
    forged = drill(estate, "region_outage", "manual__x")
    registry.register(forged)
    key = registry.entry_key(forged.drill_id)
    body = client("s3").get_object(Bucket=estate.primary_region.backup_bucket, Key=key)["Body"].read()
    client("s3").put_object(
        Bucket=estate.primary_region.backup_bucket, Key=key, Body=body.replace(b"manual__x", b"manual__y")
    )
    with pytest.raises(DrillError, match="does not match its run"):
        registry.start(drill(estate, "region_outage", "manual__z"), states(), cleanup=lambda c: [])


def test_run_state_of_reads_the_execution_api_and_a_missing_run_is_none() -> None:
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse
    from airflow.utils.state import DagRunState

    def api_error(status: int) -> AirflowRuntimeError:  # what the supervisor hands the task
        return AirflowRuntimeError(
            ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": status, "message": "..."})
        )

    class Ti:
        def get_dagrun_state(self, dag_id: str, run_id: str) -> str:
            if run_id == "gone":
                raise api_error(404)
            if run_id == "broken":
                raise api_error(500)
            return DagRunState.RUNNING if run_id == "here" else DagRunState.FAILED

    state = registry.run_state_of(Ti())
    assert state("dr_test_x", "here") == "running" and state("dr_test_x", "over") == "failed"
    assert registry.is_live("running") and registry.is_live("queued")
    assert registry.is_live("some_future_state")  # unknown is never taken for over
    assert not registry.is_live("failed") and not registry.is_live("success") and not registry.is_live(None)
    assert state("dr_test_x", "gone") is None
    with pytest.raises(AirflowRuntimeError, match="500"):  # unknown is not "over"
        state("dr_test_x", "broken")


def _task_context(scenario: str, run_id: str) -> dict[str, Any]:
    ti = SimpleNamespace(xcom_pull=lambda **kw: None, xcom_push=lambda **kw: None)
    return {"ti": ti, "run_id": run_id, "dag": SimpleNamespace(dag_id=f"dr_test_{scenario}"), "params": {}}


def test_cleanup_of_a_drill_that_never_registered_touches_nothing(
    aws: None, estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[str] = []
    fake = SimpleNamespace(cleanup=lambda ctx: called.append(ctx.drill_id) or [])
    monkeypatch.setattr(drill_dag, "load_scenario", lambda name: fake)
    refused = drill_dag.cleanup_step(
        estate, "region_outage", _task_context("region_outage", "manual__refused")
    )
    assert refused["registered"] is False and called == []  # e.g. the stack another drill uses is left alone

    ctx = drill(estate, "region_outage", "manual__ran")
    registry.register(ctx)
    done = drill_dag.cleanup_step(estate, "region_outage", _task_context("region_outage", "manual__ran"))
    assert called == [ctx.drill_id] and done["remaining"] == []
    assert registry.entry(estate, ctx.drill_id) is None  # cleaned up: no longer under way
