"""The four backup tiers: one DAG per tier of the estate's ``tiers`` section, every system a mapped task.

Modules: ``plan`` (where each tier's backups go, task ids, AWS actions; pure), ``pods`` (toolbox
pods per system type), ``components`` (the Python-run system types), ``snapshots`` (RDS snapshot
plans and evidence), ``copies`` (S3 copy plans: sources into the work location, then placement in
the tier's final locations), ``operators`` (the provider's S3CopyPrefixOperator, extended),
``manifest`` (per-run manifest, integrity checks, outcome of each system), ``runtime`` (the run-wide
steps), ``retention`` (lifecycle rules, bucket checks, snapshot expiry), ``deadline`` (the RPO
deadline callback, run by the triggerer), ``assets`` (the asset event per tier) and ``dag`` (the
DAG builder).

Cheap to import: DAG files and the triggerer import parts of this package; providers and boto3 are
imported inside functions.
"""

from __future__ import annotations
