"""
### DR drill: database failure (`dr_test_database_failure`)

**What it does.** Restores the newest complete backup of the primary database (tier 1 normally) into
a test database of its own, writes real rows into it for a few seconds, then fails it (every session
terminated, the database dropped), recovers it from the backup with a toolbox pod and verifies it.

**What it touches.** Only what it makes, named after the drill id (`dr-drill-database-failure-<hash>`):
a copy of the backup under `s3://<primary backup bucket>/drills/<drill id>/` (tagged
`<tag_prefix>:drill`), databases named `dr_drill_database_failure_<hash>*` on the scratch PostgreSQL
server (`verification.scratch_connection`; pods get its DSN from `verification.scratch_credentials_secret`),
and its toolbox pods (label `dr-automation/drill`). Production data, DNS and apps are never touched; the
drill aborts (and cleans up) if production turns unhealthy. `cleanup` always runs and fails naming
anything it could not remove.

**Reading the result** (`s3://<primary backup bucket>/drills/results/dr_test_database_failure/<run>.json`):
`rto_seconds` failure -> verified; `rpo_seconds` failure time minus the backup's snapshot time;
`integrity_score` share of tables whose row counts and checksums equal those recorded at backup time;
`phases` detect / restore / verify; `figures.rows_written`, `rows_lost`, `minutes_lost` (rows the
writer committed after the backup that the recovery lost); `latency_ms_p50/p95`, `throughput_qps` of
real queries after recovery. `passed` false with `reason` when a step failed or an objective was missed.

(An Airflow DAG: manual, REST or triggered by `dr_test_quarterly`.)

**Forced failure.** Trigger with `{"fault": "remove_backup"}`: the drill's backup copy is deleted after
setup, recovery fails naming the missing object, the result says why, cleanup still leaves nothing.

**Simulated.** The test database is a database on the scratch server, not a separate RDS instance; in
the sandbox, pods are local processes (Kubernetes stand-in) and S3 is the AWS emulator.
"""

from dr_automation.drills.dag import build_scenario_dag
from dr_automation.estate import load_estate

build_scenario_dag(load_estate(), "database_failure", schedule=None, doc_md=__doc__)
