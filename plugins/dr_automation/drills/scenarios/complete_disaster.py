"""Complete disaster: the primary and secondary regions' drill stacks are lost; service is recovered
into the DR region from the newest backup in the DR region's bucket, and the drill's DNS name moves
there.

The drill restores into its own test database (from its own copy of the backup) and moves only its
own record ``<drill id>.<record_domain>``; production data, records and apps are never touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dr_automation.drills import database as db
from dr_automation.drills import stack
from dr_automation.drills.scenario import DrillError

if TYPE_CHECKING:
    from dr_automation.drills.scenario import DrillContext

# the drill's Route 53 resources and the monitor's metric read, plus the database kit's backup calls
AWS_ACTIONS: tuple[str, ...] = (*stack.AWS_ACTIONS, *db.AWS_ACTIONS)

RESTORED_SUFFIX = "_dr"


class CompleteDisaster:
    name = "complete_disaster"
    simulated = (
        "the regions are the standing drill stack: one small app per region on its own loopback address; "
        "the DR stack stands by (down) until the recovery brings it up",
        "Route 53's data plane is the sandbox DNS server, whose health checkers probe the drill stack",
        *db.SIMULATED,
    )

    def _regions(self, ctx: DrillContext) -> tuple[str, str, str]:
        e = ctx.estate
        names = (e.primary_region.name, e.secondary_region.name, e.dr_region.name)
        for region in names:
            stack.control_url(e, region)  # every stack region is failed or brought up: fail now
        return names

    def setup(self, ctx: DrillContext) -> dict[str, Any]:
        primary, secondary, dr = self._regions(ctx)
        stack.require_healthy(ctx.estate, (primary, secondary))
        found = db.latest_backup(ctx.estate, region=dr)
        ctx.mark("backup_taken", db.parse_time(found["taken_at"]))
        backup = db.copy_backup(ctx, found)
        ctx.state["backup"] = backup
        # The DR region stands by: no service there until the recovery brings it up.
        stack.set_stack_mode(ctx.estate, dr, "down")
        stack.route_drill_name(ctx, primary, secondary, extra=[dr])
        return {
            "primary": primary,
            "secondary": secondary,
            "dr": dr,
            "addresses": {
                r: stack.stack_endpoint(ctx.estate, r)["address"] for r in (primary, secondary, dr)
            },
            "backup": backup,
        }

    def inject(self, ctx: DrillContext) -> dict[str, Any]:
        failed = [ctx.state["primary"], ctx.state["secondary"]]
        out = db.apply_fault(ctx)  # remove_backup: the drill's copy goes now, after setup
        for region in failed:
            stack.set_stack_mode(ctx.estate, region, "down")
        ctx.mark("inject")
        return {**out, "failed_regions": failed}

    def recover(self, ctx: DrillContext) -> dict[str, Any]:
        primary, secondary, dr = ctx.state["primary"], ctx.state["secondary"], ctx.state["dr"]
        found = stack.detect(ctx, primary, regions=[primary, secondary, dr])
        ctx.mark("detected", found["detected_at"])
        if found["kind"] != "all_regions_down":
            raise DrillError(
                f"detection: the monitor fired {found['kind']} (healthy: {found['healthy_regions']}), "
                "expected all_regions_down"
            )
        # No region serves: the catastrophic-level decision is to rebuild in the DR region from backups.
        ctx.mark("decided")
        restored = db.create_test_database(ctx, ctx.state["backup"], suffix=RESTORED_SUFFIX)
        ctx.mark("restore_started", restored["started_at"])
        ctx.mark("restored", restored["finished_at"])
        stack.set_stack_mode(ctx.estate, dr, "healthy")
        ctx.wait_for(
            f"the DR stack {dr} serving",
            lambda: stack.probe_stack(ctx.estate, dr)["healthy"],
            timeout=30,
            interval=0.2,
        )
        ctx.mark("dr_serving")
        change = stack.move_primary(ctx, dr, ctx.state["routing"]["health_checks"][dr])
        stack.audit_dns_change(
            ctx, "succeeded", {"to": dr, "change": change["change"]["change_id"], "drill": ctx.drill_id}
        )
        ctx.mark("switch_submitted")
        timeout = float(ctx.estate.route53["propagation_timeout_seconds"])
        seen = stack.wait_for_answer(ctx, ctx.state["addresses"][dr], timeout=timeout, what="DNS answers DR")
        ctx.mark("dns_switched", seen)
        return {
            "detection": {
                k: found[k] for k in ("kind", "cycles", "healthy_regions", "unhealthy_regions", "regions")
            },
            "restored": restored,
            "change_id": change["change"]["change_id"],
        }

    def verify(self, ctx: DrillContext) -> dict[str, Any]:
        dr = ctx.state["dr"]
        address = ctx.state["addresses"][dr]
        answers = stack.dns_answers(ctx.estate, ctx.record_name)
        if not stack.dns_answers_only(ctx.estate, ctx.record_name, address):
            raise DrillError(f"verify: DNS answers {answers} for {ctx.record_name}, not {dr} ({address})")
        probe = stack.probe_stack(ctx.estate, dr)
        if not probe["healthy"]:
            raise DrillError(f"verify: {dr} health {probe['url']} -> {probe['status']}")
        database = ctx.state["restored"]["database"]
        problem = db.reachable(ctx.estate, database)
        if problem:
            raise DrillError(f"verify: the restored database {database} does not answer: {problem}")
        verified = db.compare(ctx.state["backup"]["stats"], db.table_stats(ctx, database))
        ctx.mark("verified")
        return {"dns_answers": answers, "dr_health": probe, "verified": verified}

    def measure(self, ctx: DrillContext) -> dict[str, Any]:
        marks = ctx.state["marks"]
        verified = ctx.state["verified"]
        backup = ctx.state["backup"]
        rto = ctx.since("inject", "verified")
        failures = [f"table {m['table']}: {m['reason']}" for m in verified["mismatches"]]
        return {
            "rto_seconds": rto,
            "rpo_seconds": round(marks["inject"] - marks["backup_taken"], 3),
            "integrity_score": verified["integrity_score"],
            "phases": {
                "detect": ctx.since("inject", "detected"),
                "decide": ctx.since("detected", "decided"),
                "restore": ctx.since("restore_started", "restored"),
                "switch": ctx.since("dr_serving", "dns_switched"),
                "verify": ctx.since("verify_started", "verified"),
            },
            "figures": {
                "dns_switch_seconds": ctx.since("inject", "dns_switched"),
                "dns_propagation_seconds": ctx.since("switch_submitted", "dns_switched"),
                "dr_serving_seconds": ctx.since("inject", "dr_serving"),
                "detection_seconds": ctx.since("inject", "detected"),
                "detection": ctx.state.get("detection"),
                "dns_answers_after": ctx.state.get("dns_answers"),
                "dr_health": ctx.state.get("dr_health"),
                "restored_database": ctx.state["restored"]["database"],
                "restore_seconds": ctx.state["restored"]["restore_seconds"],
                "backup": f"{backup['tier']}/{backup['backup_id']}",
                "backup_region": backup["region"],
                "backup_taken_at": backup["taken_at"],
                "backup_copy": backup["url"],
                "tables_checked": verified["tables"],
                "tables_matching": verified["matched"],
                "failed_regions": ctx.state.get("failed_regions"),
                "dr_region": ctx.state.get("dr"),
                "record_name": ctx.record_name,
                "route53_change_id": ctx.state.get("change_id"),
            },
            "failures": failures,
        }

    def cleanup(self, ctx: DrillContext) -> list[str]:
        return stack.clean_up(ctx, ("database drill", lambda: db.clean_up(ctx)))


SCENARIO = CompleteDisaster()
