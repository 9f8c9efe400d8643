"""DAG-integrity rules, reusable on any folder of DAG files (the real dags/ or planted fixtures).

The rules run over a ``ParsedBundle``: every DAG file parsed ONCE through Airflow's own DagBag (the
same importer the dag processor uses), with sockets watched so a network call at parse time is
recorded against the file that made it. Each rule returns ``Violation``s whose text names the file,
the rule and the problem, so a failing test reads like a review comment.

Kept free of pytest so bench/parse.py can reuse ``record_remote_calls``. Airflow is imported lazily:
callers set AIRFLOW_HOME and friends first.
"""

from __future__ import annotations

import ast
import contextlib
import socket
import sysconfig
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dr_automation.dag_defaults import DAG_TAG_VOCABULARY

# Sanity ceiling only: a cold KubernetesPodOperator import alone costs ~5 s on this machine, and the
# box is shared. Real parse figures come from bench/parse.py.
PARSE_TIME_CEILING_S = 25.0
# A doc_md shorter than this is a placeholder ("TODO", "Backup DAG"), not a runbook.
MIN_DOC_MD_CHARS = 40
DEFAULT_OWNER = "airflow"
_STDLIB = sysconfig.get_paths()["stdlib"]


# --------------------------------------------------------------------------------------------------
# Remote calls at parse time
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteCall:
    """One attempt to reach the network while a DAG file was being parsed."""

    file: str
    api: str
    target: str
    where: str

    def __str__(self) -> str:
        return f"{self.api}({self.target}) at {self.where}"


class RemoteCallBlocked(OSError):
    """Raised instead of touching the network: parsing must never depend on a remote end."""


class RemoteCallRecorder:
    """Collects RemoteCalls; ``current_file`` says which DAG file is being parsed right now."""

    def __init__(self) -> None:
        self.calls: list[RemoteCall] = []
        self.current_file: str = "<no file>"

    def for_file(self, file: str) -> list[RemoteCall]:
        return [c for c in self.calls if c.file == file]

    def record(self, api: str, target: Any) -> None:
        self.calls.append(RemoteCall(self.current_file, api, _describe_target(target), _caller(self)))


def _describe_target(target: Any) -> str:
    if isinstance(target, tuple) and len(target) >= 2:
        return f"{target[0]}:{target[1]}"
    return repr(target)


def _caller(recorder: RemoteCallRecorder) -> str:
    """The stack line that matters: the frame in the DAG file, else the innermost non-stdlib frame."""
    stack = traceback.extract_stack()[:-3]
    in_file = [f for f in stack if f.filename == recorder.current_file]
    outside = [f for f in stack if f.filename != __file__ and not _is_stdlib(f.filename)]
    chosen = (in_file or outside or stack or [None])[-1]
    if chosen is None:
        return "<unknown>"
    return f'File "{chosen.filename}", line {chosen.lineno}, in {chosen.name}: {(chosen.line or "").strip()}'


def _is_stdlib(filename: str) -> bool:
    return (filename.startswith(_STDLIB) and "site-packages" not in filename) or filename.startswith(
        "<frozen"
    )


