"""Running one drill scenario under the backup rig and reading the result it stored (integration)."""

from __future__ import annotations

import json
from typing import Any

from dr_automation.drills.scenario import read_result
from dr_sandbox.backup_rig import BackupRig


def run_drill(
    rig: BackupRig, dag_id: str, conf: dict[str, Any] | None = None, *, timeout: float = 300
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run of the drill DAG and the result its measure task stored; its cleanup must succeed."""
    run = rig.run(dag_id, conf=conf, timeout=timeout)
    assert "tis" in run, f"the DAG did not load: {run.get('import_errors')}"
    states = {t["task_id"]: t["state"] for t in run["tis"]}
    print(f"{dag_id} {conf or {}}: {run['state']} in {run['wall_seconds']} s; {states}")
    with rig.task_env():
        result = read_result(rig.estate, dag_id, run["run_id"])
    assert result is not None, f"no result stored: {states}\n{run['log'][-4000:]}"
    shown = ("passed", "reason", "rto_seconds", "rpo_seconds", "phases", "figures")
    print(json.dumps({k: result.get(k) for k in shown}, indent=1))
    assert states["cleanup"] == "success", run["log"][-4000:]
    return run, result
