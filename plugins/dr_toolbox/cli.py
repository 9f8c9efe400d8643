"""Command line of the toolbox: argparse subcommands, one JSON result line, exit codes 0/1/2.

Contract with the callers (KubernetesPodOperator tasks read the pod log, the sandbox reads stdout):
progress goes to stderr, the LAST stdout line is one JSON object, exit code 0 = success, 1 = failure,
2 = bad arguments (the message names the argument). Everything printed passes through redaction.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from dr_toolbox import __version__
from dr_toolbox.errors import Terminated, ToolboxError, UsageError
from dr_toolbox.redact import redact, redact_obj, register_env_secrets
from dr_toolbox.storage import STORAGE_CLASSES

log = logging.getLogger("dr_toolbox")

COMMANDS = (
    "db-dump",
    "db-stats",
    "db-restore",
    "db-verify",
    "checksum",
    "selfcheck",
    "export-k8s-objects",
    "neo4j-backup",
    "batch",
)

Handler = Callable[[argparse.Namespace], tuple[dict[str, Any], int]]


class _ArgumentError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Raise instead of exiting so the JSON result line is still printed for bad arguments."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(f"{self.prog}: {message}")


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _lazy(module: str, func: str) -> Handler:
    """Import the command's module only when it runs: keeps `--help` and argument errors instant."""

    def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
        import importlib

        return getattr(importlib.import_module(module), func)(args)

    return run


