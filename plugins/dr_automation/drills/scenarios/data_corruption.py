"""Scenario data_corruption: rows silently corrupted, found by a verification-style check, restored
to a point before the corruption.

setup   the newest complete dump of the primary database is copied under the drill's prefix, a
        toolbox pod restores it into the drill's test database, then real rows are written into it;
inject  amounts of invoices that existed at backup time are changed in place (no error anywhere:
        silent corruption); the integrity check (per-table stats of the rows the backup covers
        against the stats recorded at backup time) must find it and name the table(s) (detection);
        with the fault remove_backup the drill's backup copy is deleted first;
recover the corrupted test database is replaced by a restore of the drill's backup copy (a point
        before the corruption) by a toolbox pod;
verify  its stats equal the recorded ones; the writes between the backup and the corruption are
        the data lost;
cleanup the drill's databases, S3 objects and pods, found from the drill id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dr_automation.drills import database as kit
from dr_automation.drills.scenario import DrillError

if TYPE_CHECKING:
    from dr_automation.drills.scenario import DrillContext

AWS_ACTIONS = kit.AWS_ACTIONS
CORRUPT_ROWS = 25


class DataCorruption(kit.DatabaseDrill):
    name = "data_corruption"

    def inject(self, ctx: DrillContext) -> Mapping[str, Any]:
        fault = kit.apply_fault(ctx)
        database, writes = ctx.state["database"], ctx.state["writes"]
        ctx.mark("corruption")
        corrupted = kit.corrupt_rows(ctx, database, exclude=writes["ids"], rows=CORRUPT_ROWS)
        # detection: the rows the backup covers (all but the writer's) against the recorded stats
        actual = kit.table_stats(ctx, database, excluding={writes["table"]: writes["ids"]})
        found = kit.compare(ctx.state["backup"]["stats"], actual)
        ctx.mark("detected")
        if not found["mismatched_tables"]:
            raise DrillError(f"the integrity check did not detect the corruption of {len(corrupted)} rows")
        return {**fault, "corrupted": corrupted, "detection": found}

    def recover(self, ctx: DrillContext) -> Mapping[str, Any]:
        kit.fail_database(ctx, ctx.state["database"])  # the corrupted copy goes; the restore replaces it
        return super().recover(ctx)

    def measure(self, ctx: DrillContext) -> Mapping[str, Any]:
        detection = ctx.state["detection"]
        return kit.measured(
            ctx,
            "corruption",
            {
                "rows_corrupted": len(ctx.state["corrupted"]),
                "corruption_detected_in": detection["mismatched_tables"],
                "detection_reasons": [m["reason"] for m in detection["mismatches"]],
            },
        )


SCENARIO = DataCorruption()
