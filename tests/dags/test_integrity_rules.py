"""The integrity suite's own tests: every planted bad DAG file is caught, the good ones pass.

Each fixture file breaks exactly one rule, so the expected set of failing rules per file is exact:
a rule that misses its problem, or flags a well-formed DAG, fails here.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.dags.integrity import (
    PARSE_TIME_CEILING_S,
    RULES,
    ParsedBundle,
    ParsedFile,
    RemoteCallBlocked,
    check_file,
    check_parse_time,
    parse_bundle,
    record_remote_calls,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _line_of(name: str, needle: str) -> int:
    lines = (FIXTURES / name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, start=1) if needle in line)


# file -> {rule: substrings its message must contain}. Empty dict: the file passes every rule.
EXPECTED: dict[str, dict[str, list[str]]] = {
    "good_dag.py": {},
    "good_multi_dag.py": {},
    "bad_import_error.py": {"imports": ["fails to import", "No module named 'dr_automation.no_such_module'"]},
    "bad_missing_tags.py": {"tags": ["'bad_missing_tags' has no tags"]},
    "bad_unknown_tags.py": {"tags": ["['fail-over'] outside the vocabulary"]},
    "bad_network_socket.py": {
        "no_network": [
            "socket.create_connection(127.0.0.1:9)",
            f'bad_network_socket.py", line {_line_of("bad_network_socket.py", "socket.create_connection(")}',
        ]
    },
    "bad_network_urllib.py": {
        "no_network": [
            "127.0.0.1:9",
            f'bad_network_urllib.py", line {_line_of("bad_network_urllib.py", "urlopen(")}',
        ]
    },
    "bad_no_retries.py": {"retries": ["'bad_no_retries': default_args sets no retries >= 1 (got None)"]},
    "bad_no_owner.py": {"owner": ["['orphan_task'] have no owner"]},
    "bad_no_doc.py": {"doc_md": ["'bad_no_doc' has no doc_md"]},
    "bad_catchup.py": {"catchup": ["'bad_catchup' has catchup=True"]},
    "bad_no_schedule.py": {"schedule": ["['bad_no_schedule'] do not pass schedule explicitly"]},
    "bad_dag_id_mismatch.py": {
        "dag_id": ["'some_other_name'", "must match the file name 'bad_dag_id_mismatch'"]
    },
    "bad_duplicate_dag_id.py": {"dag_id": ["defined more than once in this file: ['bad_duplicate_dag_id']"]},
    "bad_estate_dag.py": {
        "imports": ["Invalid estate config", "bad_estate.yaml", "tier1_realtime", "rpo_minutes"]
    },
}


@pytest.fixture(scope="module")
def fixture_bundle() -> ParsedBundle:
    return parse_bundle(FIXTURES)


def test_every_fixture_file_is_parsed(fixture_bundle: ParsedBundle) -> None:
    assert sorted(Path(p).name for p in fixture_bundle.files) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_planted_problem_is_caught(fixture_bundle: ParsedBundle, name: str) -> None:
    violations = check_file(fixture_bundle, FIXTURES / name)
    expected = EXPECTED[name]
    report = "\n".join(str(v) for v in violations) or "<no violations>"
    assert {v.rule for v in violations} == set(expected), report
    for rule, needles in expected.items():
        messages = [str(v) for v in violations if v.rule == rule]
        for message in messages:
            assert message.startswith(f"{name}: [{rule}] "), message
        for needle in needles:
            assert any(needle in m for m in messages), f"{needle!r} not in:\n{report}"


def test_network_call_is_refused_not_made(fixture_bundle: ParsedBundle) -> None:
    """Both network fixtures tried exactly once and the attempt never reached a socket."""
    for name in ("bad_network_socket.py", "bad_network_urllib.py"):
        calls = fixture_bundle.file(FIXTURES / name).remote_calls
        assert [c.target for c in calls] == ["127.0.0.1:9"], calls
    good = fixture_bundle.file(FIXTURES / "good_dag.py")
    assert good.remote_calls == [] and good.dags and good.import_error is None


def test_recorder_restores_socket_functions() -> None:
    originals = (socket.socket.connect, socket.create_connection, socket.getaddrinfo)
    with record_remote_calls() as rec:
        rec.current_file = "/somewhere/x.py"
        with pytest.raises(RemoteCallBlocked, match="getaddrinfo"):
            socket.getaddrinfo("example.invalid", 443)
        with socket.socket() as sock, pytest.raises(RemoteCallBlocked, match="connect"):
            sock.connect(("127.0.0.1", 9))
    assert (socket.socket.connect, socket.create_connection, socket.getaddrinfo) == originals
    assert [(c.file, c.api, c.target) for c in rec.calls] == [
        ("/somewhere/x.py", "socket.getaddrinfo", "example.invalid:443"),
        ("/somewhere/x.py", "socket.connect", "127.0.0.1:9"),
    ]
    assert all("test_integrity_rules.py" in c.where for c in rec.calls)


def test_parse_time_ceiling() -> None:
    bundle = ParsedBundle(dag_folder="/x", files={}, dagbag=None)
    slow = ParsedFile(path="/x/slow.py", parse_seconds=PARSE_TIME_CEILING_S + 1)
    fast = ParsedFile(path="/x/fast.py", parse_seconds=0.01)
    [violation] = check_parse_time(bundle, slow)
    assert str(violation).startswith("slow.py: [parse_time] parsing took")
    assert check_parse_time(bundle, fast) == []


def test_rule_names_are_stable() -> None:
    """Test ids of the real-bundle suite are built from these names (CI filters on them)."""
    assert list(RULES) == [
        "imports",
        "tags",
        "owner",
        "retries",
        "doc_md",
        "catchup",
        "schedule",
        "no_network",
        "dag_id",
        "parse_time",
    ]
