"""One DAG per drill scenario: setup >> inject >> recover >> verify >> measure >> cleanup, + watcher.

``measure`` and ``cleanup`` run whatever happened before them (ALL_DONE): a failed or aborted drill
still reports why it failed, with whatever it measured, and still removes everything it made. The
``watcher`` (ONE_FAILED) keeps the run failed when a step failed although cleanup succeeded.
Steps are not retried: re-running ``inject`` would fail things twice. Cleanup is retried.
``setup`` starts by registering the drill (``drills.registry``): one drill at a time, and whatever a
drill stopped before its cleanup left is removed first.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dr_automation.drills import registry
from dr_automation.drills.scenario import (
    FAULTS,
    STEPS,
    DrillContext,
    DrillError,
    Scenario,
    drill_id,
    write_result,
)

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

ACTION_STEPS = STEPS[:4]  # setup, inject, recover, verify
PHASES = ("detect", "decide", "switch", "restore", "verify")
# Appended to every scenario's runbook: what holds for all drills.
DRILL_RULES = """
**One drill at a time.** Drills share the drill stack, the scratch server and the drill DNS domain,
so `setup` first registers the drill (`drills/active/<drill id>.json` in the primary backup bucket)
and refuses to start, with the other drill's run in the reason, while another drill's run is queued
or running. A refused drill has made nothing and its cleanup does nothing.

