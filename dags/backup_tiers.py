"""
### Backup tiers

The estate's multi-tier backup strategy: one DAG per entry of the estate's `tiers` section
(`backup_tier1_realtime`, `backup_tier2_frequent`, `backup_tier3_daily`, `backup_tier4_archival` for
LeanVibe), each on its own schedule, the systems of the tier mapped task instances (in batches). Each DAG's own
runbook (what it backs up, where, and what to do when it fails) is its doc, built from the config by
`dr_automation.backup.dag`.
"""

from __future__ import annotations

from airflow.sdk import DAG

from dr_automation.backup.dag import build_tier_dag
from dr_automation.estate import load_estate

estate = load_estate()
for _key in estate.tiers:
    _dag: DAG = build_tier_dag(estate, _key)
    globals()[_dag.dag_id] = _dag
