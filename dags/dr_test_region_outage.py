"""
### DR drill: region outage (`dr_test_region_outage`)

An Airflow drill DAG: trigger it from the UI, by REST (`POST /api/v2/dags/dr_test_region_outage/dagRuns`) or
through `dr_test_quarterly`.

**What it does.** Puts the drill's own DNS name `<drill id>.drill.leanvibe.ai` in front of the standing
drill stack (a PRIMARY/SECONDARY failover pair with its own Route 53 health checks on the primary and
secondary regions' stack apps) and starts a bounded load generator on it: a client that resolves the
name by real DNS before every attempt, sends real HTTP GETs and retries like a real client
(`drills.load`). Then:

1. **inject**: the primary region's drill stack app is switched `down` (its `control_url`).
2. **recover**: the health monitor's own checks and rule (`dr_automation.health.monitor`) run against
   the drill stack every `health.check_interval_seconds` until `health.consecutive_failures`
   consecutive failures (detect), pick the healthy target (decide), then DNS must answer the
   secondary: the data plane moves it through the drill's health checks; if not within
   `route53.propagation_timeout_seconds` the drill UPSERTs its PRIMARY record (the control-plane
   fallback, as `regional_failover` does).
3. **verify**: real DNS answers the secondary, its health endpoint answers 200, the load's success rate
   over the drill (before, during and after the switch) meets `drills.objectives.region_outage.success_rate`,
   and the markers written through the primary before the outage read back equal afterwards.

**What it touches.** Only what it makes (named/tagged with the drill id: the DNS records, health
checks, a marker database on the scratch server, the load process) and the standing drill stack,
which cleanup returns to healthy. It does **not** trigger `region_health_monitor` or
`regional_failover`: those move production traffic (`api.leanvibe.ai`); the monitor's logic runs
inside the drill instead. The production record and apps are never touched; if production turns
unhealthy the drill aborts (stop condition) and cleans up.

**Reading the result** (`s3://<primary backup bucket>/drills/results/dr_test_region_outage/<run id>.json`,
the `measure` task's log): `rto_seconds` is the failover time (fault injected -> first client request
served by the secondary); `figures.dns_switch_seconds` (fault -> first DNS answer of the secondary),
`figures.detection_seconds`, `figures.success_rate` / `attempt_success_rate` with request and attempt
counts, `figures.load` (before / during / after the switch), `figures.consistency`; `rpo_seconds` is
the data lost (0 when every acknowledged marker is there); `phases` split detect / decide / switch / verify.

**Simulated** (listed in the result's `simulated`): the regions are the sandbox's drill stack apps,
Route 53's data plane is the sandbox DNS server, and both stack regions share one PostgreSQL server
(no cross-region replication to measure).
"""

from dr_automation.drills.dag import build_scenario_dag
from dr_automation.estate import load_estate

build_scenario_dag(load_estate(), "region_outage", schedule=None, doc_md=__doc__)
