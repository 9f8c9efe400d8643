"""
### DR drill: data corruption (`dr_test_data_corruption`)

**What it does.** Restores the newest complete backup of the primary database into a test database of
its own, writes real rows into it, then silently corrupts rows that existed at backup time (invoice
amounts changed in place). A verification-style integrity check (per-table row counts and checksums of
the rows the backup covers, against those recorded at backup time) must find it and name the table.
The test database is then restored to a point before the corruption (the backup, by a toolbox pod)
and verified.

**What it touches.** Only what it makes, named after the drill id (`dr-drill-data-corruption-<hash>`):
a copy of the backup under `s3://<primary backup bucket>/drills/<drill id>/` (tagged
`<tag_prefix>:drill`), databases named `dr_drill_data_corruption_<hash>*` on the scratch PostgreSQL
server (`verification.scratch_connection`; pods get its DSN from `verification.scratch_credentials_secret`),
and its toolbox pods (label `dr-automation/drill`). Never production data; the drill aborts (and cleans
up) if production turns unhealthy. `cleanup` always runs and fails naming anything it could not remove.

**Reading the result** (`s3://<primary backup bucket>/drills/results/dr_test_data_corruption/<run>.json`):
`rto_seconds` corruption -> verified; `rpo_seconds` corruption time minus the backup's snapshot time;
`phases.detect` how long the integrity check took to find it; `figures.corruption_detected_in` the
table(s) it named; `rows_written`, `rows_lost`, `minutes_lost` the writes between the backup and the
corruption that the restore lost; `integrity_score` share of tables equal to the backup after restore.

(An Airflow DAG: manual, REST or triggered by `dr_test_quarterly`.)

**Forced failure.** Trigger with `{"fault": "remove_backup"}`: the drill's backup copy is deleted after
setup, recovery fails naming the missing object, the result says why, cleanup still leaves nothing.

**Simulated.** The test database is a database on the scratch server, not a separate RDS instance; in
the sandbox, pods are local processes (Kubernetes stand-in) and S3 is the AWS emulator.
"""

from dr_automation.drills.dag import build_scenario_dag
from dr_automation.estate import load_estate

build_scenario_dag(load_estate(), "data_corruption", schedule=None, doc_md=__doc__)
