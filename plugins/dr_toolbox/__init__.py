"""dr-toolbox: the CLI that the disaster-recovery pods run (database dumps, restores, verification,
checksums, Kubernetes object exports).

Kept free of Airflow and of heavy module-level imports: the image has no Airflow and every pod
invocation pays the import cost, so boto3/psycopg2 are imported only inside the commands that use them.
"""

from __future__ import annotations

__version__ = "0.1.0"
