"""House defaults shared by every DAG of the bundle: owner, retries, failure paging, tags.

One place, so the DAG-integrity suite can hold every DAG to the same rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dr_automation.estate import Estate
from dr_automation.notifications.callbacks import on_task_failure

# Every DAG tag comes from this vocabulary (the integrity suite enforces it), so operators can
# filter the UI by family during an incident without guessing spellings.
DAG_TAG_VOCABULARY: frozenset[str] = frozenset(
    {
        "dr",
        "backup",
        "verification",
        "restore",
        "failover",
        "failback",
        "dns",
        "health",
        "drill",
        "readiness",
        "tier1",
        "tier2",
        "tier3",
        "tier4",
        "incident",
        "reporting",
    }
)


def default_args(estate: Estate, *, retries: int = 2, retry_delay_seconds: int = 30) -> dict[str, Any]:
    """default_args for a bundle DAG: owner from the estate, bounded retries with backoff, and a
    failure callback that pages the DAG's on-call route (notifications.failure_levels) and audits it."""
    return {
        "owner": estate.owner,
        "retries": retries,
        "retry_delay": timedelta(seconds=retry_delay_seconds),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "on_failure_callback": on_task_failure,
    }


def dag_tags(*tags: str) -> list[str]:
    """Tags for a DAG, checked against the vocabulary at parse time (a typo fails the import)."""
    unknown = sorted(set(tags) - DAG_TAG_VOCABULARY)
    if unknown:
        raise ValueError(
            f"DAG tags {unknown} are not in the bundle's vocabulary {sorted(DAG_TAG_VOCABULARY)}"
        )
    return ["dr", *[t for t in tags if t != "dr"]]
