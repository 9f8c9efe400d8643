"""The estate config as typed, read-only objects.

Every DAG is built from one YAML file; this module loads it once per process (cached on path and
mtime, so parsing a DAG file costs a dict lookup) and refuses an invalid file with one message that
names the field path and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

ESTATE_ENV_VAR = "DR_ESTATE_CONFIG"
BUNDLE_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_ESTATE_PATH = BUNDLE_ROOT / "include" / "estate" / "leanvibe.yaml"


class EstateConfigError(ValueError):
    """The estate config is missing or invalid; the message names the file, field path and reason."""

    def __init__(self, path: str | os.PathLike[str], field_path: str, reason: str) -> None:
        self.path = str(path)
        self.field_path = field_path
        self.reason = reason
        super().__init__(f"Invalid estate config {self.path}: {field_path}: {reason}")


@dataclass(frozen=True)
class Region:
    name: str
    role: str  # primary | secondary | dr
    address: str
    hostname: str
    port: int
    protocol: str
    backup_bucket: str
    kms_key_alias: str
    eks_cluster: str
    capacity: Mapping[str, Any] = field(default_factory=dict, repr=False)
    load_balancer: Mapping[str, Any] = field(default_factory=dict, repr=False)
    sessions_connection: str = ""


@dataclass(frozen=True)
class Tier:
    key: str
    dag_id: str
    schedule: str
    rpo_minutes: int
    rto_minutes: int
    retention_days: int
    storage_class: str
    encryption: str
    compression: bool
    cross_region: bool
    object_lock: bool
    systems: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Estate:
    """A validated estate. Sections without a dedicated type are read-only mappings."""

    path: str
    raw: Mapping[str, Any] = field(repr=False)
    regions: Mapping[str, Region] = field(repr=False)
    tiers: Mapping[str, Tier] = field(repr=False)

    # -- organization and connections -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.raw["organization"]["name"]

    @property
    def domain(self) -> str:
        return self.raw["organization"]["domain"]

    @property
    def owner(self) -> str:
        return self.raw["organization"]["owner"]

    @property
    def connections(self) -> Mapping[str, str]:
        return self.raw["connections"]

    # -- regions -----------------------------------------------------------------------------
    def region_with_role(self, role: str) -> Region:
        return next(r for r in self.regions.values() if r.role == role)

    @property
    def primary_region(self) -> Region:
        return self.region_with_role("primary")

    @property
    def secondary_region(self) -> Region:
        return self.region_with_role("secondary")

    @property
    def dr_region(self) -> Region:
        return self.region_with_role("dr")

    # -- other sections ----------------------------------------------------------------------
    def section(self, name: str) -> Mapping[str, Any]:
        return self.raw[name]

    @property
    def route53(self) -> Mapping[str, Any]:
        return self.raw["route53"]

    @property
    def health(self) -> Mapping[str, Any]:
        return self.raw["health"]

    @property
    def kubernetes(self) -> Mapping[str, Any]:
        return self.raw["kubernetes"]

    @property
    def databases(self) -> Mapping[str, Any]:
        return self.raw["databases"]


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def build_estate(path: str, data: dict[str, Any]) -> Estate:
    """Turn an already-validated document into an Estate."""
    regions = {
        name: Region(
            name=name,
            role=spec["role"],
            address=spec["endpoint"]["address"],
            hostname=spec["endpoint"]["hostname"],
            port=int(spec["endpoint"]["port"]),
            protocol=spec["endpoint"]["protocol"],
            backup_bucket=spec["backup_bucket"],
            kms_key_alias=spec["kms_key_alias"],
            eks_cluster=spec["eks_cluster"],
            capacity=spec["capacity"],
            load_balancer=spec["load_balancer"],
            sessions_connection=spec["sessions_connection"],
        )
        for name, spec in data["regions"].items()
    }
    tiers = {
        key: Tier(
            key=key,
            dag_id=spec["dag_id"],
            schedule=spec["schedule"],
            rpo_minutes=int(spec["rpo_minutes"]),
            rto_minutes=int(spec["rto_minutes"]),
            retention_days=int(spec["retention_days"]),
            storage_class=spec["storage_class"],
            encryption=spec["encryption"],
            compression=bool(spec.get("compression", False)),
            cross_region=bool(spec.get("cross_region", False)),
            object_lock=bool(spec.get("object_lock", False)),
            systems=_freeze(spec["systems"]),
        )
        for key, spec in data["tiers"].items()
    }
    return Estate(
        path=path,
        raw=_freeze(data),
        regions=MappingProxyType(regions),
        tiers=MappingProxyType(tiers),
    )


def estate_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The file to load: the argument, else $DR_ESTATE_CONFIG, else the bundled LeanVibe estate."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ESTATE_ENV_VAR)
    return Path(env) if env else DEFAULT_ESTATE_PATH


_CACHE: dict[tuple[str, int], Estate] = {}


def load_estate(path: str | os.PathLike[str] | None = None) -> Estate:
    """Load and validate the estate config; cached per (path, mtime) so DAG parsing stays cheap."""
    from dr_automation.estate.validation import parse_and_validate

    resolved = estate_path(path)
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError as exc:
        raise EstateConfigError(resolved, "<file>", f"cannot be read ({exc.strerror})") from None
    key = (str(resolved), mtime)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    data = parse_and_validate(resolved)
    estate = build_estate(str(resolved), data)
    _CACHE.clear()
    _CACHE[key] = estate
    return estate
