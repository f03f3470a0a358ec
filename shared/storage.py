"""Where finished export and report files live, behind a small interface.

Two backends:

- ``DirectoryStorage`` (``EXPORT_STORAGE=/some/dir``, default ``./var/exports``): web and worker must see
  the same directory (one host, or a shared volume). A file is written under a temporary name and
  renamed to its key only once it is complete, so a reader never sees half a file, and a worker killed
  mid-write leaves only a ``.part`` file that the next attempt (or the cleanup cron) deletes.
- ``S3Storage`` (``EXPORT_STORAGE=s3://bucket/prefix``, shared/storage_s3.py): a multipart upload streamed
  part by part; the object exists only once the upload is completed (docs/exports.md).
"""
from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, BinaryIO

from shared.config import Settings

PARTIAL_SUFFIX = ".part"
CHUNK_SIZE = 256 * 1024
# Keys are made by our code, never by users; still, refuse anything that could leave the root.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


def validate_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid storage key {key!r}")
    return key


class PendingFile:
    """A file being written. ``file`` is a real binary file: a thread may write to it directly (PDFs)."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.size: int | None = None  # known after the commit

    async def write(self, data: bytes) -> None:
        """Write from the event loop without blocking it on disk I/O."""
        await asyncio.to_thread(self.file.write, data)


class StorageError(Exception):
    """The storage cannot be used as configured (no such bucket, credentials refused, unreachable)."""


@dataclass
class Download:
    """An open stored file: its size, and its bytes to be read once (then ``close``)."""

    size: int
    chunks: AsyncIterator[bytes]

    async def close(self) -> None:
        await self.chunks.aclose()  # type: ignore[attr-defined]


class Storage(ABC):
    async def check(self) -> None:
        """Raise StorageError unless files can be stored; at start-up and on every /ready."""

    async def close(self) -> None:
        """Release connections (the S3 client); the storage may not be used afterwards."""

    async def open_download(self, key: str) -> Download | None:
        """The file at ``key`` for streaming to a client, None when there is no such file."""
        size = await self.size(key)
        return None if size is None else Download(size, self.chunks(key))

    @abstractmethod
    def create(self, key: str) -> AbstractAsyncContextManager[PendingFile]:
        """``async with storage.create(key) as pending:`` write, and on a clean exit the file appears at ``key``.

        On an exception the partial file is deleted and nothing appears. Writing the same key twice
        replaces the first file (one job, one file, however often it runs).
        """

    @abstractmethod
    async def size(self, key: str) -> int | None:
        """The stored file's size in bytes, None when there is no such file."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the file; a missing file is not an error (cleanup may run twice)."""

    @abstractmethod
    async def discard_partials(self, prefix: str, *, older_than: float = 0.0) -> int:
        """Delete unfinished writes under ``prefix`` at least ``older_than`` seconds old; return how many."""

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """A path the web tier may send with sendfile, or None for remote backends."""

    @abstractmethod
    def chunks(self, key: str) -> AsyncIterator[bytes]:
        """The file's bytes, for backends without a local path."""


class DirectoryStorage(Storage):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    async def check(self) -> None:
        def writable() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(f"{self.root} is not writable")
        try:
            await asyncio.to_thread(writable)
        except OSError as exc:
            raise StorageError(f"export directory {self.root}: {exc}") from exc

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    @asynccontextmanager
    async def create(self, key: str) -> AsyncIterator[PendingFile]:  # type: ignore[override]
        final = self._path(key)
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        # Same directory as the final name: os.replace is atomic only within one file system.
        temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}{PARTIAL_SUFFIX}")
        file = await asyncio.to_thread(open, temp, "xb")
        pending = PendingFile(file)
        try:
            yield pending
            pending.size = await asyncio.to_thread(_commit, file, temp, final)
        except BaseException:
            _abandon(file, temp)  # two quick syscalls: fine even on the loop, and safe under cancellation
            raise

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def discard_partials(self, prefix: str, *, older_than: float = 0.0) -> int:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        return await asyncio.to_thread(_discard_partials, base, time.time() - older_than)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def chunks(self, key: str) -> AsyncIterator[bytes]:  # type: ignore[override]
        with await asyncio.to_thread(open, self._path(key), "rb") as file:
            while chunk := await asyncio.to_thread(file.read, CHUNK_SIZE):
                yield chunk


def _commit(file: BinaryIO, temp: Path, final: Path) -> int:
    file.flush()
    os.fsync(file.fileno())  # the data is on disk before the name points at it (crash-safe rename)
    file.close()
    os.replace(temp, final)
    return final.stat().st_size


def _abandon(file: BinaryIO, temp: Path) -> None:
    try:
        file.close()
    finally:
        temp.unlink(missing_ok=True)


def _discard_partials(base: Path, cutoff: float) -> int:
    if not base.is_dir():
        return 0
    removed = 0
    for path in base.rglob(f"*{PARTIAL_SUFFIX}"):
        try:
            if path.stat().st_mtime <= cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another cleaner got there first
            continue
    return removed


def storage_from_settings(settings: Settings) -> Storage:
    """The backend ``EXPORT_STORAGE`` names. No I/O: connections are opened on first use; ``check`` verifies."""
    if settings.s3 is not None:
        from shared.storage_s3 import S3Storage  # aiobotocore is imported only by deployments that use it

        return S3Storage(settings.s3)
    return DirectoryStorage(settings.export_storage)
