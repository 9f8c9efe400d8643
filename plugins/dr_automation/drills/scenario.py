"""What every DR drill scenario is made of, and the context its steps run in.

A scenario (``dr_automation.drills.scenarios.<name>``) is six steps: ``setup`` makes the drill's own
resources, ``inject`` causes the failure, ``recover`` brings service back the way an incident would,
``verify`` proves the recovery, ``measure`` turns what happened into figures, ``cleanup`` removes
everything the drill made. Steps hand their findings to the next one through ``ctx.state`` (a JSON
dict, kept in XCom) and time-stamp what they see with ``ctx.mark``; ``measure`` reads the marks, so
every figure in a result is measured, never a constant.

The rules a scenario keeps, which the runner (``run_step``) and the DAG (``drills.dag``) enforce:
- it touches only what it makes for the drill: names from ``ctx.name(...)``/``ctx.database_name``/
  ``ctx.prefix``, AWS tags from ``ctx.tags``; ``cleanup`` finds them from the drill id alone (a run
  that died in ``setup`` still leaves nothing), is idempotent and returns what it could not remove;
- the stop condition: before and after every step, and inside long waits (``ctx.check_stop()``),
  production (every region's health endpoint that answered at setup, and the primary database) must
  stay healthy; otherwise the drill aborts, naming what turned unhealthy, and cleanup runs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dr_automation.estate import Estate

log = logging.getLogger(__name__)

STEPS = ("setup", "inject", "recover", "verify", "measure", "cleanup")
# Faults a run can be told to suffer (conf "fault"): the forced-failure drills of the quarterly test.
FAULTS = ("none", "remove_backup")
RESULTS_PREFIX = "drills/results"
STOP_RECHECK_SECONDS = 1.0


class DrillAborted(RuntimeError):
    """The stop condition fired: something outside the drill turned unhealthy."""


class DrillError(RuntimeError):
    """A step could not do its part; the message is the reason the result reports."""


class Scenario(Protocol):
    name: str
    # What in this scenario is a stand-in rather than the real service (reports list it).
    simulated: tuple[str, ...]

    def setup(self, ctx: DrillContext) -> Mapping[str, Any] | None: ...
    def inject(self, ctx: DrillContext) -> Mapping[str, Any] | None: ...
    def recover(self, ctx: DrillContext) -> Mapping[str, Any] | None: ...
    def verify(self, ctx: DrillContext) -> Mapping[str, Any] | None: ...

    def measure(self, ctx: DrillContext) -> Mapping[str, Any]:
        """Figures from ``ctx.state``: rto_seconds, rpo_seconds, integrity_score, phases
        {detect, decide, switch, restore, verify} (seconds), figures {scenario-specific}."""
        ...

    def cleanup(self, ctx: DrillContext) -> list[str]:
        """Remove every resource of ``ctx.drill_id``; return what remains (empty: clean)."""
        ...


def drill_id(scenario: str, run_id: str) -> str:
    """DNS-, S3- and Kubernetes-safe, unique per run, derivable by cleanup from the run alone."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return f"dr-drill-{scenario.replace('_', '-')}-{digest}"


