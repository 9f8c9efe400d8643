"""The sandbox's stand-in for the Neo4j cluster: the HTTP transactional API over a small in-memory graph.

The tier-3 backup exports the graph with ``dr-toolbox neo4j-backup`` (two Cypher statements in one
transaction); there is no Neo4j server on the sandbox machines, so this answers exactly those two
statements the way Neo4j 5 does (``{"results": [{"columns", "data": [{"row", "meta"}]}], "errors"}``),
behind HTTP Basic auth with the password the sandbox puts in the ``neo4j-auth`` Secret. Any other
statement gets Neo4j's ``Neo.ClientError.Statement.SyntaxError`` shape, so a toolbox change that sends
new Cypher fails loudly instead of being answered with something invented.

    POST /db/<database>/tx/commit   run the statements (Basic auth)
    GET  /health                    {"status": "ok", "nodes": N, "relationships": M}

The graph (tenants, users, a few relationships) is generated from a seed, so two exports of the same
stand-in are byte-identical. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import http.server
import json
import logging
import os
import random
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from dr_sandbox.netguard import LoopbackHTTPServer, require_loopback, send_json, serve_until_signalled
from dr_toolbox.neo4j import NODES, RELATIONSHIPS

log = logging.getLogger(__name__)

PASSWORD_ENV = "NEO4J_PASSWORD"
USER = "neo4j"
MAX_BODY_BYTES = 1024 * 1024
_NODES = " ".join(NODES.split())
_RELATIONSHIPS = " ".join(RELATIONSHIPS.split())


@dataclass
class Graph:
    """Nodes (id, labels, properties) and relationships (id, type, start, end, properties)."""

    nodes: list[tuple[str, list[str], dict[str, Any]]] = field(default_factory=list)
    relationships: list[tuple[str, str, str, str, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def generate(cls, tenants: int = 6, users_per_tenant: int = 4, seed: int = 7) -> Graph:
        rng = random.Random(seed)
        graph = cls()
        for t in range(1, tenants + 1):
            tenant = f"4:sandbox:{len(graph.nodes):06d}"
            graph.nodes.append(
                (tenant, ["Tenant"], {"name": f"tenant-{t}", "tier": rng.choice(["team", "developer"])})
            )
            members = []
            for u in range(1, users_per_tenant + 1):
                user = f"4:sandbox:{len(graph.nodes):06d}"
                graph.nodes.append((user, ["User"], {"email": f"user{t}-{u}@example.test"}))
                graph.relationships.append(
                    (
                        f"5:sandbox:{len(graph.relationships):06d}",
                        "MEMBER_OF",
                        user,
                        tenant,
                        {"role": "member"},
                    )
                )
                members.append(user)
            a, b = rng.sample(members, 2)
            graph.relationships.append(
                (f"5:sandbox:{len(graph.relationships):06d}", "FOLLOWS", a, b, {"since": 2025})
            )
        return graph

    def answer(self, statement: str) -> dict[str, Any]:
        normalized = " ".join(statement.split())
        if normalized == _NODES:
            rows = [[i, labels, props] for i, labels, props in sorted(self.nodes)]
            columns = ["id", "labels", "properties"]
        elif normalized == _RELATIONSHIPS:
            rows = [[i, t, s, e, props] for i, t, s, e, props in sorted(self.relationships)]
            columns = ["id", "type", "start", "end", "properties"]
        else:
            raise ValueError(normalized)
        return {"columns": columns, "data": [{"row": row, "meta": [None] * len(row)} for row in rows]}


class _Handler(http.server.BaseHTTPRequestHandler):
    graph: Graph
    password: str
    server_version = "Neo4j-sandbox/5"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/health":
            send_json(
                self,
                200,
                {
                    "status": "ok",
                    "nodes": len(self.graph.nodes),
                    "relationships": len(self.graph.relationships),
                },
            )
            return
        send_json(
            self, 404, {"errors": [{"code": "Neo.ClientError.Request.Invalid", "message": "not found"}]}
        )

    def do_POST(self) -> None:
        parts = self.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "db" or parts[2:] != ["tx", "commit"]:
            send_json(
                self, 404, {"errors": [{"code": "Neo.ClientError.Request.Invalid", "message": "not found"}]}
            )
            return
        if not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="Neo4j"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            send_json(
                self, 413, {"errors": [{"code": "Neo.ClientError.Request.Invalid", "message": "too large"}]}
            )
            return
        try:
            statements = json.loads(self.rfile.read(length) or b"{}").get("statements", [])
        except ValueError:
            send_json(
                self,
                400,
                {"errors": [{"code": "Neo.ClientError.Request.InvalidFormat", "message": "bad JSON"}]},
            )
            return
        results, errors = [], []
        for item in statements:
            try:
                results.append(self.graph.answer(str(item.get("statement", ""))))
            except ValueError as exc:
                errors.append(
                    {
                        "code": "Neo.ClientError.Statement.SyntaxError",
                        "message": f"the sandbox stand-in does not answer this statement: {exc}",
                    }
                )
                results = []
                break
        send_json(self, 200, {"results": results, "errors": errors})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == USER and hmac.compare_digest(password.encode(), self.password.encode())


class Neo4jHandle:
    """A running stand-in (in-process): its URL and a way to stop it."""

    def __init__(self, server: LoopbackHTTPServer, graph: Graph) -> None:
        self._server = server
        self.graph = graph
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="neo4j-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Neo4jHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_neo4j_api(password: str, host: str = "127.0.0.1", port: int = 0, *, seed: int = 7) -> Neo4jHandle:
    """Start the stand-in in a background thread (port 0 picks a free port)."""
    require_loopback(host)
    if not password:
        raise ValueError("password: must not be empty (the toolbox authenticates with the neo4j-auth Secret)")
    graph = Graph.generate(seed=seed)
    handler = type("Neo4jHandler", (_Handler,), {"graph": graph, "password": password})
    return Neo4jHandle(LoopbackHTTPServer((host, port), handler), graph)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dr_sandbox.neo4j_api", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=7474)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    password = os.environ.get(PASSWORD_ENV, "")
    try:
        handle = start_neo4j_api(password, args.host, args.port)
    except (ValueError, OSError) as exc:
        print(f"neo4j_api: {exc} (the password comes from ${PASSWORD_ENV})", file=sys.stderr)
        return 2
    return serve_until_signalled(handle.stop, f"Neo4j stand-in listening on {handle.url}")


if __name__ == "__main__":
    sys.exit(main())
