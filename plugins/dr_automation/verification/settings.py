"""The estate's ``verification`` section with its defaults, and the names of scratch resources.

Scratch names are derived from the run id and the system, never random: the teardown recomputes them
and removes exactly what this run may have created, even after a pod or worker was killed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dr_automation.estate import Estate

DAG_ID = "verify_backups"
RECORD_NAME = "verification.json"
RECORD_FORMAT = "dr-backup-verification/1"
STATE_KEY = "verification/state.json"
STATE_FORMAT = "dr-backup-verification-state/1"
SCRATCH_PREFIX = "verification/_scratch/"
SCRATCH_DB_PREFIX = "dr_verify_"
SCRATCH_INSTANCE_PREFIX = "dr-verify-"
SCRATCH_DSN_ENV = "VERIFY_SCRATCH_DSN"
DEFAULTS: dict[str, Any] = {
    "sweep_schedule": "30 4 * * *",
    "sweep_max_backups_per_tier": 3,
    "metrics_namespace": "DR/Backups",
    "scratch_connection": None,
    "scratch_credentials_secret": None,
    "scratch_instance_class": "db.t3.micro",
    "alert_level": None,
}


@dataclass(frozen=True)
class Settings:
    sweep_schedule: str
    sweep_max_backups_per_tier: int
    metrics_namespace: str
    scratch_connection: str
    scratch_secret: tuple[str, str]
    scratch_instance_class: str
    alert_level: int | None


def settings(estate: Estate) -> Settings:
    """The section with defaults; without a scratch server of its own, the primary database's server
    (its Secret and connection) is used: tell the reader, since the role must be allowed to create
    databases and restores then load the primary."""
    raw = {**DEFAULTS, **dict(estate.raw.get("verification") or {})}
    secret = raw["scratch_credentials_secret"] or estate.databases["primary"]["credentials_secret"]
    return Settings(
        sweep_schedule=raw["sweep_schedule"],
        sweep_max_backups_per_tier=int(raw["sweep_max_backups_per_tier"]),
        metrics_namespace=raw["metrics_namespace"],
        scratch_connection=raw["scratch_connection"] or estate.connections["primary_database"],
        scratch_secret=(secret["name"], secret["key"]),
        scratch_instance_class=raw["scratch_instance_class"],
        alert_level=raw["alert_level"],
    )


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def scratch_database(run_id: str, tier: str, backup: str, system: str) -> str:
    """A plain PostgreSQL identifier (<= 63 chars) unique to this run and system."""
    return f"{SCRATCH_DB_PREFIX}{_digest(run_id, tier, backup, system)}"


def scratch_instance(run_id: str, tier: str, backup: str, system: str, region: str) -> str:
    """An RDS instance identifier (letter first, lowercase, hyphens, <= 63 chars)."""
    return f"{SCRATCH_INSTANCE_PREFIX}{_digest(run_id, tier, backup, system, region)}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def scratch_prefix(run_id: str) -> str:
    """Where this run's restore pods leave their results (deleted by the teardown)."""
    return f"{SCRATCH_PREFIX}{_UNSAFE.sub('-', run_id).strip('-.')[:150]}/"
