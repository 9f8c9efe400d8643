"""The IAM check every sandbox- or rig-based test module runs at its end: each AWS call the DAG
runs made (the emulator's call log) is allowed by its DAG family's policy (dr_automation.iam)."""

from __future__ import annotations

from pathlib import Path


def assert_calls_within_policies(aws_url: str, estate_path: str | Path) -> None:
    from dr_automation.estate import load_estate
    from dr_automation.iam import dag_keys, undeclared
    from dr_sandbox.aws_emulator import list_calls

    estate = load_estate(estate_path)
    gaps = undeclared(estate, list_calls(aws_url), dag_keys(estate))
    assert gaps == {}, f"AWS calls their DAG family's IAM policy does not allow: {gaps}"