def _add_dsn(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dsn-env",
        metavar="VAR",
        help="NAME of the environment variable holding the libpq DSN (never the DSN itself); "
        "without it the standard PG* variables are used",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dr-toolbox", description="Disaster-recovery toolbox (runs in Kubernetes pods).")
    parser.add_argument("--version", action="version", version=f"dr-toolbox {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    parser.add_argument(
        "--result-out",
        metavar="LOCATION",
        help="also write the JSON result (success or failure) to this s3://bucket/key or path, so the "
        "caller can read why a pod failed after the pod is gone",
    )
    parser.add_argument("--result-kms-key-id", metavar="ID", help="SSE-KMS key for --result-out")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("db-dump", help="consistent pg_dump + per-table stats, uploaded encrypted")
    _add_dsn(p)
    p.add_argument("--out", required=True, metavar="LOCATION", help="s3://bucket/key or a local path")
    p.add_argument("--tables", metavar="T1,T2", help="only these tables (table or schema.table)")
    p.add_argument("--kms-key-id", metavar="ID", help="SSE-KMS key (default: SSE-S3 AES256)")
    p.add_argument(
        "--storage-class", choices=STORAGE_CLASSES, metavar="CLASS", help=", ".join(STORAGE_CLASSES)
    )
    p.add_argument("--label", action="append", metavar="K=V", help="tag for the object (repeatable)")
    p.set_defaults(handler=_lazy("dr_toolbox.dbops", "db_dump"))

    p = sub.add_parser("db-stats", help="per-table row counts and checksums of a live database")
    _add_dsn(p)
    p.add_argument("--tables", metavar="T1,T2")
    p.set_defaults(handler=_lazy("dr_toolbox.dbops", "db_stats"))

    p = sub.add_parser("db-restore", help="verify a dump's SHA-256, then pg_restore it")
    p.add_argument("--from", dest="from_location", required=True, metavar="LOCATION")
    _add_dsn(p)
    p.add_argument("--create-database", metavar="NAME", help="create this database and restore into it")
    p.add_argument("--clean", action="store_true", help="drop existing objects first (--clean --if-exists)")
    p.add_argument("--expect-sha256", metavar="HEX")
    p.set_defaults(handler=_lazy("dr_toolbox.dbops", "db_restore"))

    p = sub.add_parser(
        "db-verify", help="restore into a scratch database and compare with the recorded stats"
    )
    p.add_argument("--from", dest="from_location", required=True, metavar="LOCATION")
    _add_dsn(p)
    p.add_argument("--stats", metavar="LOCATION", help="recorded stats (default: <from>.stats.json)")
    p.add_argument(
        "--scratch-database",
        metavar="NAME",
        help="name of the scratch database (default: a random dr_verify_* name); a caller that names it "
        "can drop it again even if this pod is killed",
    )
    p.set_defaults(handler=_lazy("dr_toolbox.dbops", "db_verify"))

    p = sub.add_parser("checksum", help="SHA-256 of an S3 object or a file")
    p.add_argument("location", metavar="LOCATION")
    p.add_argument("--expect", metavar="HEX")
    p.set_defaults(handler=_lazy("dr_toolbox.misc", "checksum"))

    p = sub.add_parser("selfcheck", help="can this pod reach the database and the bucket?")
    _add_dsn(p)
    p.add_argument("--bucket", required=True, metavar="NAME")
    p.set_defaults(handler=_lazy("dr_toolbox.misc", "selfcheck"))

    p = sub.add_parser("export-k8s-objects", help="export namespaced Kubernetes objects (gzip JSON)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--api-url", metavar="URL", help="Kubernetes API base URL")
    src.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    p.add_argument(
        "--token-env", metavar="VAR", help="NAME of the env var holding a bearer token (with --api-url)"
    )
    p.add_argument("--ca-file", metavar="PATH", help="CA bundle for an https --api-url")
    p.add_argument("--namespaces", required=True, metavar="A,B")
    p.add_argument(
        "--kinds", required=True, metavar="K1,K2", help="plural resource names, e.g. deployments,services"
    )
    p.add_argument("--out", required=True, metavar="LOCATION")
    p.add_argument("--kms-key-id", metavar="ID")
    p.add_argument(
        "--storage-class", choices=STORAGE_CLASSES, metavar="CLASS", help=", ".join(STORAGE_CLASSES)
    )
    p.set_defaults(handler=_lazy("dr_toolbox.k8s_export", "export_k8s_objects"))

    p = sub.add_parser(
        "neo4j-backup", help="export a Neo4j database (nodes + relationships, gzip JSON lines)"
    )
    p.add_argument(
        "--uri", required=True, metavar="URL", help="the cluster's HTTP API, e.g. http://host:7474"
    )
    p.add_argument("--database", default="neo4j", metavar="NAME")
    p.add_argument("--user", default="neo4j", metavar="NAME")
    p.add_argument(
        "--password-env",
        required=True,
        metavar="VAR",
        help="NAME of the environment variable holding the password (never the password itself)",
    )
    p.add_argument("--out", required=True, metavar="LOCATION")
    p.add_argument("--kms-key-id", metavar="ID")
    p.add_argument(
        "--storage-class", choices=STORAGE_CLASSES, metavar="CLASS", help=", ".join(STORAGE_CLASSES)
    )
    p.set_defaults(handler=_lazy("dr_toolbox.neo4j", "neo4j_backup"))

    p = sub.add_parser("batch", help="several toolbox commands side by side, each its own process")
    p.add_argument(
        "--job",
        action="append",
        metavar="JSON",
        help="a toolbox command line as a JSON list of strings (repeatable)",
    )
    p.add_argument("--parallel", type=int, default=4, metavar="N", help="jobs at a time (default 4)")
    p.set_defaults(handler=_lazy("dr_toolbox.batch", "batch"))
    return parser


def _emit(result: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    sys.stdout.flush()
    sys.stdout.write(json.dumps(redact_obj(result), sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
    location = getattr(args, "result_out", None)
    if location:
        _record(result, location, getattr(args, "result_kms_key_id", None))


def _record(result: dict[str, Any], location: str, kms_key_id: str | None) -> None:
    """The result line, kept where the caller can read it; a failure here never changes the exit code."""
    from dr_toolbox.storage import encryption_args, parse_location, put_json

    try:
        put_json(
            redact_obj(result),
            parse_location(location, "--result-out"),
            encryption=encryption_args(kms_key_id),
        )
    except Exception as exc:
        log.warning("could not write the result to %s: %s", location, redact(str(exc)))


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("terminated by SIGTERM")


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s dr-toolbox: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    register_env_secrets()
    _setup_logging(quiet=False)
    parser = build_parser()
    command = None
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        message = redact(exc.message)
        sys.stderr.write(message + "\n")
        tokens = list(sys.argv[1:] if argv is None else argv)
        command = next((t for t in tokens if t in COMMANDS), None)
        _emit({"ok": False, "command": command, "exit_code": 2, "error": message})
        return 2
    command = args.command
    _setup_logging(quiet=args.quiet)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result, code = args.handler(args)
    except UsageError as exc:
        message = redact(str(exc))
        log.error("%s", message)
        _emit({"ok": False, "command": command, "exit_code": 2, "error": message}, args)
        return 2
    except ToolboxError as exc:
        message = redact(str(exc))
        log.error("%s failed: %s", command, message)
        _emit({"ok": False, "command": command, "exit_code": exc.exit_code, "error": message}, args)
        return exc.exit_code
    except KeyboardInterrupt:
        _emit({"ok": False, "command": command, "exit_code": 130, "error": "interrupted"}, args)
        return 130
    except Exception as exc:
        message = redact(f"internal error: {type(exc).__name__}: {exc}")
        log.error("%s\n%s", message, redact(traceback.format_exc()))
        _emit({"ok": False, "command": command, "exit_code": 1, "error": message}, args)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    _emit({"ok": code == 0, "command": command, "exit_code": code, **result}, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
