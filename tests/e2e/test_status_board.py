"""The DR status board in a real browser: Debian's chromium, driven by Playwright, signs in to the
sandbox's Airflow UI as its generated user, opens the board from the navigation and checks its
figures against the sandbox's real state (DNS answers, the health history table, the buckets,
a pending approval); a request to the board's API without credentials is refused."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import httpx
import psycopg2
import pytest

from dr_automation.estate import load_estate
from tests.e2e.conftest import open_board, running_sandbox
from tests.e2e.failover_helpers import FAILOVER, answer, aws_client, run, tis, wait_task_state

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MONITOR = "region_health_monitor"
APPROVAL_CONF = {
    "target_region": "us-west-2",
    "reason": "status board e2e: a level-2 request waits for an approver",
    "requested_by": "sre-oncall",
    "incident_level": 2,  # needs approval
    "mode": "health_check",
    "dry_run": True,
}
RUN_ID = "statusboard__approval"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox(tmp_path_factory, "statusboard", ("dns_failover_setup", FAILOVER)) as ctx:
        _, _, _, client = ctx
        finished, _ = run(client, "dns_failover_setup", {}, "setup")
        assert finished["state"] == "success"
        client.wait_for_dag(MONITOR)
        client.unpause(MONITOR)
        try:
            yield ctx
        finally:
            client.pause(MONITOR)


def _health_rows(dsn: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('dr_region_health') IS NOT NULL")
        if not cur.fetchone()[0]:
            return []
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.close()
    return rows


def _wait_cycles(dsn: str, cycles: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = _health_rows(dsn, "SELECT count(DISTINCT cycle) FROM dr_region_health")
        if rows and rows[0][0] >= cycles:
            return
        assert time.monotonic() < deadline, f"the monitor recorded {rows} cycles in {timeout:.0f}s"
        time.sleep(1.0)


def test_unauthenticated_requests_are_refused(sandbox):
    layout, _, _, _ = sandbox
    for path in ("/dr-status/api/status", "/dr-status/"):
        r = httpx.get(f"{layout.airflow_url}{path}", timeout=30)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
    forged = httpx.get(
        f"{layout.airflow_url}/dr-status/api/status",
        headers={"Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"},
        timeout=30,
    )
    assert forged.status_code in (401, 403), forged.text[:200]


def test_signed_in_user_sees_the_sandbox_state_on_the_board(sandbox, browser, tmp_path):
    layout, endpoints, creds, client = sandbox
    estate = load_estate(layout.estate_file)
    dsn = creds["audit_database_dsn"]
    _wait_cycles(dsn, 3)
    client.trigger(FAILOVER, APPROVAL_CONF, run_id=RUN_ID)
    wait_task_state(client, FAILOVER, RUN_ID, "await_approval", "awaiting_input")

    context, page, board = open_board(browser, layout, creds)
    serving = board.locator("#serving")
    page.screenshot(path=str(tmp_path / "status_board_in_airflow_ui.png"), full_page=True)

    # serving region: what DNS answers now
    dns_answer = answer(layout, endpoints)
    by_address = {v["address"]: r for r, v in endpoints["regions"].items()}
    assert serving.get_attribute("data-addresses") == " ".join(sorted(dns_answer))
    assert serving.get_attribute("data-region") == by_address[dns_answer[0]]

    # every region with the score the history table holds for the cycle the page shows
    rows = board.locator("tr.region")
    assert rows.count() == len(estate.regions)
    for i in range(rows.count()):
        row = rows.nth(i)
        region, score, checked = (
            row.get_attribute(a) for a in ("data-region", "data-score", "data-checked-at")
        )
        assert region in estate.regions
        stored = _health_rows(
            dsn,
            "SELECT score FROM dr_region_health WHERE region = %s AND checked_at = %s::timestamptz",
            (region, checked),
        )
        assert stored, f"no history row for {region} at {checked}"
        assert float(score) in {s for (s,) in stored}
        assert int(row.get_attribute("data-cycles")) >= 3
        assert row.locator("svg.spark polyline").count() == 1

    # every tier; nothing verified in a fresh sandbox (no verification state in the bucket)
    s3 = aws_client(layout, creds, "s3", estate.primary_region.name)
    assert (
        s3.list_objects_v2(Bucket=estate.primary_region.backup_bucket, Prefix="verification/state.json").get(
            "KeyCount", 0
        )
        == 0
    )
    tiers = board.locator("tr.tier")
    assert sorted(tiers.nth(i).get_attribute("data-tier") for i in range(tiers.count())) == sorted(
        estate.tiers
    )
    assert {tiers.nth(i).get_attribute("data-verified") for i in range(tiers.count())} == {"not verified yet"}

    # the pending approval, with its answer link, and the drills' section
    approval = board.locator(f'li.approval[data-run="{RUN_ID}"]')
    assert approval.count() == 1
    href = approval.locator("a.answer").get_attribute("href")
    assert href == f"/dags/{FAILOVER}/runs/{quote(RUN_ID, safe='')}/tasks/await_approval/required_actions"
    assert board.locator("#drills-none").count() == 1

    # the board's own page, and its API with the browser's session cookie
    direct = context.new_page()
    direct.goto(f"{layout.airflow_url}/dr-status/", wait_until="load")
    direct.screenshot(path=str(tmp_path / "status_board.png"), full_page=True)
    assert (tmp_path / "status_board.png").stat().st_size > 10_000
    api = context.request.get(f"{layout.airflow_url}/dr-status/api/status")
    assert api.status == 200
    snap = json.loads(api.text())
    assert snap["serving"]["region"] == by_address[dns_answer[0]]
    assert [a["run_id"] for a in snap["approvals"]] == [RUN_ID]
    assert snap["dags"]["dns_failover_setup"]["state"] == "success"

    # reject it: the failover record it leaves shows in the history after the page refreshes itself
    time.sleep(2.5)  # FACTS.md: an answer under ~1 s after awaiting_input fails the task
    client.request(
        "PATCH",
        f"/dags/{FAILOVER}/dagRuns/{RUN_ID}/taskInstances/await_approval/-1/hitlDetails",
        json={"chosen_options": ["Reject"], "params_input": {}},
    )
    finished = client.wait_for_run(FAILOVER, RUN_ID, timeout=180)
    assert finished["state"] in ("success", "failed"), tis(client, FAILOVER, RUN_ID)
    direct.wait_for_selector('tr.failover[data-outcome="not_approved"]', timeout=60_000)  # meta refresh
    assert direct.locator("li.approval").count() == 0
    direct.screenshot(path=str(tmp_path / "status_board_after_reject.png"), full_page=True)
    context.close()
