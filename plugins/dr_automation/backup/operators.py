"""The provider operator the backups copy S3 objects with, extended for backups.

Imported by the DAG builder only (it loads the Amazon provider's S3 module).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from airflow.providers.amazon.aws.operators.s3 import S3CopyPrefixOperator

from dr_automation.backup.components import label_instance, raise_for, record_failure


class BackupCopyPrefixOperator(S3CopyPrefixOperator):
    """S3CopyPrefixOperator for backups: every object of the prefix is copied with the location's
    storage class, Object Lock retention and a SHA-256 checksum; the first failed copy stops the task
    (a retry copies the prefix again) and is recorded for the manifest under the component's
    (system's) name, and one a retry cannot fix (missing bucket, access denied) fails at once."""

    def __init__(
        self,
        *,
        component: str,
        storage_class: str | None = None,
        object_lock_mode: str | None = None,
        object_lock_retain_until: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.component = component
        self.storage_class = storage_class
        self.object_lock_mode = object_lock_mode
        self.object_lock_retain_until = object_lock_retain_until

    def copy_arguments(self) -> dict[str, Any]:
        """What each CopyObject gets beyond the provider's own arguments."""
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"}
        if self.storage_class:
            extra["StorageClass"] = self.storage_class
        if self.object_lock_mode:
            if not self.object_lock_retain_until:
                raise ValueError(f"{self.task_id}: object_lock_mode needs object_lock_retain_until")
            extra["ObjectLockMode"] = self.object_lock_mode
            extra["ObjectLockRetainUntilDate"] = datetime.fromisoformat(self.object_lock_retain_until)
        return extra

    def execute(self, context: Any) -> None:
        label_instance(context, self.component)
        hook = self.hook
        if self.object_lock_mode:
            # moto 5.2 refuses any write into an Object Lock bucket without this header (real S3 needs
            # Content-MD5 or a checksum on PutObject only); S3 ignores it on CopyObject.
            hook.get_conn().meta.events.register("before-sign.s3.CopyObject", _checksum_header)
        # The provider's listing and copy loop, each copy given the backup's arguments.
        hook.copy_object = functools.partial(type(hook).copy_object, hook, **self.copy_arguments())
        try:
            super().execute(context)
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
            raise_for(cause, record_failure(context, self.component, exc))


def _checksum_header(request: Any, **_: Any) -> None:
    request.headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