@contextlib.contextmanager
def record_remote_calls(recorder: RemoteCallRecorder | None = None) -> Iterator[RemoteCallRecorder]:
    """Patch the socket entry points so every connect/lookup is recorded and refused.

    Refusing (rather than letting it through) keeps parsing hermetic and fast; a DAG file that
    swallows the error is still caught because the attempt was recorded first.
    """
    rec = recorder or RemoteCallRecorder()
    originals = {
        "connect": socket.socket.connect,
        "connect_ex": socket.socket.connect_ex,
        "create_connection": socket.create_connection,
        "getaddrinfo": socket.getaddrinfo,
    }

    def blocked(api: str, target: Any) -> RemoteCallBlocked:
        rec.record(api, target)
        return RemoteCallBlocked(f"network access blocked while parsing DAG files: {api}({target!r})")

    def connect(self: socket.socket, address: Any) -> None:
        raise blocked("socket.connect", address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        raise blocked("socket.connect_ex", address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        raise blocked("socket.create_connection", address)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        raise blocked("socket.getaddrinfo", (host, port))

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.create_connection = create_connection  # type: ignore[assignment]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield rec
    finally:
        socket.socket.connect = originals["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = originals["connect_ex"]  # type: ignore[method-assign]
        socket.create_connection = originals["create_connection"]  # type: ignore[assignment]
        socket.getaddrinfo = originals["getaddrinfo"]  # type: ignore[assignment]


# --------------------------------------------------------------------------------------------------
# Parsing a folder once
# --------------------------------------------------------------------------------------------------
@dataclass
class ParsedFile:
    """What one DAG file produced when parsed."""

    path: str
    dags: list[Any] = field(default_factory=list)
    import_error: str | None = None
    remote_calls: list[RemoteCall] = field(default_factory=list)
    parse_seconds: float = 0.0

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass
class ParsedBundle:
    """Every DAG file of a folder, parsed once, in the same DagBag."""

    dag_folder: str
    files: dict[str, ParsedFile]
    dagbag: Any

    def file(self, path: str | Path) -> ParsedFile:
        return self.files[str(Path(path).resolve())]


def list_dag_files(dag_folder: str | Path) -> list[str]:
    """DAG files the dag processor would parse (safe mode, .airflowignore honoured), absolute, sorted."""
    from airflow.dag_processing.importers.base import get_importer_registry

    folder = Path(dag_folder).resolve()
    if not folder.is_dir():
        return []
    return sorted(
        str(Path(p).resolve()) for p in get_importer_registry().list_dag_files(str(folder), safe_mode=True)
    )


def parse_bundle(dag_folder: str | Path) -> ParsedBundle:
    """Parse every DAG file of ``dag_folder`` through one DagBag with sockets recorded."""
    from airflow.dag_processing.dagbag import DagBag

    folder = str(Path(dag_folder).resolve())
    bag = DagBag(dag_folder=folder, collect_dags=False)
    files: dict[str, ParsedFile] = {}
    with record_remote_calls() as rec:
        for path in list_dag_files(folder):
            rec.current_file = path
            start = time.perf_counter()
            dags = bag.process_file(path, only_if_updated=False, safe_mode=True)
            elapsed = time.perf_counter() - start
            files[path] = ParsedFile(
                path=path,
                dags=list(dags),
                import_error=bag.import_errors.get(path),
                remote_calls=rec.for_file(path),
                parse_seconds=elapsed,
            )
    return ParsedBundle(dag_folder=folder, files=files, dagbag=bag)


# --------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Violation:
    file: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{Path(self.file).name}: [{self.rule}] {self.message}"


Rule = Callable[[ParsedBundle, ParsedFile], list[Violation]]


def check_imports(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    if pf.import_error is not None:
        return [Violation(pf.path, "imports", f"fails to import:\n{pf.import_error.strip()}")]
    if not pf.dags:
        return [Violation(pf.path, "imports", "imports but defines no DAG (helpers belong in plugins/)")]
    return []


def check_tags(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    out = []
    for dag in pf.dags:
        tags = set(dag.tags or ())
        if not tags:
            out.append(Violation(pf.path, "tags", f"DAG {dag.dag_id!r} has no tags"))
            continue
        unknown = sorted(tags - DAG_TAG_VOCABULARY)
        if unknown:
            out.append(
                Violation(
                    pf.path,
                    "tags",
                    f"DAG {dag.dag_id!r} has tags {unknown} outside the vocabulary "
                    f"(dr_automation.dag_defaults.DAG_TAG_VOCABULARY: {sorted(DAG_TAG_VOCABULARY)})",
                )
            )
    return out


def check_owner(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    out = []
    for dag in pf.dags:
        bad = sorted(t.task_id for t in dag.tasks if not (t.owner or "").strip() or t.owner == DEFAULT_OWNER)
        if bad:
            out.append(
                Violation(
                    pf.path,
                    "owner",
                    f"DAG {dag.dag_id!r}: tasks {bad} have no owner (Airflow's default {DEFAULT_OWNER!r}); "
                    "use dr_automation.dag_defaults.default_args(estate)",
                )
            )
    return out


def check_retries(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    """The DAG sets retries >= 1 for its tasks (default_args); a task may opt out explicitly.

    Opting out is deliberate for steps that must run once (an approval, an authorization, a
    watcher), so the rule holds the DAG's policy, not every task.
    """
    out = []
    for dag in pf.dags:
        policy = (dag.default_args or {}).get("retries")
        if not isinstance(policy, int) or policy < 1:
            out.append(
                Violation(
                    pf.path,
                    "retries",
                    f"DAG {dag.dag_id!r}: default_args sets no retries >= 1 (got {policy!r}); "
                    "use dr_automation.dag_defaults.default_args(estate)",
                )
            )
    return out


def check_doc_md(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    out = []
    for dag in pf.dags:
        doc = (dag.doc_md or "").strip()
        if len(doc) < MIN_DOC_MD_CHARS:
            what = "no doc_md" if not doc else f"a trivial doc_md ({len(doc)} chars < {MIN_DOC_MD_CHARS})"
            out.append(
                Violation(
                    pf.path, "doc_md", f"DAG {dag.dag_id!r} has {what}; pass doc_md=__doc__ (the runbook)"
                )
            )
    return out


def check_catchup(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    return [
        Violation(
            pf.path, "catchup", f"DAG {dag.dag_id!r} has catchup=True; DR DAGs must not replay missed runs"
        )
        for dag in pf.dags
        if dag.catchup
    ]


def _explicit_schedule_call_sites(path: str) -> tuple[int, int]:
    """(DAG constructor calls, those with an explicit ``schedule=``) found in the file's source.

    Airflow stores an omitted schedule as None, the same as an explicit ``schedule=None``, so the
    object cannot tell "manual only" from "forgot the cron": the source can.
    """
    tree = ast.parse(Path(path).read_text(), filename=path)
    calls = with_schedule = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        # a DAG factory of the bundle (build_scenario_dag(..., schedule=None)) counts as a DAG call
        if name not in {"DAG", "dag"} and not (name.startswith("build_") and name.endswith("_dag")):
            continue
        calls += 1
        if any(kw.arg == "schedule" for kw in node.keywords):
            with_schedule += 1
    return calls, with_schedule


def check_schedule(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    unscheduled = [dag.dag_id for dag in pf.dags if dag.schedule is None]
    if not unscheduled:
        return []
    calls, with_schedule = _explicit_schedule_call_sites(pf.path)
    if calls and calls == with_schedule:
        return []
    where = (
        f"{calls - with_schedule} of {calls} DAG(...)/@dag(...) calls lack schedule="
        if calls
        else "no DAG(...)/@dag(...) call in this file passes schedule="
    )
    return [
        Violation(
            pf.path,
            "schedule",
            f"DAGs {sorted(unscheduled)} do not pass schedule explicitly ({where}); "
            "write schedule=None for manual-only DAGs",
        )
    ]


def check_no_network(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    if not pf.remote_calls:
        return []
    lines = "\n".join(f"  - {c}" for c in pf.remote_calls)
    return [
        Violation(
            pf.path,
            "no_network",
            f"{len(pf.remote_calls)} network call(s) attempted while parsing (move them into tasks):\n{lines}",
        )
    ]


def check_dag_ids(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    out = []
    ids = [dag.dag_id for dag in pf.dags]
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        out.append(Violation(pf.path, "dag_id", f"DAG ids defined more than once in this file: {dupes}"))
    for dag_id in sorted(set(ids)):
        others = sorted(
            Path(o.path).name
            for o in bundle.files.values()
            if o.path != pf.path and any(d.dag_id == dag_id for d in o.dags)
        )
        if others:
            out.append(Violation(pf.path, "dag_id", f"DAG id {dag_id!r} is also defined in {others}"))
    stem = Path(pf.path).stem
    if len(set(ids)) == 1 and ids[0] != stem:
        out.append(
            Violation(
                pf.path,
                "dag_id",
                f"the file's only DAG has id {ids[0]!r}; it must match the file name {stem!r}",
            )
        )
    if pf.import_error and "DuplicatedId" in pf.import_error:
        out.append(Violation(pf.path, "dag_id", pf.import_error.strip().splitlines()[-1]))
    return out


def check_parse_time(bundle: ParsedBundle, pf: ParsedFile) -> list[Violation]:
    if pf.parse_seconds <= PARSE_TIME_CEILING_S:
        return []
    return [
        Violation(
            pf.path,
            "parse_time",
            f"parsing took {pf.parse_seconds:.1f} s (> {PARSE_TIME_CEILING_S} s sanity ceiling); "
            "run bench/parse.py and move heavy imports into tasks",
        )
    ]


RULES: dict[str, Rule] = {
    "imports": check_imports,
    "tags": check_tags,
    "owner": check_owner,
    "retries": check_retries,
    "doc_md": check_doc_md,
    "catchup": check_catchup,
    "schedule": check_schedule,
    "no_network": check_no_network,
    "dag_id": check_dag_ids,
    "parse_time": check_parse_time,
}


def check_file(bundle: ParsedBundle, path: str | Path, rules: Sequence[str] | None = None) -> list[Violation]:
    """Every violation of ``rules`` (default: all) by one parsed file."""
    pf = bundle.file(path)
    return [v for name in (rules or list(RULES)) for v in RULES[name](bundle, pf)]


def format_violations(violations: Sequence[Violation]) -> str:
    return "\n".join(str(v) for v in violations)
