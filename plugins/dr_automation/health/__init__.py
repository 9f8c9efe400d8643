"""Regional health monitoring: checks, scores, consecutive-failure counting and their history.

The region_health_monitor DAG waits in `RegionHealthSensor`, whose trigger runs
`health.monitor.RegionHealthMonitor` in the triggerer: every check interval it checks every region
(API, database, infrastructure metrics), scores each region, counts consecutive unhealthy cycles and
persists each cycle to ``dr_region_health``. The decision step (`health.decision`) then chooses what
to do with the evidence.

Modules (none imports anything heavy at module level; DAG files import this package at parse time):
- ``checks``: the three checks, each returning a `CheckResult`;
- ``scoring``: score, healthy or not, counters and the fire rule (pure Python);
- ``history``: the ``dr_region_health`` table (per-cycle scores and checks) in the audit database;
- ``monitor``: one monitoring cycle over every region, state restore after a restart;
- ``decision``: settings from the estate, serving region, target choice, incident and conf.
"""

from __future__ import annotations

#: The events the monitor's trigger can fire.
FAILOVER_NEEDED = "failover_needed"
ALL_REGIONS_DOWN = "all_regions_down"
ROTATE = "rotate"
ERROR = "error"
EVENT_KINDS = (FAILOVER_NEEDED, ALL_REGIONS_DOWN, ROTATE, ERROR)
