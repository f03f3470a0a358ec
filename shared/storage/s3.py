"""S3-compatible export storage (AWS, MinIO, R2, Ceph...) through aiobotocore, which runs on aiohttp.

Writing is a multipart upload fed part by part while the job produces bytes, so a worker holds at
most one part in memory (PART_SIZE) whatever the file's size; files smaller than one part are one
PUT. S3 shows an object only once ``CompleteMultipartUpload`` (or the PUT) succeeds, which is the
"appears only when complete" rule; on any failure the upload is aborted. A worker killed mid-upload
leaves an unfinished multipart upload: the next attempt of the job and the cleanup cron abort those
(``discard_partials``), and a bucket lifecycle rule (AbortIncompleteMultipartUpload) is a good
backstop in production.

Jobs write through ``PendingFile.file`` from a thread (CSV batches, the PDF renderer), so the writer
is a plain file object whose ``write`` hands full parts to the event loop and waits for the upload.
"""
from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from shared.config import S3Config
from shared.storage.base import CHUNK_SIZE, Download, PendingFile, Storage, StorageError, validate_key

logger = logging.getLogger("app.storage")

PART_SIZE = 8 * 1024 * 1024  # S3's minimum is 5 MiB for every part but the last
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
            "ExpiredToken"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage(Storage):
    def __init__(self, config: S3Config, *, part_size: int | None = None) -> None:
        self.config = config
        self.bucket = config.bucket
        self.part_size = part_size or PART_SIZE
        self._client: Any = None
        self._context: Any = None
        self._lock = asyncio.Lock()

    def _object(self, key: str) -> str:
        validate_key(key)
        return f"{self.config.prefix}/{key}" if self.config.prefix else key

    async def client(self) -> Any:
        """The one aiobotocore client of this process, made on first use (it keeps a connection pool)."""
        async with self._lock:
            if self._client is None:
                config = AioConfig(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                                   s3={"addressing_style": "path"} if self.config.endpoint_url else None)
                context = get_session().create_client(
                    "s3", region_name=self.config.region, endpoint_url=self.config.endpoint_url,
                    aws_access_key_id=self.config.access_key_id,
                    aws_secret_access_key=self.config.secret_access_key, config=config)
                self._client = await context.__aenter__()
                self._context = context
            return self._client

    async def close(self) -> None:
        context, self._context, self._client = self._context, None, None
        if context is not None:
            await context.__aexit__(None, None, None)

    def describe(self) -> str:
        where = self.config.endpoint_url or f"AWS {self.config.region}"
        return f"s3://{self.bucket}/{self.config.prefix} at {where}"

    async def check(self) -> None:
        try:
            await (await self.client()).head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING:
                raise StorageError(f"bucket {self.bucket!r} does not exist ({self.describe()})") from exc
            if code in _REFUSED:
                raise StorageError(f"{self.describe()} refused the credentials (AWS_ACCESS_KEY_ID / "
                                   f"AWS_SECRET_ACCESS_KEY): {code}") from exc
            raise StorageError(f"{self.describe()} answered {code or exc}") from exc
        except BotoCoreError as exc:  # no route, no credentials at all, timeouts
            raise StorageError(f"{self.describe()} is unusable: {exc}") from exc

    @asynccontextmanager
    async def create(self, key: str) -> AsyncIterator[PendingFile]:  # type: ignore[override]
        upload = _Upload(await self.client(), self.bucket, self._object(key), self.part_size,
                         asyncio.get_running_loop())
        pending = PendingFile(upload)  # type: ignore[arg-type]
        try:
            yield pending
            pending.size = await upload.complete()
        except BaseException:
            await upload.abort()
            raise

    async def size(self, key: str) -> int | None:
        try:
            head = await (await self.client()).head_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        await (await self.client()).delete_object(Bucket=self.bucket, Key=self._object(key))  # absent: fine

    async def discard_partials(self, prefix: str, *, older_than: float = 0.0) -> int:
        client, cutoff = await self.client(), time.time() - older_than
        removed = 0
        under = self._object(prefix.strip("/")) + "/" if prefix.strip("/") else (
            f"{self.config.prefix}/" if self.config.prefix else "")
        paginator = client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=under):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() > cutoff:
                    continue
                try:
                    await client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                        UploadId=upload["UploadId"])
                    removed += 1
                except ClientError as exc:
                    if _code(exc) != "NoSuchUpload":  # another cleaner got there first
                        raise
        return removed

    def local_path(self, key: str) -> None:
        return None

    async def open_download(self, key: str) -> Download | None:
        try:
            response = await (await self.client()).get_object(Bucket=self.bucket, Key=self._object(key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        return Download(int(response["ContentLength"]), _read_body(response["Body"]))

    async def chunks(self, key: str) -> AsyncIterator[bytes]:  # type: ignore[override]
        download = await self.open_download(key)
        if download is None:
            raise FileNotFoundError(key)
        async for chunk in download.chunks:
            yield chunk


async def _read_body(body: Any) -> AsyncIterator[bytes]:
    try:
        async for chunk in body.iter_chunks(CHUNK_SIZE):
            yield chunk
    finally:
        body.close()  # a client that went away mid-download must not leave the connection checked out


class _Upload(io.RawIOBase):
    """A write-only file that uploads each full part; ``complete``/``abort`` end it on the event loop.

    ``write`` may run in a worker thread (the normal case) or on the loop itself; only the former may
    wait for an upload, so bytes written on the loop stay buffered until the next threaded write or
    ``complete``.
    """

    def __init__(self, client: Any, bucket: str, key: str, part_size: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.client, self.bucket, self.key, self.part_size, self.loop = client, bucket, key, part_size, loop
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.written = 0
        self._loop_thread = threading.get_ident()

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.written

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.buffer += data
        self.written += len(data)
        if len(self.buffer) >= self.part_size and threading.get_ident() != self._loop_thread:
            asyncio.run_coroutine_threadsafe(self._send_full_parts(), self.loop).result()
        return len(data)

    async def _send_full_parts(self) -> None:
        while len(self.buffer) >= self.part_size:
            # One copy of the part, through a view (slicing the bytearray would make a second), taken out
            # of the buffer before it is sent; the buffer keeps its allocation for the next part.
            with memoryview(self.buffer) as view:
                body = bytes(view[:self.part_size])
            del self.buffer[:self.part_size]
            await self._send_part(body)

    async def _send_part(self, body: bytes) -> None:
        if self.upload_id is None:
            created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        part = await self.client.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                             PartNumber=number, Body=body)
        self.parts.append({"PartNumber": number, "ETag": part["ETag"]})

    async def complete(self) -> int:
        await self._send_full_parts()
        if self.upload_id is None:  # smaller than one part: a single PUT is just as atomic
            await self.client.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
        else:
            if self.buffer or not self.parts:
                await self._send_part(bytes(self.buffer))
            await self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                                        MultipartUpload={"Parts": self.parts})
        self.buffer.clear()
        return self.written

    async def abort(self) -> None:
        self.buffer.clear()
        if self.upload_id is None:
            return
        try:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception:  # noqa: BLE001 - the cleanup cron aborts what is left
            logger.warning("could not abort the upload of %s; the cleanup cron will", self.key, exc_info=True)
