"""Estate fixtures shared by the unit tests: the bundled estate, and editable copies of its YAML."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from dr_automation.estate import DEFAULT_ESTATE_PATH, Estate, load_estate

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def estate() -> Estate:
    return load_estate(DEFAULT_ESTATE_PATH)


@pytest.fixture
def doc() -> Doc:
    """A deep copy of the bundled estate document, to mutate in a test."""
    return copy.deepcopy(yaml.safe_load(DEFAULT_ESTATE_PATH.read_text(encoding="utf-8")))


def load_doc(tmp_path: Path, doc: Doc) -> Estate:
    """Write a (mutated) estate document and load it through the real validation."""
    path = tmp_path / "estate.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_estate(path)


@pytest.fixture
def mocked_aws(monkeypatch: pytest.MonkeyPatch):
    """moto in-process, with throwaway credentials (never a real account, never the sandbox's server)."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # mock_aws, not a server
    with mock_aws():
        yield
