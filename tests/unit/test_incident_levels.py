"""Incident levels and the classifier: the seed's categories, every boundary, every bad argument.

The config-driven cases load a mutated copy of the bundled estate, proving the thresholds are read
from `incident_levels` rather than hard-coded.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dr_automation.estate import Estate
from dr_automation.incidents import (
    IncidentInputError,
    IncidentLevel,
    classify,
    incident_level,
    incident_levels,
)
from tests.unit.conftest import Doc, load_doc

# -- levels ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "name", "max_share", "rto", "rpo"),
    [
        (1, "minor", 0.05, 5, 0),  # RTO < 5 min, RPO real-time
        (2, "major", 0.25, 60, 5),  # RTO < 1 h, RPO < 5 min
        (3, "critical", 1.0, 240, 60),  # RTO < 4 h, RPO < 1 h
        (4, "catastrophic", 1.0, 1440, 240),  # RTO < 24 h, RPO < 4 h
    ],
)
def test_seed_levels(estate: Estate, level: int, name: str, max_share: float, rto: int, rpo: int) -> None:
    got = incident_level(estate, level)
    assert (got.level, got.name, got.max_infrastructure_share, got.rto_minutes, got.rpo_minutes) == (
        level,
        name,
        max_share,
        rto,
        rpo,
    )
    assert got.label == f"Level {level} ({name})"
    assert got.multi_region_or_security is (level == 4)


def test_levels_are_sorted_and_frozen(estate: Estate) -> None:
    levels = incident_levels(estate)
    assert [lv.level for lv in levels] == [1, 2, 3, 4]
    with pytest.raises(AttributeError):
        levels[0].level = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("level", "reason"),
    [
        (0, "unknown incident level 0 (levels: 1, 2, 3, 4)"),
        (5, "unknown incident level 5 (levels: 1, 2, 3, 4)"),
        (-1, "unknown incident level -1 (levels: 1, 2, 3, 4)"),
        ("3", "must be an integer (got '3')"),
        (3.0, "must be an integer (got 3.0)"),
        (True, "must be an integer (got True)"),
        (None, "must be an integer (got None)"),
    ],
)
def test_unknown_level(estate: Estate, level: Any, reason: str) -> None:
    with pytest.raises(IncidentInputError) as info:
        incident_level(estate, level)
    assert info.value.field == "level"
    assert info.value.reason == reason
    assert str(info.value) == f"level: {reason}"
    assert isinstance(info.value, ValueError)


# -- classifier --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "regions", "security", "expected"),
    [
        (0.0, 0, False, 1),
        (0.01, 0, False, 1),
        (0.0499999, 0, False, 1),  # just below 5 %: minor
        (0.05, 0, False, 2),  # exactly 5 %: "< 5 %" is minor, so major
        (1 / 20, 0, False, 2),
        (0.0500001, 0, False, 2),
        (0.10, 0, False, 2),
        (0.2499999, 0, False, 2),
        (0.25, 0, False, 2),  # exactly 25 %: still major (5-25 % inclusive)
        (0.1 + 0.15, 0, False, 2),  # 0.25000000000000006: binary noise does not tip it over
        (0.2500001, 0, False, 3),  # just above 25 %: critical
        (0.5, 0, False, 3),
        (1.0, 0, False, 3),
        (0.0, 1, False, 3),  # one complete regional failure is critical whatever the share
        (0.01, 1, False, 3),
        (0.0, 2, False, 4),  # multi-region
        (0.3, 3, False, 4),
        (0.0, 0, True, 4),  # security incident
        (0.01, 1, True, 4),
    ],
)
def test_classify(estate: Estate, share: float, regions: int, security: bool, expected: int) -> None:
    got = classify(estate, infrastructure_share=share, regions_affected=regions, security_incident=security)
    assert isinstance(got, IncidentLevel)
    assert got == incident_level(estate, expected)


def test_classify_defaults(estate: Estate) -> None:
    assert classify(estate, infrastructure_share=0.02).level == 1
    assert classify(estate, infrastructure_share=0.3).name == "critical"


@pytest.mark.parametrize(
    ("kwargs", "field", "reason"),
    [
        (
            {"infrastructure_share": -0.01},
            "infrastructure_share",
            "must be a share between 0 and 1 (got -0.01)",
        ),
        (
            {"infrastructure_share": 1.01},
            "infrastructure_share",
            "must be a share between 0 and 1 (got 1.01)",
        ),
        ({"infrastructure_share": 5}, "infrastructure_share", "must be a share between 0 and 1 (got 5)"),
        ({"infrastructure_share": math.nan}, "infrastructure_share", "must be a finite number (got nan)"),
        ({"infrastructure_share": math.inf}, "infrastructure_share", "must be a finite number (got inf)"),
        ({"infrastructure_share": "0.1"}, "infrastructure_share", "must be a number (got '0.1')"),
        ({"infrastructure_share": None}, "infrastructure_share", "must be a number (got None)"),
        ({"infrastructure_share": True}, "infrastructure_share", "must be a number (got True)"),
        (
            {"infrastructure_share": 0.1, "regions_affected": -1},
            "regions_affected",
            "must be between 0 and the number of regions in the estate, 3 (got -1)",
        ),
        (
            {"infrastructure_share": 0.1, "regions_affected": 4},
            "regions_affected",
            "must be between 0 and the number of regions in the estate, 3 (got 4)",
        ),
        ({"infrastructure_share": 0.1, "regions_affected": 1.0}, "regions_affected", "must be an integer"),
        ({"infrastructure_share": 0.1, "regions_affected": True}, "regions_affected", "must be an integer"),
        (
            {"infrastructure_share": 0.1, "security_incident": "yes"},
            "security_incident",
            "must be true or false (got 'yes')",
        ),
    ],
)
def test_classify_rejects_bad_input(estate: Estate, kwargs: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(IncidentInputError) as info:
        classify(estate, **kwargs)
    assert info.value.field == field
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{field}: ")


def test_classify_reads_thresholds_from_config(tmp_path: Path, doc: Doc) -> None:
    levels = {item["level"]: item for item in doc["incident_levels"]}
    levels[1]["max_infrastructure_share"] = 0.10
    levels[2]["max_infrastructure_share"] = 0.40
    levels[3]["name"] = "severe"
    levels[3]["rto_minutes"] = 300
    estate = load_doc(tmp_path, doc)
    assert classify(estate, infrastructure_share=0.05).level == 1  # was major with the bundled file
    assert classify(estate, infrastructure_share=0.0999).level == 1
    assert classify(estate, infrastructure_share=0.10).level == 2
    assert classify(estate, infrastructure_share=0.30).level == 2  # was critical
    assert classify(estate, infrastructure_share=0.40).level == 2
    critical = classify(estate, infrastructure_share=0.41)
    assert (critical.level, critical.name, critical.rto_minutes) == (3, "severe", 300)


def test_import_is_pure_and_cheap() -> None:
    """Notifiers and DAG files import this at parse time: no Airflow, no jsonschema, no YAML."""
    code = (
        "import sys, dr_automation.incidents; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'jsonschema', 'yaml')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "plugins")},
        timeout=60,
    )
    assert out.stdout.strip() == "[]"
