"""The regional drills' pure parts: load statistics, the drill's Route 53 records and checks, the
client's retries, marker consistency, and clear errors for a stack the estate does not describe."""

from __future__ import annotations

from typing import Any

import pytest

from dr_automation.drills import stack
from dr_automation.drills.scenario import DrillContext, DrillError
from dr_automation.drills.scenarios.region_outage import consistency
from dr_automation.estate import DEFAULT_ESTATE_PATH, load_estate


@pytest.fixture(scope="module")
def ctx() -> DrillContext:
    return DrillContext(
        estate=load_estate(DEFAULT_ESTATE_PATH), scenario="region_outage", run_id="manual__t1"
    )


def request(started: float, *attempts: tuple[float, bool, str | None]) -> dict[str, Any]:
    tries = [{"at": at, "ok": ok, "address": addr} for at, ok, addr in attempts]
    return {"started": started, "ended": tries[-1]["at"], "ok": tries[-1]["ok"], "attempts": tries}


REQUESTS = [
    request(10.0, (10.0, True, "10.0.0.1")),
    request(11.0, (11.0, False, "10.0.0.1"), (12.0, False, "10.0.0.1"), (14.0, True, "10.0.0.2")),
    request(12.0, (12.0, False, "10.0.0.1"), (13.0, False, "10.0.0.1"), (15.0, False, None)),
    request(16.0, (16.0, True, "10.0.0.2")),
]


def test_load_stats_count_requests_and_attempts_separately() -> None:
    stats = stack.load_stats(REQUESTS)
    assert stats["requests"] == 4 and stats["requests_succeeded"] == 3
    assert stats["request_success_rate"] == 0.75
    assert stats["attempts"] == 8 and stats["attempts_succeeded"] == 3
    assert stats["attempt_success_rate"] == 0.375
    assert stats["served_by_address"] == {"10.0.0.1": 1, "10.0.0.2": 2}


def test_load_stats_window_by_request_start_and_empty_window() -> None:
    window = stack.load_stats(REQUESTS, start=11.0, end=12.0)
    assert window["requests"] == 2 and window["requests_succeeded"] == 1
    empty = stack.load_stats(REQUESTS, start=100.0)
    assert empty["requests"] == 0 and empty["request_success_rate"] is None


def test_first_attempt_finds_the_switch_in_the_clients_view() -> None:
    assert stack.first_attempt(REQUESTS, after=11.0, address="10.0.0.2") == 14.0
    assert stack.first_attempt(REQUESTS, after=11.0, address="10.0.0.1", ok=True) is None
    assert stack.first_attempt(REQUESTS, after=0, address="10.0.0.1", ok=True) == 10.0


def test_failover_record_and_health_check_point_at_the_drill_stack(ctx: DrillContext) -> None:
    spec = ctx.estate.section("drills")["stack"]["us-west-2"]
    record = stack.failover_record(ctx, "SECONDARY", "us-west-2", "hc-1")
    assert record["Name"] == ctx.record_name + "."
    assert record["Name"].startswith("dr-drill-region-outage-")
    assert record["Failover"] == "SECONDARY" and record["HealthCheckId"] == "hc-1"
    assert record["ResourceRecords"] == [{"Value": spec["address"]}]
    assert ctx.drill_id in record["SetIdentifier"]
    config = stack.health_check_config(ctx.estate, "us-west-2")
    hc = ctx.estate.route53["health_check"]
    assert config["IPAddress"] == spec["address"] and config["Port"] == spec["port"]
    assert config["ResourcePath"] == hc["resource_path"]
    assert config["RequestInterval"] == hc["request_interval_seconds"]
    assert config["FailureThreshold"] == hc["failure_threshold"]
    # never the production endpoint
    assert spec["address"] != ctx.estate.regions["us-west-2"].address
    with pytest.raises(DrillError, match="role"):
        stack.failover_record(ctx, "TERTIARY", "us-west-2", "hc-1")


