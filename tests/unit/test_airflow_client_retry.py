"""The sandbox's REST client rides out a briefly locked metadata database (HTTP 500) where a retry is safe."""

from __future__ import annotations

import httpx
import pytest

from dr_sandbox import airflow_client
from dr_sandbox.airflow_client import AirflowAPIError, AirflowClient


def client_answering(
    answers: list[tuple[str, int, dict]], monkeypatch: pytest.MonkeyPatch
) -> tuple[AirflowClient, list]:
    """A client whose server gives these (method, status, json) answers in turn; records the calls."""
    monkeypatch.setattr(airflow_client.time, "sleep", lambda _s: None)
    calls: list[tuple[str, str]] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(201, json={"access_token": "t"})
        calls.append((request.method, request.url.path))
        method, status, body = queue.pop(0)
        assert method == request.method
        return httpx.Response(status, json=body)

    real = httpx.Client
    monkeypatch.setattr(
        airflow_client.httpx, "Client", lambda **kw: real(transport=httpx.MockTransport(handler), **kw)
    )
    return AirflowClient("http://127.0.0.1:9", "u", "p"), calls


def test_an_unpause_is_tried_again_after_a_database_error(monkeypatch) -> None:
    client, calls = client_answering(
        [("PATCH", 500, {"detail": {"reason": "Database error"}}), ("PATCH", 200, {"is_paused": False})],
        monkeypatch,
    )
    assert client.unpause("backup_tier4_archival") == {"is_paused": False}
    assert len(calls) == 2


def test_a_trigger_with_its_run_id_is_tried_again_and_a_409_means_it_was_created(monkeypatch) -> None:
    client, calls = client_answering(
        [
            ("POST", 500, {"detail": "Database error"}),
            ("POST", 409, {"detail": "exists"}),
            ("GET", 200, {"dag_run_id": "demo__1", "state": "queued"}),
        ],
        monkeypatch,
    )
    assert client.trigger("dr_test_quarterly", run_id="demo__1")["dag_run_id"] == "demo__1"
    assert [m for m, _ in calls] == ["POST", "POST", "GET"]


def test_a_trigger_without_a_run_id_is_never_sent_twice(monkeypatch) -> None:
    client, calls = client_answering([("POST", 500, {"detail": "Database error"})], monkeypatch)
    with pytest.raises(AirflowAPIError):
        client.trigger("dr_test_quarterly")
    assert len(calls) == 1


def test_a_bad_request_is_not_retried(monkeypatch) -> None:
    client, calls = client_answering([("PATCH", 404, {"detail": "no such DAG"})], monkeypatch)
    with pytest.raises(AirflowAPIError):
        client.unpause("nope")
    assert len(calls) == 1
