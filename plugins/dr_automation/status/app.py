"""The status board's FastAPI app, mounted by the bundle's plugin in the Airflow api-server.

Airflow does not protect a plugin's app: every route here depends on Airflow's own security
dependencies (``airflow.api_fastapi.core_api.security``): the caller's JWT (the UI's ``_token``
cookie or an ``Authorization: Bearer`` header) is validated by the auth manager, and the user must
be allowed to read DAGs. No credentials -> 401, an invalid token -> 403, not allowed -> 403.

The app is built on first request (``LazyStatusApp``): the plugin module is imported by every
Airflow component, and only the api-server ever serves it.
"""

from __future__ import annotations

import threading
from typing import Any

URL_PREFIX = "/dr-status"
URL_ROUTE = "dr-status"  # the UI shows the page at /plugin/dr-status


def _ui_base() -> str:
    """The Airflow UI's path prefix ('' when served at the host's root)."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def create_app() -> Any:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
    from fastapi import Depends, FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(
        title="DR status board",
        description="Where the DR programme stands: serving region, health, backups, approvals, drills.",
        dependencies=[Depends(requires_access_dag(method="GET"))],
    )

    # the caller, from the JWT Airflow validates (a string annotation would not resolve here)
    current_user = Depends(get_user)

    def snapshot_for(user: Any) -> dict[str, Any]:
        from airflow.utils.session import create_session

        from dr_automation.estate import load_estate
        from dr_automation.status.airflow_state import MetadataAirflowState
        from dr_automation.status.snapshot import status_snapshot

        readable = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        with create_session() as session:
            return status_snapshot(load_estate(), airflow=MetadataAirflowState(session, readable))

    @app.get("/api/status")
    def status(user: Any = current_user) -> JSONResponse:
        """Every figure of the board as JSON (format dr-status-snapshot/1)."""
        return JSONResponse(snapshot_for(user), headers={"Cache-Control": "no-store"})

    @app.get("/", response_class=HTMLResponse)
    def page(user: Any = current_user) -> HTMLResponse:
        from dr_automation.estate import load_estate
        from dr_automation.status.page import render_page

        threshold = float(load_estate().health.get("healthy_score", 0.8))
        html = render_page(snapshot_for(user), ui_base=_ui_base(), threshold=threshold)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    return app


class LazyStatusApp:
    """An ASGI app that builds the FastAPI app on its first request (thread-safe)."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


FASTAPI_APP = {"app": LazyStatusApp(), "url_prefix": URL_PREFIX, "name": "DR status board"}
EXTERNAL_VIEW = {
    "name": "DR status",
    "href": f"{URL_PREFIX}/",
    "url_route": URL_ROUTE,
    "destination": "nav",
    "nav_top_level": True,
}
