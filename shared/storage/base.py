"""The storage interface every backend implements: where finished export and report files live.

A file is written through ``create`` and appears at its key only once complete, so a reader never sees
half a file; backends: ``shared.storage.directory`` (a local or shared directory) and
``shared.storage.s3`` (any S3-compatible store). ``shared.storage.storage_from_settings`` picks one.
"""
from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, BinaryIO

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
