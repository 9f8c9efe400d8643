"""One way to run a whole sandbox for an e2e module: free ports, its own state dir, stopped after."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

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


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright, headless (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def open_board(browser: Any, layout: Any, creds: dict) -> tuple[Any, Any, Any]:
    """Sign in to the Airflow UI as the sandbox's user and open the DR status board from the
    navigation: (browser context, page, the board's frame), the board rendered."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    page.goto(f"{layout.airflow_url}/auth/login?next=/dags", wait_until="networkidle")
    page.locator("input[name=username]").fill(creds["username"])
    page.locator("input[name=password]").fill(creds["password"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/dags", timeout=30_000)
    # the board is an entry of the UI's navigation, shown in the UI's frame
    page.get_by_role("link", name="DR status").click()
    page.wait_for_url("**/plugin/dr-status", timeout=30_000)
    board = page.frame_locator('iframe[src="/dr-status/"]')
    board.locator("#serving").wait_for(timeout=60_000)
    return context, page, board
