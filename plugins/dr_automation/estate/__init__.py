"""The validated estate config every DAG is built from."""

from __future__ import annotations

from dr_automation.estate.model import (
    DEFAULT_ESTATE_PATH,
    ESTATE_ENV_VAR,
    Estate,
    EstateConfigError,
    Region,
    Tier,
    estate_path,
    load_estate,
)

__all__ = [
    "DEFAULT_ESTATE_PATH",
    "ESTATE_ENV_VAR",
    "Estate",
    "EstateConfigError",
    "Region",
    "Tier",
    "estate_path",
    "load_estate",
]
