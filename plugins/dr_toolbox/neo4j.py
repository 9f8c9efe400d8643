"""neo4j-backup: a logical export of one Neo4j database through its HTTP transactional API.

Both statements run in ONE transaction (``/db/<name>/tx/commit``), so nodes and relationships come from
the same snapshot. The export is gzip-compressed JSON lines (a header, the nodes, the relationships),
byte-for-byte reproducible (gzip mtime 0, ordered by element id), uploaded with SSE and its SHA-256.

Plain urllib (no driver in the image). The password is read from the environment variable named by
``--password-env`` (a Kubernetes Secret in the pod) and registered for redaction before any request.
A very large graph would use ``neo4j-admin database backup`` instead; this export fits the estates
whose graph is a few GB at most.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from dr_toolbox.errors import ToolboxError, UsageError
from dr_toolbox.redact import register_secret
from dr_toolbox.storage import describe_encryption, encryption_args, parse_location, upload_bytes

log = logging.getLogger("dr_toolbox")

EXPORT_FORMAT = "dr-toolbox/neo4j-export/v1"
NODES = "MATCH (n) RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS properties ORDER BY id"
RELATIONSHIPS = (
    "MATCH (a)-[r]->(b) RETURN elementId(r) AS id, type(r) AS type, elementId(a) AS start, "
    "elementId(b) AS end, properties(r) AS properties ORDER BY id"
)
_URI_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.-]{0,62}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _arguments(args: argparse.Namespace) -> tuple[str, str]:
    if not _URI_RE.match(args.uri or ""):
        raise UsageError("--uri", f"{args.uri!r} is not an http(s)://host[:port] URL of the Neo4j HTTP API")
    if not _NAME_RE.match(args.database):
        raise UsageError("--database", f"{args.database!r} is not a Neo4j database name")
    if not _ENV_RE.match(args.password_env):
        raise UsageError("--password-env", f"{args.password_env!r} is not an environment variable name")
    password = os.environ.get(args.password_env)
    if not password:
        raise UsageError("--password-env", f"environment variable {args.password_env} is not set or empty")
    register_secret(password)
    return args.uri.rstrip("/"), password


def run_statements(uri: str, database: str, user: str, password: str, statements: list[str]) -> list[Any]:
    """Run statements in one transaction; returns each statement's rows (lists of column values)."""
    body = json.dumps({"statements": [{"statement": s} for s in statements]}).encode()
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{uri}/db/{urllib.parse.quote(database)}/tx/commit",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Basic {token}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        reason = "authentication failed (check the password Secret)" if exc.code == 401 else exc.reason
        raise ToolboxError(f"Neo4j at {uri}: HTTP {exc.code} {reason}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ToolboxError(f"Neo4j at {uri}: cannot connect ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ToolboxError(f"Neo4j at {uri}: the answer is not JSON") from exc
    errors = answer.get("errors") or []
    if errors:
        first = errors[0]
        raise ToolboxError(f"Neo4j at {uri}: {first.get('code', 'error')}: {first.get('message', '')}")
    results = answer.get("results") or []
    if len(results) != len(statements):
        raise ToolboxError(f"Neo4j at {uri}: {len(results)} results for {len(statements)} statements")
    return [[item["row"] for item in result.get("data", [])] for result in results]


def export_lines(database: str, nodes: list[list[Any]], relationships: list[list[Any]]) -> bytes:
    """The gzip JSON-lines export: one header line, then nodes, then relationships."""
    lines = [
        {
            "format": EXPORT_FORMAT,
            "database": database,
            "nodes": len(nodes),
            "relationships": len(relationships),
        }
    ]
    lines += [{"kind": "node", "id": n[0], "labels": n[1], "properties": n[2]} for n in nodes]
    lines += [
        {"kind": "relationship", "id": r[0], "type": r[1], "start": r[2], "end": r[3], "properties": r[4]}
        for r in relationships
    ]
    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    return gzip.compress(text.encode(), mtime=0)


def neo4j_backup(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    uri, password = _arguments(args)
    out = parse_location(args.out, "--out")
    if not out.is_s3 and (args.kms_key_id or args.storage_class):
        raise UsageError("--kms-key-id", "only applies to s3:// locations (--out is a local path)")
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    log.info("exporting Neo4j database %s from %s", args.database, uri)
    nodes, relationships = run_statements(uri, args.database, args.user, password, [NODES, RELATIONSHIPS])
    payload = export_lines(args.database, nodes, relationships)
    enc = encryption_args(args.kms_key_id)
    sha = upload_bytes(
        payload,
        out,
        encryption=enc,
        storage_class=args.storage_class,
        metadata={
            "nodes": str(len(nodes)),
            "relationships": str(len(relationships)),
            "database": args.database,
        },
        content_type="application/gzip",
    )
    log.info(
        "wrote %d nodes, %d relationships (%d bytes) to %s", len(nodes), len(relationships), len(payload), out
    )
    return {
        "location": out.raw,
        "database": args.database,
        "nodes": len(nodes),
        "relationships": len(relationships),
        "sha256": sha,
        "size_bytes": len(payload),
        "encryption": describe_encryption(enc, out),
        "started_at": started_at,
        "duration_seconds": round(time.monotonic() - t0, 3),
    }, 0
