"""A small client for Airflow's REST API v2, as operators use it during an incident."""

from __future__ import annotations

import time
from typing import Any

import httpx

TERMINAL_RUN_STATES = {"success", "failed"}
IDEMPOTENT_ATTEMPTS = 4


class AirflowAPIError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.body = response.text
        super().__init__(
            f"{response.request.method} {response.request.url.path} -> {response.status_code}: {response.text[:500]}"
        )


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        r = self._http.post("/auth/token", json={"username": username, "password": password})
        if r.status_code not in (200, 201):
            raise AirflowAPIError(r)
        self._http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; an idempotent one (GET, PATCH) is tried again on a server error, as the
        sandbox's SQLite metadata database can be briefly locked ("Database error") under load."""
        attempts = IDEMPOTENT_ATTEMPTS if method.upper() in ("GET", "PATCH") else 1
        for attempt in range(1, attempts + 1):
            r = self._http.request(method, f"/api/v2{path}", **kwargs)
            if r.status_code < 500 or attempt == attempts:
                break
            time.sleep(0.5 * attempt)
        if r.status_code >= 400:
            raise AirflowAPIError(r)
        return r.json() if r.content else None

    def wait_for_dag(self, dag_id: str, *, timeout: float = 120.0) -> dict:
        """Wait until the dag-processor has parsed the DAG (a fresh sandbox has not yet)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.request("GET", f"/dags/{dag_id}")
            except AirflowAPIError as exc:
                if exc.status_code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(1.0)

    def unpause(self, dag_id: str) -> dict:
        return self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def pause(self, dag_id: str) -> dict:
        return self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": True})

    def runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns?limit={limit}&order_by=-start_date")["dag_runs"]

    def trigger(self, dag_id: str, conf: dict | None = None, *, run_id: str | None = None) -> dict:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        for attempt in range(1, IDEMPOTENT_ATTEMPTS + 1):
            try:
                return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
            except AirflowAPIError as exc:
                # with its own run id a trigger is idempotent: after a server error, try again, and a
                # 409 then means the first try had created the run
                if run_id and exc.status_code == 409 and attempt > 1:
                    return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
                if not run_id or exc.status_code < 500 or attempt == IDEMPOTENT_ATTEMPTS:
                    raise
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 300.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id}/{run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(1.0)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
