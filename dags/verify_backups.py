"""
### Verify backups

Proves every backup restores and its data is intact, and publishes the verified RPO per tier (the
age of the newest backup that passed full verification), alerting when it exceeds the tier's RPO.
Runs on each backup tier's asset event and as a daily sweep of anything not verified yet. The
DAG's own runbook (what is checked, where the records are, what to do when it fails) is built from
the estate config by `dr_automation.verification.dag`.
"""

from __future__ import annotations

from airflow.sdk import DAG

from dr_automation.estate import load_estate
from dr_automation.verification.dag import build_verify_dag

verify_backups: DAG = build_verify_dag(load_estate())
