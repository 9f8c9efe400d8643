"""
### DR drill: complete disaster (`dr_test_complete_disaster`)

An Airflow drill DAG: trigger it from the UI, by REST (`POST /api/v2/dags/dr_test_complete_disaster/dagRuns`) or
through `dr_test_quarterly`.

**What it does.** Puts the drill's own DNS name `<drill id>.drill.leanvibe.ai` in front of the standing
drill stack (a PRIMARY/SECONDARY failover pair on the primary and secondary regions, with its own
Route 53 health checks, plus one for the DR region, whose stack stands by), finds the newest complete
backup of the primary database in the **DR region's** bucket and copies it under the drill's prefix.

1. **inject**: the primary and secondary regions' drill stack apps are switched `down`.
2. **recover**: the health monitor's checks and rule detect that no region serves (`all_regions_down`);
   the decision is to rebuild in the DR region: a toolbox pod restores the drill's backup copy into a
   test database, the DR stack is brought up, and the drill's PRIMARY record is moved to the DR region
   (UPSERT, audited as `drill.dns_switch`).
3. **verify**: real DNS answers the DR stack, its health endpoint answers 200, and the restored
   database's per-table row counts and checksums equal the ones recorded with the backup.

**What it touches.** Only what it makes (named/tagged with the drill id: DNS records, health checks,
the backup copy and pod results under `drills/<drill id>/`, the test database, the pod) and the
standing drill stack, which cleanup returns to healthy. Never production data, `api.leanvibe.ai`,
the production apps, `region_health_monitor` or `regional_failover`.

**Forced failure.** Conf `{"fault": "remove_backup"}`: the drill's copy of the backup is deleted after
setup, so the recovery fails naming the missing copy; cleanup still removes everything.

**Reading the result** (`s3://<primary backup bucket>/drills/results/dr_test_complete_disaster/<run id>.json`):
`rto_seconds` = fault -> DR serving and verified, split into `phases` detect / decide / restore /
switch / verify; `rpo_seconds` = fault time minus the backup's `taken_at`; `integrity_score` = share of
tables restored exactly; `figures` has the DNS switch time, the backup used and the restore time.

**Simulated** (listed in the result's `simulated`): the regions are the sandbox's drill stack apps,
Route 53's data plane is the sandbox DNS server, the test database lives on the scratch PostgreSQL
server, toolbox pods are local processes, S3 is the AWS emulator.
"""

from dr_automation.drills.dag import build_scenario_dag
from dr_automation.estate import load_estate

build_scenario_dag(load_estate(), "complete_disaster", schedule=None, doc_md=__doc__)