**Stopping a drill.** Mark the run *failed* in the UI (or `PATCH .../dagRuns/<run id>` with
`{"state": "failed"}`): its cleanup task will not run, but its registry entry stays, and the next
drill of any scenario removes everything the stopped one left (found from its run id alone) before
it starts, audited as `drill.sweep`, and lists it under `swept` in its result. To clean up at once,
trigger any drill; if what was left cannot be removed, that drill fails at `setup` naming it.
"""


def load_scenario(name: str) -> Scenario:
    """The scenario object of ``dr_automation.drills.scenarios.<name>`` (its ``SCENARIO``)."""
    from dr_automation.drills.report import SCENARIOS

    if name not in SCENARIOS:
        raise ValueError(f"scenario: {name!r} is not one of {', '.join(SCENARIOS)}")
    return importlib.import_module(f"dr_automation.drills.scenarios.{name}").SCENARIO


def _conf(context: Mapping[str, Any]) -> dict[str, Any]:
    return dict(context.get("params") or {})


def _state_from(context: Mapping[str, Any], upstream: tuple[str, ...]) -> dict[str, Any]:
    """The most complete state handed over by the steps before this one (each returns all of it)."""
    ti = context["ti"]
    state: dict[str, Any] = {}
    for step in upstream:
        found = ti.xcom_pull(task_ids=step)
        if isinstance(found, Mapping):
            state = {**state, **found, "marks": {**state.get("marks", {}), **found.get("marks", {})}}
    return state


def context_for(
    estate: Estate, scenario: str, context: Mapping[str, Any], upstream: tuple[str, ...]
) -> DrillContext:
    return DrillContext(
        estate=estate,
        scenario=scenario,
        run_id=context["run_id"],
        dag_id=context["dag"].dag_id,
        conf=_conf(context),
        state=_state_from(context, upstream),
    )


def run_step(estate: Estate, scenario: str, step: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """Run one action step under the stop condition; a failure is recorded (XCom ``error``) for
    ``measure`` before it fails the task."""
    from dr_automation.drills.scenario import production_health

    upstream = ACTION_STEPS[: ACTION_STEPS.index(step)]
    ctx = context_for(estate, scenario, context, upstream)
    ti = context["ti"]
    try:
        if step == "setup":
            if ctx.fault not in FAULTS:
                raise DrillError(f"fault: {ctx.fault!r} is not one of {', '.join(FAULTS)}")
            # one drill at a time, and whatever a killed drill left is removed first
            started = registry.start(ctx, registry.run_state_of(ti))
            ctx.state["swept"] = started["swept"]
            ctx.state["drill_id"] = ctx.drill_id
            ctx.state["fault"] = ctx.fault
            ctx.state["baseline"] = production_health(estate)
            log.info("drill %s: production at setup: %s", ctx.drill_id, json.dumps(ctx.state["baseline"]))
        ctx.mark(f"{step}_started")
        ctx.check_stop()
        found = getattr(load_scenario(scenario), step)(ctx) or {}
        ctx.state.update(found)
        ctx.check_stop()
        ctx.mark(f"{step}_finished")
    except Exception as exc:
        ti.xcom_push(key="error", value=f"{step}: {exc}")
        ctx.mark(f"{step}_failed")
        ti.xcom_push(key="failed_marks", value=ctx.state.get("marks") or {})
        raise
    return ctx.state


def step_seconds(ctx: DrillContext) -> dict[str, float]:
    """Seconds per action step that started, to its end or its failure."""
    marks = ctx.state.get("marks") or {}
    last = max(marks.values(), default=0.0)
    return {
        step: round(
            (marks.get(f"{step}_finished") or marks.get(f"{step}_failed") or last) - marks[f"{step}_started"],
            3,
        )
        for step in ACTION_STEPS
        if f"{step}_started" in marks
    }


def measure_step(estate: Estate, scenario: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """The scenario's result: its measured figures, held against its objectives; stored, then the
    task fails if the scenario did not pass (cleanup still runs)."""
    from airflow.sdk.exceptions import AirflowFailException

    from dr_automation.drills.report import compliance

    ti = context["ti"]
    ctx = context_for(estate, scenario, context, ACTION_STEPS)
    for step in ACTION_STEPS:  # the failed step returned nothing: its marks came with its error
        failed = ti.xcom_pull(task_ids=step, key="failed_marks")
        if isinstance(failed, Mapping):
            ctx.state["marks"] = {**failed, **(ctx.state.get("marks") or {})}
    errors = [e for e in (ti.xcom_pull(task_ids=s, key="error") for s in ACTION_STEPS) if e]
    reason = errors[0] if errors else None
    if reason is None:
        missing = [s for s in ACTION_STEPS if f"{s}_finished" not in (ctx.state.get("marks") or {})]
        if missing:
            reason = f"{missing[0]}: did not complete"
    objectives = ctx.objectives
    figures: dict[str, Any] = {}
    if reason is None:
        try:
            figures = dict(load_scenario(scenario).measure(ctx))
        except Exception as exc:
            reason = f"measure: {exc}"
    phases = {p: v for p, v in (figures.get("phases") or {}).items() if p in PHASES and v is not None}
    result: dict[str, Any] = {
        "scenario": scenario,
        "dag_id": ctx.dag_id,
        "run_id": ctx.run_id,
        "drill_id": drill_id(scenario, ctx.run_id),
        "fault": ctx.state.get("fault") or ctx.fault,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rto_seconds": figures.get("rto_seconds"),
        "rpo_seconds": figures.get("rpo_seconds"),
        "integrity_score": figures.get("integrity_score"),
        "rto_objective_minutes": objectives["rto_minutes"],
        "rpo_objective_minutes": objectives["rpo_minutes"],
        "integrity_objective": estate.section("drills").get("integrity_objective", 1.0),
        "phases": phases,
        "figures": figures.get("figures") or {},
        "simulated": list(getattr(load_scenario(scenario), "simulated", ())),
        # how long each step that ran took (a failed drill's figures stop where it failed)
        "step_seconds": step_seconds(ctx),
        # drills that had been killed before their cleanup, whose leftovers this one removed first
        "swept": list(ctx.state.get("swept") or []),
    }
    met = compliance(result)
    failures = list(figures.get("failures") or [])
    for key, label in (("rto", "RTO"), ("rpo", "RPO"), ("integrity", "integrity")):
        if met[f"{key}_met"] is False:
            failures.append(f"{label} objective missed")
    if reason is None and failures:
        reason = "; ".join(failures)
    result["passed"] = reason is None
    result["reason"] = reason
    result["compliance"] = met
    result["result_url"] = write_result(estate, result)
    log.info("drill result: %s", json.dumps(result, indent=2, default=str))
    if not result["passed"]:
        raise AirflowFailException(f"drill {scenario} failed: {reason}")
    return result


def cleanup_step(estate: Estate, scenario: str, context: Mapping[str, Any]) -> dict[str, Any]:
    """Remove everything the drill made (found from its id, whatever state the run is in)."""
    from airflow.sdk.exceptions import AirflowException

    ctx = context_for(estate, scenario, context, ACTION_STEPS)
    try:
        registered = registry.entry(estate, ctx.drill_id) is not None
    except Exception as exc:  # cannot tell: clean up as if it had started
        log.warning("drill %s: registry unreadable (%s); cleaning up anyway", ctx.drill_id, exc)
        registered = True
    if not registered:  # refused at setup, never got that far, or already cleaned up by a retry
        log.info(
            "drill %s: not registered, so it made nothing (or was cleaned up): nothing to do", ctx.drill_id
        )
        return {"drill_id": ctx.drill_id, "remaining": [], "registered": False}
    remaining = load_scenario(scenario).cleanup(ctx)
    if remaining:
        raise AirflowException(f"drill {ctx.drill_id}: could not remove {', '.join(remaining)}")
    registry.finish(ctx)
    log.info("drill %s: every drill resource removed", ctx.drill_id)
    return {"drill_id": ctx.drill_id, "remaining": []}


def scenario_params() -> dict[str, Any]:
    from airflow.sdk import Param

    return {
        "fault": Param(
            "none",
            enum=list(FAULTS),
            title="Forced fault",
            description="none: a normal drill. remove_backup: the backup the drill recovers from is "
            "removed after setup, so the recovery must fail (tests the drill's failure path).",
        )
    }


def build_scenario_dag(estate: Estate, scenario: str, *, schedule: Any, doc_md: str) -> Any:
    """The ``dr_test_<scenario>`` DAG (``schedule=None``: manual, REST or dr_test_quarterly)."""
    from airflow.sdk import DAG, task
    from airflow.sdk.exceptions import AirflowFailException
    from airflow.task.trigger_rule import TriggerRule

    from dr_automation.dag_defaults import dag_tags, default_args

    with DAG(
        dag_id=f"dr_test_{scenario}",
        schedule=schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,
        # Manual-only, so unpaused at creation is harmless, and dr_test_quarterly's runs of it start.
        is_paused_upon_creation=False,
        default_args=default_args(estate, retries=2, retry_delay_seconds=5),
        params=scenario_params(),
        tags=dag_tags("drill"),
        doc_md=doc_md.rstrip() + "\n" + DRILL_RULES,
    ) as dag:
        steps = [
            task(task_id=step, retries=0)(
                lambda step=step, **context: run_step(estate, scenario, step, context)
            )()
            for step in ACTION_STEPS
        ]
        measure = task(task_id="measure", trigger_rule=TriggerRule.ALL_DONE, retries=0)(
            lambda **context: measure_step(estate, scenario, context)
        )()
        cleanup = task(task_id="cleanup", trigger_rule=TriggerRule.ALL_DONE)(
            lambda **context: cleanup_step(estate, scenario, context)
        )()

        @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
        def watcher() -> None:
            raise AirflowFailException("a drill step failed; see measure's result and cleanup's log")

        for before, after in itertools.pairwise(steps):
            before >> after
        steps[-1] >> measure >> cleanup
        [*steps, measure, cleanup] >> watcher()
    return dag
