"""``DirectoryStorage`` (``EXPORT_STORAGE=/some/dir``, default ``./var/exports``): web and worker must see
the same directory (one host, or a shared volume). A file is written under a temporary name and renamed to
its key only once it is complete, so a reader never sees half a file, and a worker killed mid-write leaves
only a ``.part`` file that the next attempt (or the cleanup cron) deletes.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, BinaryIO

from shared.storage.base import CHUNK_SIZE, PARTIAL_SUFFIX, PendingFile, Storage, StorageError, validate_key


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
