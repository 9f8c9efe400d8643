"""The webhook sink: records every POST per path, hides credentials, injects failures, loopback only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from dr_sandbox.layout import free_port
from dr_sandbox.webhook_sink import WebhookSinkHandle, fetch_messages, start_webhook_sink

pytestmark = pytest.mark.integration


@pytest.fixture
def sink() -> Iterator[WebhookSinkHandle]:
    handle = start_webhook_sink("127.0.0.1", 0)
    try:
        yield handle
    finally:
        handle.stop()


def test_records_posts_per_path_without_credentials(sink: WebhookSinkHandle) -> None:
    r = httpx.post(
        f"{sink.url}/chat",
        json={"channel": "#ops", "text": "hello"},
        headers={"Authorization": "Bearer s3cr3t-token", "X-Api-Key": "k3y", "X-Trace": "t1"},
    )
    assert r.status_code == 200 and r.json()["ok"] is True
    httpx.post(f"{sink.url}/status-page", json={"page_id": "p"})
    chat = sink.messages("/chat")
    assert len(chat) == 1
    assert chat[0]["body"] == {"channel": "#ops", "text": "hello"}
    assert chat[0]["headers"]["x-trace"] == "t1"
    assert "authorization" not in chat[0]["headers"] and "x-api-key" not in chat[0]["headers"]
    assert "s3cr3t-token" not in json.dumps(sink.messages())
    # the same over HTTP, filtered by path and in full
    assert [m["body"] for m in fetch_messages(sink.url, "/status-page")] == [{"page_id": "p"}]
    assert [m["path"] for m in fetch_messages(sink.url)] == ["/chat", "/status-page"]


def test_delete_clears_and_health_answers(sink: WebhookSinkHandle) -> None:
    httpx.post(f"{sink.url}/chat", json={"a": 1})
    assert httpx.get(f"{sink.url}/health").json() == {"status": "ok"}
    assert httpx.delete(f"{sink.url}/messages").json() == {"cleared": 1}
    assert httpx.get(f"{sink.url}/messages").json() == {"messages": []}


def test_non_json_bodies_are_kept_and_oversized_ones_refused(sink: WebhookSinkHandle) -> None:
    assert httpx.post(f"{sink.url}/chat", content=b"plain text").status_code == 200
    assert sink.messages("/chat")[0]["body"] == {"_raw": "plain text"}
    big = httpx.post(f"{sink.url}/chat", content=b"x" * (1024 * 1024 + 1))
    assert big.status_code == 413
    assert len(sink.messages()) == 1


def test_injected_failures_hit_only_their_path_and_count(sink: WebhookSinkHandle) -> None:
    r = httpx.post(f"{sink.url}/_sandbox/faults", json={"path": "/chat", "status": 503, "count": 2})
    assert r.status_code == 201
    codes = [httpx.post(f"{sink.url}/chat", json={"n": n}).status_code for n in range(3)]
    assert codes == [503, 503, 200]
    assert httpx.post(f"{sink.url}/status-page", json={}).status_code == 200
    assert [m["body"] for m in sink.messages("/chat")] == [{"n": 2}]  # failed posts are not recorded
    bad = httpx.post(f"{sink.url}/_sandbox/faults", json={"path": "/chat", "status": 200})
    assert bad.status_code == 400 and bad.json()["field"] == "status"
    bad = httpx.post(f"{sink.url}/_sandbox/faults", json={"path": "chat"})
    assert bad.status_code == 400 and bad.json()["field"] == "path"


def test_refuses_non_loopback_addresses() -> None:
    with pytest.raises(ValueError, match="loopback"):
        start_webhook_sink("0.0.0.0", 0)


def test_cli_serves_until_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dr_sandbox.webhook_sink", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "sink CLI never became healthy"
            time.sleep(0.1)
        httpx.post(f"http://127.0.0.1:{port}/chat", json={"x": 1})
        assert len(fetch_messages(f"http://127.0.0.1:{port}", "/chat")) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_cli_refuses_a_public_address() -> None:
    env = {**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]}
    out = subprocess.run(
        [sys.executable, "-m", "dr_sandbox.webhook_sink", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "loopback" in out.stderr
