"""DAG-integrity suite over the real bundle: every file of dags/, every rule, one DagBag per session.

Test ids read ``test_dag_file_rule[<file>-<rule>]`` so a CI failure names the file and the rule.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dr_automation.estate import ESTATE_ENV_VAR
from tests.dags.integrity import (
    RULES,
    ParsedBundle,
    check_file,
    format_violations,
    list_dag_files,
    parse_bundle,
)

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from planted_estate import bad_estate_path  # noqa: E402

BAD_ESTATE = bad_estate_path()
DAG_FILES = list_dag_files(DAGS_FOLDER)
# An empty dags/ must FAIL, not silently produce zero parametrized tests.
_NO_FILES = "<no DAG files in dags/>"


@pytest.fixture(scope="session")
def bundle() -> ParsedBundle:
    return parse_bundle(DAGS_FOLDER)


def test_bundle_has_dag_files() -> None:
    assert DAG_FILES, f"no DAG files found in {DAGS_FOLDER}"


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("dag_file", DAG_FILES or [_NO_FILES], ids=lambda p: Path(p).name)
def test_dag_file_rule(bundle: ParsedBundle, dag_file: str, rule: str) -> None:
    assert dag_file != _NO_FILES, f"no DAG files found in {DAGS_FOLDER}"
    violations = check_file(bundle, dag_file, rules=[rule])
    assert not violations, format_violations(violations)


def test_dag_ids_unique_across_bundle(bundle: ParsedBundle) -> None:
    ids = [dag.dag_id for pf in bundle.files.values() for dag in pf.dags]
    assert ids, "the bundle defines no DAG"
    assert len(ids) == len(set(ids)), sorted(ids)


def test_invalid_estate_config_fails_every_dag_with_one_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bundle's guarantee: a broken estate file makes EVERY DAG fail to import, saying why."""
    assert DAG_FILES, f"no DAG files found in {DAGS_FOLDER}"
    monkeypatch.setenv(ESTATE_ENV_VAR, str(BAD_ESTATE))
    broken = parse_bundle(DAGS_FOLDER)
    assert set(broken.dagbag.import_errors) == set(DAG_FILES)
    for path, pf in broken.files.items():
        assert pf.dags == [], f"{path} still produced DAGs {[d.dag_id for d in pf.dags]}"
        error = pf.import_error or ""
        # The exception line (last line of the traceback) is the message the UI shows first.
        last_line = error.strip().splitlines()[-1] if error.strip() else ""
        for needle in ("Invalid estate config", "tier1_realtime", "rpo_minutes"):
            assert needle in last_line, (
                f"{Path(path).name}: {needle!r} not in the error's last line:\n{error}"
            )
