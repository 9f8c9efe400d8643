"""One way to run a whole sandbox for an e2e module: free ports, its own state dir, stopped after."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dr_sandbox.airflow_client import AirflowClient
from dr_sandbox.layout import SandboxLayout
from dr_sandbox.processes import running
from dr_sandbox.sandbox import down, up
from tests.iam_check import assert_calls_within_policies


@contextmanager
def running_sandbox(
    tmp_path_factory: Any, name: str, dag_ids: Sequence[str] = (), estate_overrides: dict | None = None
) -> Iterator[tuple]:
    """(layout, endpoints, creds, client) with `dag_ids` parsed and unpaused; `down` afterwards."""
    from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate

    regions = list(load_estate(DEFAULT_ESTATE_PATH).regions)
    layout = SandboxLayout.for_tests(tmp_path_factory.mktemp(name), regions)
    endpoints = up(layout, estate_overrides=estate_overrides)
    client = None
    try:
        creds = json.loads(layout.credentials_file.read_text())
        client = AirflowClient(layout.airflow_url, creds["username"], creds["password"])
        for dag_id in dag_ids:
            client.wait_for_dag(dag_id)
            client.unpause(dag_id)
        yield layout, endpoints, creds, client
        if "aws-emulator" in running(layout.pids_file):  # (a module may stop its sandbox itself)
            assert_calls_within_policies(layout.aws_url, endpoints["estate"])
    finally:
        if client is not None:
            client.close()
        down(layout)
