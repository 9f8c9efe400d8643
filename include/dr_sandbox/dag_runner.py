"""Runs DAGs under ``dag.test()`` for the backup rig, each run in a fresh fork of one warm process.

A run in a new interpreter pays for importing Airflow, the providers and the pod operator (about
8 CPU-seconds on this machine kind) before its first task; the rig's tests make dozens of runs. This
server imports all of that once, then forks a child per run: the child starts warm, runs the DAG
exactly as a fresh process would (its own environment, working directory, DagBag parse and
``dag.test()``), writes its output to a file and exits, so no state passes from one run to the next.

Protocol (one request at a time): a JSON line on stdin ``{"dags_folder", "dag_id", "conf", "env",
"cwd", "out", "timeout"}``; the answer is a JSON line on stdout ``{"exit": code}`` once the child has
ended (killed after ``timeout`` seconds: ``{"exit": null, "timed_out": true}``). The child prints
``RIG_RESULT {...}`` (run id, state, seconds, task instances, asset events) into ``out``.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import time
from typing import Any

RESULT_PREFIX = "RIG_RESULT "


# Beside what the bundle's forking components preload: what dag.test() itself and a DagBag need.
RUNNER_MODULES = (
    "airflow.models",
    "airflow.dag_processing.dagbag",
    "airflow.api_fastapi.execution_api.app",
    "airflow.sdk.execution_time.supervisor",
    "airflow.providers.standard.operators.python",
)


def preload() -> None:
    """What every run imports anyway, imported once before the first fork."""
    from dr_automation.preload import PRELOAD_MODULES

    for name in (*PRELOAD_MODULES, *RUNNER_MODULES):
        importlib.import_module(name)


def run_one(dags_folder: str, dag_id: str, conf: dict[str, Any] | None) -> int:
    """One dag.test() run; prints the RIG_RESULT line. Returns the exit code."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models import TaskInstance
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=dags_folder)
    if bag.import_errors:
        errors = {k: v[-2000:] for k, v in bag.import_errors.items()}
        print(RESULT_PREFIX + json.dumps({"import_errors": errors}), flush=True)
        return 3
    dag = bag.dags[dag_id]
    # Airflow 3.3.2's dag.test() cannot finish a SUCCESSFUL run of a DAG with a DeadlineAlert (it looks
    # the alert up by id but holds its serialized form): drop it here; the sandbox runs keep it.
    dag.deadline = None
    started = time.monotonic()
    run = dag.test(run_conf=conf)
    seconds = time.monotonic() - started
    with create_session() as session:
        tis = [
            {
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "state": str(ti.state),
                "try_number": ti.try_number,
                "duration": ti.duration,
                "label": ti.rendered_map_index,
            }
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
            )
        ]
        events = [
            {"asset": e.asset.name, "uri": e.asset.uri, "extra": e.extra}
            for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id)
        ]
    result = {
        "run_id": run.run_id,
        "state": str(run.state),
        "seconds": seconds,
        "tis": tis,
        "asset_events": events,
    }
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    return 0


def _child(request: dict[str, Any]) -> None:
    """In the fork: become the run's own process (environment, directory, output), run, exit."""
    code = 1
    try:
        fd = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the server's request pipe is not the run's
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        from airflow import settings

        if settings.engine is not None:
            settings.engine.dispose(close=False)  # never share the server's pooled connections
        code = run_one(request["dags_folder"], request["dag_id"], request.get("conf"))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"exit": os.waitstatus_to_exitcode(status)}
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"exit": None, "timed_out": True}
        time.sleep(0.05)


def serve() -> None:
    requests, answers = sys.stdin, os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints of the preload go to stderr, never into the answer channel
    preload()
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        answers.write(json.dumps(_wait(pid, float(request.get("timeout", 900)))) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()
