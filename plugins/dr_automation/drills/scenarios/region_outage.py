"""Region outage: the primary region's drill stack goes down under client traffic; the health
monitor's own checks detect it, DNS moves the drill's name to the secondary, clients keep being served.

Only the drill's resources move: its own failover pair ``<drill id>.<record_domain>`` and health
checks on the standing drill stack. The production record, apps, region_health_monitor and
regional_failover are never touched (the monitor's checks and rule run inside the drill instead).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dr_automation.drills import stack
from dr_automation.drills.database import connect_scratch, drop_test_databases
from dr_automation.drills.scenario import DrillError

if TYPE_CHECKING:
    from dr_automation.drills.scenario import DrillContext

AWS_ACTIONS: tuple[str, ...] = stack.AWS_ACTIONS

# Traffic before the fault (steady state) and after the switch (clients settled on the secondary).
BASELINE_SECONDS = 10.0
SETTLE_SECONDS = 15.0
MARKERS = 20


def marker_database(ctx: DrillContext) -> str:
    return f"{ctx.database_name}_markers"


def create_markers(ctx: DrillContext) -> None:
    """The drill's own database of markers (the region's data written before the outage)."""
    from psycopg2 import sql

    name = marker_database(ctx)
    admin = connect_scratch(ctx.estate, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        admin.close()
    conn = connect_scratch(ctx.estate, database=name, autocommit=True)
    with conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS drill_markers (id serial PRIMARY KEY, written_at double precision "
            "NOT NULL, region text NOT NULL, payload text NOT NULL)"
        )
    conn.close()


def write_markers(ctx: DrillContext, region: str, count: int) -> list[dict[str, Any]]:
    """Write markers through ``region`` and return them as acknowledged (committed)."""
    rows = []
    conn = connect_scratch(ctx.estate, database=marker_database(ctx), autocommit=True)  # each INSERT commits
    with conn, conn.cursor() as cur:
        for i in range(count):
            at = time.time()
            payload = hashlib.sha256(f"{ctx.drill_id}:{region}:{i}:{at}".encode()).hexdigest()
            cur.execute(
                "INSERT INTO drill_markers (written_at, region, payload) VALUES (%s, %s, %s) RETURNING id",
                (at, region, payload),
            )
            rows.append({"id": cur.fetchone()[0], "written_at": at, "payload": payload})
    conn.close()
    return rows


def read_markers(ctx: DrillContext) -> dict[int, str]:
    conn = connect_scratch(ctx.estate, database=marker_database(ctx))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, payload FROM drill_markers")
            return {int(i): p for i, p in cur.fetchall()}
    finally:
        conn.close()


def consistency(written: list[Mapping[str, Any]], read: Mapping[int, str]) -> dict[str, Any]:
    """What was acknowledged before the outage against what the surviving side reads (pure)."""
    missing = [w for w in written if w["id"] not in read]
    differing = [w for w in written if w["id"] in read and read[w["id"]] != w["payload"]]
    equal = len(written) - len(missing) - len(differing)
    return {
        "written": len(written),
        "read_equal": equal,
        "missing": [w["id"] for w in missing],
        "differing": [w["id"] for w in differing],
        "oldest_lost_at": min((w["written_at"] for w in missing + differing), default=None),
        "consistent": not missing and not differing,
    }


class RegionOutage:
    name = "region_outage"
    simulated = (
        "the regions are the standing drill stack: one small app per region on its own loopback address",
        "Route 53's data plane is the sandbox DNS server, whose health checkers probe the drill stack",
        "cross-region data: both stack regions use one PostgreSQL server (markers in the drill's own "
        "database on the scratch server) instead of replicated regional databases",
    )

    def _regions(self, ctx: DrillContext) -> tuple[str, str]:
        primary, secondary = ctx.estate.primary_region.name, ctx.estate.secondary_region.name
        for region in (primary, secondary):
            stack.stack_endpoint(ctx.estate, region)
        return primary, secondary

    def setup(self, ctx: DrillContext) -> dict[str, Any]:
        primary, secondary = self._regions(ctx)
        stack.control_url(ctx.estate, primary)  # the fault needs it: fail now, not after setup
        stack.require_healthy(ctx.estate, (primary, secondary))
        create_markers(ctx)
        markers = write_markers(ctx, primary, MARKERS)
        stack.route_drill_name(ctx, primary, secondary)
        load = stack.start_load(ctx)
        ctx.mark("load_started")
        ctx.state["load"] = load
        try:
            ctx.wait_for(
                "load: clients served by the primary",
                lambda: stack.load_stats(stack.read_load(ctx)["requests"])["requests_succeeded"] > 0,
                timeout=30,
            )
        except DrillError as exc:
            raise DrillError(f"{exc} ({stack.load_problem(ctx)})") from exc
        stack.hold(ctx, ctx.state["marks"]["load_started"] + BASELINE_SECONDS)  # steady state first
        return {
            "primary": primary,
            "secondary": secondary,
            "addresses": {r: stack.stack_endpoint(ctx.estate, r)["address"] for r in (primary, secondary)},
            "markers": markers,
        }

    def inject(self, ctx: DrillContext) -> dict[str, Any]:
        primary = ctx.state["primary"]
        # the last writes acknowledged through the primary before it goes
        markers = list(ctx.state["markers"]) + write_markers(ctx, primary, 1)
        stack.set_stack_mode(ctx.estate, primary, "down")
        ctx.mark("inject")
        return {"markers": markers, "failed_regions": [primary]}

    def recover(self, ctx: DrillContext) -> dict[str, Any]:
        from dr_automation.health.decision import choose_target

        primary, secondary = ctx.state["primary"], ctx.state["secondary"]
        found = stack.detect(ctx, primary, regions=[primary, secondary])
        ctx.mark("detected", found["detected_at"])
        if found["kind"] != "failover_needed":
            raise DrillError(f"detection: the monitor fired {found['kind']}, expected failover_needed")
        target = choose_target(ctx.estate, found)
        if target != secondary:
            raise DrillError(
                f"decision: the monitor's target is {target}, expected the secondary {secondary}"
            )
        probe = stack.probe_stack(ctx.estate, target)
        if not probe["healthy"]:
            raise DrillError(f"decision: target {target} is not healthy ({probe['status']})")
        ctx.mark("decided")
        address = ctx.state["addresses"][secondary]
        timeout = float(ctx.estate.route53["propagation_timeout_seconds"])
        switched_by = "data plane (the drill's health checks)"
        try:
            seen = stack.wait_for_answer(ctx, address, timeout=timeout, what="DNS answers the secondary")
        except DrillError:
            # the data plane did not move it in time: the control-plane switch, as regional_failover's
            change = stack.move_primary(ctx, secondary, ctx.state["routing"]["health_checks"][secondary])
            stack.audit_dns_change(
                ctx, "succeeded", {"to": secondary, "change": change["change"]["change_id"]}
            )
            switched_by = "control plane (UPSERT of the PRIMARY record)"
            seen = stack.wait_for_answer(ctx, address, timeout=timeout, what="DNS answers the secondary")
        ctx.mark("dns_switched", seen)
        return {
            "detection": {
                k: found[k] for k in ("kind", "cycles", "healthy_regions", "unhealthy_regions", "regions")
            },
            "target": target,
            "switched_by": switched_by,
        }

    def verify(self, ctx: DrillContext) -> dict[str, Any]:
        secondary = ctx.state["secondary"]
        address = ctx.state["addresses"][secondary]
        answers = stack.dns_answers(ctx.estate, ctx.record_name)
        if not stack.dns_answers_only(ctx.estate, ctx.record_name, address):
            raise DrillError(
                f"verify: DNS answers {answers} for {ctx.record_name}, not {secondary} ({address})"
            )
        probe = stack.probe_stack(ctx.estate, secondary)
        if not probe["healthy"]:
            raise DrillError(f"verify: {secondary} health {probe['url']} -> {probe['status']}")
        # clients settle on the secondary; the load keeps running meanwhile
        stack.hold(ctx, ctx.state["marks"]["dns_switched"] + SETTLE_SECONDS)
        load = stack.stop_load(ctx)
        ctx.mark("load_stopped")
        requests = load["requests"]
        if not requests:
            raise DrillError("verify: the load generator recorded no requests")
        marks = ctx.state["marks"]
        primary_address = ctx.state["addresses"][ctx.state["primary"]]
        inject = marks["inject"]
        read = read_markers(ctx)
        ctx.mark("verified")
        served_secondary = stack.first_attempt(requests, after=inject, address=address, ok=True)
        dns_secondary = stack.first_attempt(requests, after=inject, address=address)
        return {
            "dns_answers": answers,
            "secondary_health": probe,
            "load_summary": {
                "whole": stack.load_stats(requests),
                "before_inject": stack.load_stats(requests, end=inject),
                "switch_window": stack.load_stats(requests, start=inject, end=marks["dns_switched"]),
                "after_switch": stack.load_stats(requests, start=marks["dns_switched"]),
                "settings": load.get("settings"),
                "finished": load.get("finished"),
                "first_served_by_secondary_at": served_secondary,
                "first_dns_answer_secondary_at": dns_secondary,
                "last_served_by_primary_at": max(
                    (
                        a["at"]
                        for r in requests
                        for a in r["attempts"]
                        if a.get("ok") and a.get("address") == primary_address
                    ),
                    default=None,
                ),
            },
            "consistency": consistency(ctx.state["markers"], read),
        }

    def measure(self, ctx: DrillContext) -> dict[str, Any]:
        marks = ctx.state["marks"]
        inject = marks["inject"]
        load = ctx.state["load_summary"]
        whole = load["whole"]
        served = load["first_served_by_secondary_at"]
        dns_seen = [t for t in (load["first_dns_answer_secondary_at"], marks.get("dns_switched")) if t]
        target = float(ctx.objectives.get("success_rate", 0.95))
        cons = ctx.state["consistency"]
        failures = []
        rate = whole["request_success_rate"]
        if rate is None or rate < target:
            failures.append(
                f"success rate {rate} below the objective {target} ({whole['requests']} requests)"
            )
        if not cons["consistent"]:
            failures.append(
                f"data not consistent across regions: missing {cons['missing']}, differing {cons['differing']}"
            )
        if served is None:
            failures.append("no client request was served by the secondary")
        failover = round(served - inject, 3) if served else None
        return {
            "rto_seconds": failover,
            "rpo_seconds": 0.0
            if cons["oldest_lost_at"] is None
            else round(inject - cons["oldest_lost_at"], 3),
            "integrity_score": round(cons["read_equal"] / cons["written"], 4) if cons["written"] else None,
            "phases": {
                "detect": ctx.since("inject", "detected"),
                "decide": ctx.since("detected", "decided"),
                "switch": max(0.0, ctx.since("decided", "dns_switched") or 0.0),
                "verify": ctx.since("verify_started", "verified"),
            },
            "figures": {
                "failover_seconds": failover,
                "dns_switch_seconds": round(min(dns_seen) - inject, 3) if dns_seen else None,
                "detection_seconds": ctx.since("inject", "detected"),
                "switched_by": ctx.state.get("switched_by"),
                "success_rate": rate,
                "success_rate_objective": target,
                "attempt_success_rate": whole["attempt_success_rate"],
                "requests": whole["requests"],
                "requests_succeeded": whole["requests_succeeded"],
                "attempts": whole["attempts"],
                "attempts_succeeded": whole["attempts_succeeded"],
                "load": load,
                "detection": ctx.state.get("detection"),
                "dns_answers_after": ctx.state.get("dns_answers"),
                "consistency": cons,
                "primary": ctx.state.get("primary"),
                "secondary": ctx.state.get("secondary"),
                "record_name": ctx.record_name,
            },
            "failures": failures,
        }

    def cleanup(self, ctx: DrillContext) -> list[str]:
        return stack.clean_up(ctx, ("databases", lambda: [f"database {n}" for n in drop_test_databases(ctx)]))


SCENARIO = RegionOutage()
