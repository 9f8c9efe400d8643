"""Backup verification: prove each backup restores and its data is intact, and publish verified RPO.

Modules: ``settings`` (the estate's ``verification`` section with defaults, names of scratch
resources), ``targets`` (which backups a run verifies: asset events, a requested backup, the sweep),
``objects`` (exists, encrypted, checksum recomputed, per artifact and location), ``content`` (each
system type's backup parsed and validated), ``verify`` (one backup's worker checks and the restore
tests they lead to), ``restores`` (database dumps restored by a toolbox pod
into a scratch database; RDS snapshots restored to a scratch instance, then deleted; teardown),
``record`` (the verification record beside the manifest, verified RPO, metric, state, alerts) and
``dag`` (the DAG builder).

Cheap to import: DAG files import ``dag`` at parse time; boto3 and providers load inside functions.
"""

from __future__ import annotations