@dataclass
class DrillContext:
    """One step's view of its drill: who it is, what earlier steps found, and the shared tools."""

    estate: Estate
    scenario: str
    run_id: str
    dag_id: str = ""
    conf: Mapping[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    # -- identity and naming ------------------------------------------------------------------
    @property
    def drill_id(self) -> str:
        return drill_id(self.scenario, self.run_id)

    @property
    def prefix(self) -> str:
        """S3 key prefix of the drill's objects (in any bucket it writes to)."""
        return f"drills/{self.drill_id}/"

    @property
    def database_name(self) -> str:
        """Name of the drill's PostgreSQL test database (and prefix of any others it makes)."""
        return self.drill_id.replace("-", "_")

    def name(self, suffix: str) -> str:
        """A resource name that belongs to this drill (cleanup sweeps by the drill id prefix)."""
        return f"{self.drill_id}-{re.sub(r'[^a-z0-9-]', '-', suffix.lower())}"

    @property
    def tag_key(self) -> str:
        return f"{self.estate.section('organization')['tag_prefix']}:drill"

    @property
    def tags(self) -> dict[str, str]:
        prefix = self.estate.section("organization")["tag_prefix"]
        return {self.tag_key: self.drill_id, f"{prefix}:managed-by": "dr"}

    def aws_tags(self) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in self.tags.items()]

    @property
    def record_name(self) -> str:
        return f"{self.drill_id}.{self.estate.section('drills')['record_domain']}"

    # -- objectives and settings --------------------------------------------------------------
    @property
    def objectives(self) -> Mapping[str, Any]:
        return self.estate.section("drills")["objectives"][self.scenario]

    @property
    def fault(self) -> str:
        return str(self.conf.get("fault") or "none")

    # -- time ---------------------------------------------------------------------------------
    def mark(self, name: str, at: float | None = None) -> float:
        """Record when something happened (epoch seconds); ``measure`` computes from marks."""
        when = time.time() if at is None else at
        self.state.setdefault("marks", {})[name] = when
        return when

    def since(self, start: str, end: str) -> float | None:
        marks = self.state.get("marks") or {}
        if start not in marks or end not in marks:
            return None
        return round(marks[end] - marks[start], 3)

    # -- shared tools -------------------------------------------------------------------------
    def aws(self, service: str, region: str | None = None) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        region = region or self.estate.primary_region.name
        return AwsBaseHook(
            aws_conn_id=self.estate.connections["aws"], client_type=service, region_name=region
        ).conn

    def check_stop(self) -> None:
        """Abort the drill if production turned unhealthy since setup (the stop condition)."""
        baseline = self.state.get("baseline") or {}
        problems = production_problems(self.estate, baseline)
        if problems:  # one slow answer is not an outage: it must still fail a moment later
            time.sleep(STOP_RECHECK_SECONDS)
            problems = production_problems(self.estate, baseline)
        if problems:
            raise DrillAborted("stop condition: " + "; ".join(problems) + " (outside the drill)")

    def wait_for(self, what: str, check: Any, *, timeout: float, interval: float = 0.5) -> tuple[Any, float]:
        """Poll ``check()`` until it returns a truthy value; the stop condition is checked each round.
        Returns (value, epoch seconds when seen); raises DrillError naming ``what`` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value, time.time()
            if time.monotonic() > deadline:
                raise DrillError(f"{what}: not seen within {timeout:.0f}s")
            self.check_stop()
            time.sleep(interval)


# -- the stop condition ---------------------------------------------------------------------------


def production_health(estate: Estate) -> dict[str, Any]:
    """Every production region's health endpoint and the primary database, as seen now."""
    from dr_automation.failover import probe_region

    seen: dict[str, Any] = {}
    for region in estate.regions:
        probe = probe_region(estate, region, timeout=3.0)
        seen[f"region {region}"] = {"ok": bool(probe.get("healthy")), "detail": probe}
    seen["primary database"] = _database_health(estate)
    return seen


def _database_health(estate: Estate) -> dict[str, Any]:
    conn_id = estate.connections.get("primary_database")
    if not conn_id:
        return {"ok": True, "detail": "no primary database connection"}
    try:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        with PostgresHook(postgres_conn_id=conn_id).get_conn() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return {"ok": True}
    except Exception as exc:  # the reason goes into the abort message
        return {"ok": False, "detail": str(exc).splitlines()[0][:200]}


def production_problems(estate: Estate, baseline: Mapping[str, Any]) -> list[str]:
    """What was healthy at setup and is not now. Something already down at setup is not the drill's
    doing and does not stop it (the drill never touches it either)."""
    if not baseline:
        return []
    problems = []
    for what, now in production_health(estate).items():
        if (baseline.get(what) or {}).get("ok") and not now["ok"]:
            detail = now.get("detail")
            if isinstance(detail, Mapping):
                detail = detail.get("status") or detail.get("error") or detail
            problems.append(f"production {what} became unhealthy ({detail})")
    return problems


# -- results --------------------------------------------------------------------------------------


def result_key(dag_id: str, run_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._=-]", "_", run_id)
    return f"{RESULTS_PREFIX}/{dag_id}/{safe}.json"


def write_result(estate: Estate, result: Mapping[str, Any]) -> str:
    """Store a scenario's result beside the backups (the quarterly drill reads it from there)."""
    import json

    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    primary = estate.primary_region
    key = result_key(result["dag_id"], result["run_id"])
    client = AwsBaseHook(
        aws_conn_id=estate.connections["aws"], client_type="s3", region_name=primary.name
    ).conn
    client.put_object(
        Bucket=primary.backup_bucket,
        Key=key,
        Body=json.dumps(result, indent=2, sort_keys=True, default=str).encode(),
        ContentType="application/json",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=primary.kms_key_alias,
    )
    return f"s3://{primary.backup_bucket}/{key}"


def read_result(estate: Estate, dag_id: str, run_id: str) -> dict[str, Any] | None:
    import json

    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    primary = estate.primary_region
    client = AwsBaseHook(
        aws_conn_id=estate.connections["aws"], client_type="s3", region_name=primary.name
    ).conn
    try:
        body = client.get_object(Bucket=primary.backup_bucket, Key=result_key(dag_id, run_id))["Body"]
    except client.exceptions.NoSuchKey:
        return None
    return json.loads(body.read())
