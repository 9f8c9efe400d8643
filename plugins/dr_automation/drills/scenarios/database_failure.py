"""Scenario database_failure: the drill's test database fails and is recovered from the latest backup.

setup   the newest complete dump of the primary database (tier 1 normally) is copied under the
        drill's prefix; a toolbox pod restores it into the drill's test database; real rows are
        written into it for a few seconds (the writes a restore from the backup will lose);
inject  every session of the test database is terminated and the database dropped (the failure),
        and a probe sees it gone (detection); with the fault remove_backup the drill's backup copy
        is deleted first, so the recovery must fail naming it;
recover a toolbox pod recreates the test database from the drill's backup copy;
verify  its per-table row counts and checksums equal those recorded at backup time; which of the
        rows written after the backup survived; latency and throughput of real queries;
cleanup the drill's databases, S3 objects and pods, found from the drill id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dr_automation.drills import database as kit

if TYPE_CHECKING:
    from dr_automation.drills.scenario import DrillContext

AWS_ACTIONS = kit.AWS_ACTIONS
DETECT_TIMEOUT_SECONDS = 30.0
BENCH_QUERIES = 60
BENCH_SECONDS = 2.0


class DatabaseFailure(kit.DatabaseDrill):
    name = "database_failure"

    def inject(self, ctx: DrillContext) -> Mapping[str, Any]:
        fault = kit.apply_fault(ctx)
        database = ctx.state["database"]
        session = kit.open_session(ctx, database)  # the application's connection, cut by the failure
        try:
            ctx.mark("failure")
            failed = kit.fail_database(ctx, database)
        finally:
            session.close()
        seen, at = ctx.wait_for(
            f"database {database} seen failed",
            lambda: kit.reachable(ctx.estate, database),
            timeout=DETECT_TIMEOUT_SECONDS,
            interval=0.1,
        )
        ctx.mark("detected", at)
        return {**fault, "failed": failed, "failure_seen": seen}

    def verify(self, ctx: DrillContext) -> Mapping[str, Any]:
        verified = super().verify(ctx)
        performance = kit.query_performance(
            ctx, ctx.state["database"], queries=BENCH_QUERIES, seconds=BENCH_SECONDS
        )
        return {**verified, "performance": performance}

    def measure(self, ctx: DrillContext) -> Mapping[str, Any]:
        return kit.measured(
            ctx,
            "failure",
            {
                **ctx.state["performance"],
                "failure_seen_as": ctx.state["failure_seen"],
                "sessions_terminated": ctx.state["failed"]["terminated_sessions"],
            },
        )


SCENARIO = DatabaseFailure()
