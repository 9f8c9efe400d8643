"""Import the heavy libraries every DR task needs once, in the Airflow processes that fork tasks.

The LocalExecutor's workers and the dag-processor fork each task or parse from their parent, and a
forked child inherits the parent's imported modules. Every regional_failover task re-parses its DAG
file, and the Amazon provider's operators import boto3 and botocore (about 0.8 s of CPU on this
machine). Imported once before forking, that second is off every task of a failover, where it is
part of the outage. Only the long-lived forking components pay for it; CLI calls and tests do not.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# What the failover and monitor DAG files import at parse, and what their first tasks then need.
PRELOAD_MODULES: tuple[str, ...] = (
    "boto3",
    "botocore.client",
    "airflow.providers.amazon.aws.hooks.base_aws",
    "airflow.providers.amazon.aws.operators.base_aws",
    "airflow.providers.amazon.aws.sensors.base_aws",
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.cncf.kubernetes.operators.pod",  # the backup, verify and restore DAGs' pods
    "httpx",
    # The bundle's own library, as the DAG files import it: a task's parse of its DAG file then costs
    # a few milliseconds instead of about 0.3 s of imports (0.65 s for the quarterly drill's). Only
    # code is imported: the estate is read at parse, in the child, as before.
    "dr_automation.estate",
    "dr_automation.dag_defaults",
    "dr_automation.backup.dag",
    "dr_automation.verification.dag",
    "dr_automation.restore.plan",
    "dr_automation.restore.pods",
    "dr_automation.drills.dag",
    "dr_automation.drills.quarterly",
    "dr_automation.failover",
    "dr_automation.operators.approval",
    "dr_automation.operators.region_health",
    "dr_automation.operators.route53",
    "dr_automation.sensors.region_health",
    "dr_automation.sensors.route53",
)

# `airflow <component>` processes that fork tasks or DAG parses (Celery workers prefork too).
FORKING_COMPONENTS = frozenset({"scheduler", "dag-processor", "triggerer", "worker"})


def forks_tasks(argv: Sequence[str]) -> bool:
    """True for `airflow scheduler`, `airflow dag-processor`, `airflow celery worker`..."""
    if not argv or not argv[0].endswith("airflow"):
        return False
    return any(arg in FORKING_COMPONENTS for arg in argv[1:3])


def preload(argv: Sequence[str] | None = None) -> list[str]:
    """Import PRELOAD_MODULES when this process forks tasks; returns what was imported."""
    if not forks_tasks(sys.argv if argv is None else argv):
        return []
    loaded = []
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # a component without the provider installed still starts
            continue
        loaded.append(name)
    return loaded
