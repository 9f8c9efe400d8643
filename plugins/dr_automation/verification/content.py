"""Each system type's backup parsed and validated: a file that hashes right can still be unusable.

- ``postgres_database``: a pg_dump custom archive (``PGDMP``) and its stats sidecar, which must name
  the dump's SHA-256 and agree with the figures the manifest recorded (the restore itself is a pod);
- ``kubernetes_objects``: every object re-appliable: a known kind with its API group, a name, a
  namespace the estate backs up, counts as exported;
- ``secrets``: the sealed envelope opens (KMS decrypt + AES-GCM authentication) and holds every
  secret id it lists (values are never logged or returned);
- ``neo4j``: header counts match the lines, every relationship joins two exported nodes, counts as
  recorded at backup time;
- ``redis_sessions``, ``cloudwatch_metrics``, ``postgres_wal``, ``machine_images``: documents in
  their format; ``rds_snapshot``: the described snapshots (restored by their own task);
- ``s3_bucket``/``s3_prefix``: copies of objects, checked byte for byte by ``objects``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dr_automation.verification.objects import check

if TYPE_CHECKING:
    from dr_automation.estate import Estate

STATS_FORMAT = "dr-toolbox-stats/1"
K8S_FORMAT = "dr-toolbox/k8s-export/v1"
NEO4J_FORMAT = "dr-toolbox/neo4j-export/v1"
SESSIONS_FORMAT = "dr-backup/redis-dump/v1"
METRICS_FORMAT = "dr-backup/cloudwatch/v1"

Blobs = Mapping[str, bytes]


class Invalid(ValueError):
    """The backup does not parse or validate; the message is the exact reason."""


def parse_json(data: bytes, name: str, *, gz: bool = False) -> Any:
    try:
        return json.loads(gzip.decompress(data) if gz or name.endswith(".gz") else data)
    except (OSError, EOFError, ValueError) as exc:
        raise Invalid(f"{name} does not parse ({type(exc).__name__}: {exc})") from None


def _lines(data: bytes, name: str) -> list[Any]:
    try:
        text = (gzip.decompress(data) if name.endswith(".gz") else data).decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, EOFError, ValueError) as exc:
        raise Invalid(f"{name} does not parse ({type(exc).__name__}: {exc})") from None


def _one(blobs: Blobs, suffix: str) -> tuple[str, bytes]:
    found = [(n, b) for n, b in blobs.items() if n.endswith(suffix)]
    if len(found) != 1:
        raise Invalid(f"expected one artifact ending {suffix!r}, found {sorted(blobs)}")
    return found[0]


def _first(blobs: Blobs) -> tuple[str, bytes]:
    """The artifact of a single-document system."""
    if not blobs:
        raise Invalid("no artifact")
    return next(iter(sorted(blobs.items())))


def _format(doc: Any, name: str, expected: str) -> None:
    got = doc.get("format") if isinstance(doc, dict) else None
    if got != expected:
        raise Invalid(f"{name}: format {got!r}, expected {expected!r}")


def postgres_database(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    dump_name, dump = _one(blobs, ".pgdump")
    if not dump.startswith(b"PGDMP"):
        raise Invalid(f"{dump_name} is not a pg_dump custom archive (no PGDMP header)")
    stats_name, stats_bytes = _one(blobs, ".pgdump.stats.json")
    stats = parse_json(stats_bytes, stats_name)
    _format(stats, stats_name, STATS_FORMAT)
    dump_sha = next(a["sha256"] for a in entry["artifacts"] if a["name"] == dump_name)
    if stats.get("sha256") != dump_sha:
        raise Invalid(
            f"{stats_name} names dump SHA-256 {stats.get('sha256')}, the manifest records {dump_sha}"
        )
    tables = stats.get("tables")
    if not isinstance(tables, dict) or not tables:
        raise Invalid(f"{stats_name} records no table")
    recorded = (entry.get("details") or {}).get("tables")
    if recorded is not None and recorded != tables:
        differ = sorted(t for t in set(recorded) | set(tables) if recorded.get(t) != tables.get(t))
        raise Invalid(f"{stats_name} and the manifest record different figures for tables {differ}")
    return f"{len(tables)} tables, {sum(int(t['rows']) for t in tables.values())} rows recorded"


def kubernetes_objects(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    name, data = _one(blobs, ".json.gz")
    doc = parse_json(data, name)
    _format(doc, name, K8S_FORMAT)
    groups = {k["kind"]: k["api_version"] for k in estate.kubernetes["resource_kinds"]}
    namespaces = set(estate.kubernetes["namespaces"])
    counts: dict[str, int] = {}
    for index, item in enumerate(doc.get("items") or []):
        kind, meta = item.get("kind"), item.get("metadata") or {}
        where = f"{name} items[{index}] ({kind}/{meta.get('name')})"
        if kind not in groups:
            raise Invalid(f"{where}: kind {kind!r} is not one the estate backs up")
        if item.get("apiVersion") != groups[kind]:
            raise Invalid(f"{where}: apiVersion {item.get('apiVersion')!r}, expected {groups[kind]!r}")
        if not meta.get("name"):
            raise Invalid(f"{where}: no metadata.name")
        if meta.get("namespace") not in namespaces:
            raise Invalid(f"{where}: namespace {meta.get('namespace')!r} is not backed up by the estate")
        for runtime in ("uid", "resourceVersion", "creationTimestamp"):
            if runtime in meta:
                raise Invalid(f"{where}: metadata.{runtime} kept (the object would not re-apply cleanly)")
        counts[kind] = counts.get(kind, 0) + 1
    recorded = {k: v for k, v in (doc.get("counts") or {}).items() if v}
    if recorded != counts:
        raise Invalid(f"{name}: header counts {recorded}, the items hold {counts}")
    return f"{sum(counts.values())} objects re-appliable ({', '.join(sorted(counts))})"


def secrets(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    from dr_automation.backup.components import ENVELOPE_FORMAT, error_code, unseal

    name, data = _first(blobs)
    envelope = parse_json(data, name)
    _format(envelope, name, ENVELOPE_FORMAT)
    try:
        payload = json.loads(unseal(estate, envelope))
    except Exception as exc:  # never the value: the type and AWS error code only
        code = error_code(exc)
        raise Invalid(f"{name}: the sealed envelope does not open ({code or type(exc).__name__})") from None
    missing = sorted(set(envelope.get("secret_ids") or []) - set(payload))
    if missing or not payload:
        raise Invalid(f"{name}: sealed payload lacks secrets {missing}")
    return f"{len(payload)} sealed secrets open"


def neo4j(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    name, data = _one(blobs, ".jsonl.gz")
    lines = _lines(data, name)
    if not lines:
        raise Invalid(f"{name} is empty")
    header, body = lines[0], lines[1:]
    _format(header, name, NEO4J_FORMAT)
    nodes = [x for x in body if x.get("kind") == "node"]
    rels = [x for x in body if x.get("kind") == "relationship"]
    if len(nodes) + len(rels) != len(body):
        raise Invalid(f"{name}: {len(body) - len(nodes) - len(rels)} lines are neither node nor relationship")
    if (header.get("nodes"), header.get("relationships")) != (len(nodes), len(rels)):
        raise Invalid(
            f"{name}: header says {header.get('nodes')} nodes and {header.get('relationships')} relationships, "
            f"the file holds {len(nodes)} and {len(rels)}"
        )
    ids = {n["id"] for n in nodes}
    dangling = [r["id"] for r in rels if r.get("start") not in ids or r.get("end") not in ids]
    if dangling:
        raise Invalid(f"{name}: relationships {dangling[:5]} join nodes that are not in the export")
    details = entry.get("details") or {}
    for field, count in (("nodes", len(nodes)), ("relationships", len(rels))):
        if field in details and details[field] != count:
            raise Invalid(f"{name}: {count} {field}, the backup recorded {details[field]}")
    return f"{len(nodes)} nodes, {len(rels)} relationships, none dangling"


def redis_sessions(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    name, data = _first(blobs)
    lines = _lines(data, name)
    if not lines:
        raise Invalid(f"{name} is empty")
    _format(lines[0], name, SESSIONS_FORMAT)
    bad = [i for i, line in enumerate(lines[1:], 1) if not {"key", "dump", "pttl"} <= set(line)]
    if bad:
        raise Invalid(f"{name}: lines {bad[:5]} are not session records (key, dump, pttl)")
    return f"{len(lines) - 1} session records"


def cloudwatch_metrics(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    name, data = _first(blobs)
    doc = parse_json(data, name)
    _format(doc, name, METRICS_FORMAT)
    if not isinstance(doc.get("regions"), dict):
        raise Invalid(f"{name}: no regions")
    return f"{sum(len(s) for s in doc['regions'].values())} series in {len(doc['regions'])} regions"


def postgres_wal(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    name, data = _first(blobs)
    doc = parse_json(data, name)
    if not isinstance(doc, dict) or not doc.get("latest_restorable_time"):
        raise Invalid(f"{name}: no latest_restorable_time (nothing to recover to)")
    return f"restorable to {doc['latest_restorable_time']}"


def machine_images(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    name, data = _first(blobs)
    doc = parse_json(data, name)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise Invalid(f"{name}: no images list")
    return f"{len(doc['images'])} image definitions"


def rds_snapshot(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> str:
    name, data = _first(blobs)
    doc = parse_json(data, name)
    snaps = doc.get("snapshots") if isinstance(doc, dict) else None
    if not snaps:
        raise Invalid(f"{name}: no snapshot described")
    for snap in snaps:
        if not snap.get("encrypted"):
            raise Invalid(
                f"{name}: snapshot {snap.get('identifier')} in {snap.get('region')} is not encrypted"
            )
    return f"{len(snaps)} snapshots described"


VALIDATORS: dict[str, Callable[[Estate, Mapping[str, Any], Blobs], str]] = {
    "postgres_database": postgres_database,
    "kubernetes_objects": kubernetes_objects,
    "secrets": secrets,
    "neo4j": neo4j,
    "redis_sessions": redis_sessions,
    "cloudwatch_metrics": cloudwatch_metrics,
    "postgres_wal": postgres_wal,
    "machine_images": machine_images,
    "rds_snapshot": rds_snapshot,
}


def check_content(estate: Estate, entry: Mapping[str, Any], blobs: Blobs) -> dict[str, Any] | None:
    """The entry's content check (None for types that are copies of objects)."""
    validate = VALIDATORS.get(entry["type"])
    if validate is None:
        return None
    try:
        summary = validate(estate, entry, blobs)
    except Invalid as exc:
        return check("content", entry["name"], False, f"{entry['name']}: {exc}")
    return check("content", entry["name"], True, summary=summary)
