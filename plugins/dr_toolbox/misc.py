"""`checksum` and `selfcheck`: the small commands a runbook step uses to prove something before acting."""

from __future__ import annotations

import argparse
import logging
import re
from typing import Any

from dr_toolbox.dbops import parse_sha256
from dr_toolbox.errors import UsageError
from dr_toolbox.redact import redact
from dr_toolbox.storage import parse_location, s3_client, sha256_location

log = logging.getLogger("dr_toolbox")

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def checksum(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    loc = parse_location(args.location, "LOCATION")
    expect = parse_sha256(args.expect, "--expect")
    log.info("hashing %s", loc)
    sha, size = sha256_location(loc)
    result: dict[str, Any] = {"location": loc.raw, "sha256": sha, "size_bytes": size}
    if expect is None:
        return result, 0
    result["expected"] = expect
    result["matches"] = sha == expect
    if sha != expect:
        result["error"] = f"sha256 mismatch for {loc}: expected {expect}, got {sha}"
        return result, 1
    return result, 0


def selfcheck(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Reachability of the database and the bucket, each reported separately so one failure does not
    hide the other (the usual cause is a NetworkPolicy or IAM role missing for one of them)."""
    from dr_toolbox.pg import connect, resolve_target

    if not _BUCKET_RE.match(args.bucket):
        raise UsageError("--bucket", f"{args.bucket!r} is not a valid S3 bucket name")
    target = resolve_target(args.dsn_env)
    checks: list[dict[str, Any]] = []

    try:
        conn = connect(target, autocommit=True)
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT 1, current_setting('server_version'), current_database(), pg_is_in_recovery()"
            )
            one, version, dbname, in_recovery = cur.fetchone()
        finally:
            conn.close()
        checks.append(
            {
                "name": "database",
                "ok": one == 1,
                "target": target.describe(),
                "database": dbname,
                "server_version": version,
                "in_recovery": in_recovery,
            }
        )
    except Exception as exc:
        checks.append(
            {"name": "database", "ok": False, "target": target.describe(), "reason": redact(str(exc))}
        )

    try:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            s3_client().head_bucket(Bucket=args.bucket)
            checks.append({"name": "bucket", "ok": True, "bucket": args.bucket})
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            reason = {"404": "bucket does not exist", "403": "access denied"}.get(str(code), f"{code}: {exc}")
            checks.append({"name": "bucket", "ok": False, "bucket": args.bucket, "reason": redact(reason)})
        except BotoCoreError as exc:
            checks.append({"name": "bucket", "ok": False, "bucket": args.bucket, "reason": redact(str(exc))})
    except ImportError as exc:  # pragma: no cover - the image always has boto3
        checks.append(
            {"name": "bucket", "ok": False, "bucket": args.bucket, "reason": f"boto3 unavailable: {exc}"}
        )

    for check in checks:
        log.info("selfcheck %s: %s", check["name"], "ok" if check["ok"] else f"FAILED ({check['reason']})")
    ok = all(c["ok"] for c in checks)
    result: dict[str, Any] = {"passed": ok, "checks": checks}
    if not ok:
        result["error"] = "selfcheck failed: " + "; ".join(
            f"{c['name']}: {c['reason']}" for c in checks if not c["ok"]
        )
    return result, 0 if ok else 1