def test_missing_stack_and_control_url_are_named(ctx: DrillContext) -> None:
    with pytest.raises(DrillError, match=r"drills\.stack\.ap-south-1"):
        stack.stack_endpoint(ctx.estate, "ap-south-1")
    # the estate file's stack has no control_url (only the sandbox's has)
    with pytest.raises(DrillError, match=r"drills\.stack\.us-east-1\.control_url"):
        stack.control_url(ctx.estate, "us-east-1")
    with pytest.raises(DrillError, match="mode"):
        stack.set_stack_mode(ctx.estate, "us-east-1", "melting")


def test_client_retries_with_backoff_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack, "RETRY_BACKOFF_SECONDS", 0.0)
    gen = stack.LoadGenerator(
        "x.drill.example",
        nameservers=["127.0.0.1:1"],
        endpoints={},
        settings={**stack.LOAD_DEFAULTS, "attempts": 3},
    )
    answers = iter([False, False, True, False, False, False])
    monkeypatch.setattr(gen, "attempt", lambda: {"at": 1.0, "ok": next(answers), "address": "a"})
    gen.request()
    gen.request()
    first, second = gen.requests
    assert first["ok"] is True and len(first["attempts"]) == 3
    assert second["ok"] is False and len(second["attempts"]) == 3


def test_marker_consistency_counts_missing_and_differing() -> None:
    written = [
        {"id": 1, "written_at": 5.0, "payload": "a"},
        {"id": 2, "written_at": 6.0, "payload": "b"},
        {"id": 3, "written_at": 7.0, "payload": "c"},
    ]
    ok = consistency(written, {1: "a", 2: "b", 3: "c", 4: "later"})
    assert ok["consistent"] and ok["read_equal"] == 3 and ok["oldest_lost_at"] is None
    bad = consistency(written, {1: "a", 3: "X"})
    assert not bad["consistent"] and bad["missing"] == [2] and bad["differing"] == [3]
    assert bad["read_equal"] == 1 and bad["oldest_lost_at"] == 6.0


def test_load_results_and_stop_go_through_s3_so_any_worker_reads_and_stops_them(
    ctx: DrillContext, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load process runs on the worker that ran setup; verify and cleanup may run on another
    (Celery): they read its results and stop it through S3, and cleanup leaves nothing there."""
    import threading
    import time

    from tests.unit.backup_moto import mocked_estate_aws

    with mocked_estate_aws(ctx.estate):
        store = stack.LoadStore.for_drill(ctx)
        gen = stack.LoadGenerator(
            ctx.record_name,
            nameservers=["127.0.0.1:1"],
            endpoints={},
            settings={**stack.LOAD_DEFAULTS, "requests_per_second": 20, "max_seconds": 60},
        )
        monkeypatch.setattr(gen, "attempt", lambda: {"at": time.time(), "ok": True, "address": "10.0.0.1"})
        setup_worker = tmp_path / "setup-worker"
        setup_worker.mkdir()
        runner = threading.Thread(target=gen.run, args=(setup_worker, store), daemon=True)
        runner.start()
        # from here on this process is the other worker: it has no local files of the drill
        monkeypatch.setattr(stack, "load_dir", lambda drill: tmp_path / "other-worker" / drill)
        deadline = time.monotonic() + 20
        while not stack.read_load(ctx)["requests"]:
            assert time.monotonic() < deadline, "no results reached S3"
            time.sleep(0.2)
        assert stack.read_load(ctx)["finished"] is False
        stopped_at = time.monotonic()
        final = stack.stop_load(ctx, timeout=15)
        runner.join(15)
        assert not runner.is_alive() and time.monotonic() - stopped_at < 10  # stopped, long before max
        assert final["finished"] is True and final["requests"]
        assert all(r["ok"] for r in final["requests"])
        assert not (setup_worker / "load.json").exists()  # results are in S3 only
        assert stack.remove_load(ctx) == [] and store.count() == 0
        listed = store.client.list_object_versions(Bucket=store.bucket, Prefix=store.prefix)
        assert not listed.get("Versions") and not listed.get("DeleteMarkers")
