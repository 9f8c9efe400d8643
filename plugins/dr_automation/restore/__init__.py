"""Restore from a verified backup: the library behind the ``restore_from_backup`` DAG.

Modules: ``plan`` (the run's Params, every check on the request and the plan it leads to: pure
functions of the estate, the backup's manifest and its verification record), ``backup`` (reading
the manifest, the verification record and what else the plan needs from S3; the per-target lock),
``kube`` (the Kubernetes API: scaling the estate's deployments, exporting and applying objects),
``steps`` (stop, safety snapshot, restore, verify, restart and rollback, each idempotent and
audited) and ``record`` (the restore manifest beside the backup, the outcome, notifications).

Cheap to import: the DAG file imports ``plan`` at parse time; boto3, the Kubernetes client and the
providers load inside functions.
"""

from __future__ import annotations
