"""Where finished export and report files live: one interface (``base.Storage``), two backends.

- ``directory.DirectoryStorage`` for ``EXPORT_STORAGE=/some/dir`` (default ``./var/exports``);
- ``s3.S3Storage`` for ``EXPORT_STORAGE=s3://bucket/prefix``: a multipart upload streamed part by part;
  the object exists only once the upload is completed (docs/exports.md).

The backends import only ``base``; this package's ``storage_from_settings`` is the one place that picks.
"""
from __future__ import annotations

from shared.config import Settings
from shared.storage.base import CHUNK_SIZE, PARTIAL_SUFFIX, Download, PendingFile, Storage, StorageError, validate_key
from shared.storage.directory import DirectoryStorage

__all__ = ["CHUNK_SIZE", "PARTIAL_SUFFIX", "DirectoryStorage", "Download", "PendingFile", "Storage", "StorageError",
           "storage_from_settings", "validate_key"]


def storage_from_settings(settings: Settings) -> Storage:
    """The backend ``EXPORT_STORAGE`` names. No I/O: connections are opened on first use; ``check`` verifies."""
    if settings.s3 is not None:
        from shared.storage.s3 import S3Storage  # aiobotocore is imported only by deployments that use it

        return S3Storage(settings.s3)
    return DirectoryStorage(settings.export_storage)
