"""Attachments: streamed uploads and downloads (rules and SQL in shared.attachments).

An upload is read part by part from the socket (aiohttp's multipart reader) and written chunk by chunk
into ``Storage.create`` (a file in the directory backend, a multipart upload on S3): the process never
holds more than one chunk (one S3 part). The size limit and the quota are counted while streaming, so
an oversized body is refused at the first byte past the limit and ``create`` throws the partial file
away (on S3: the multipart upload is aborted). Only a complete, valid file gets its row.
"""
from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from marshmallow import Schema, fields

from shared import attachments
from shared.errors import BadRequest, Gone, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType, \
    ValidationFailed
from web.auth import authenticate
from web.keys import CACHE, DB, SETTINGS, STORAGE
from web.openapi import api, ok
from web.request import STREAMED_BODY_ROUTES

logger = logging.getLogger("app.web.attachments")

TAGS = ("attachments",)
JSON_TYPE = "application/json; charset=utf-8"
CHUNK = 256 * 1024
UPLOAD_ROUTE = "task-attachment-create"
# What a body cut off mid-stream, or a broken multipart framing, raises from aiohttp's reader.
BROKEN_BODY = (HttpProcessingError, ConnectionError, EOFError, ValueError, AssertionError)


class AttachmentSchema(Schema):
    id = fields.Integer(required=True)
    task_id = fields.Integer(required=True)
    filename = fields.String(required=True)
    content_type = fields.String(required=True)
    size_bytes = fields.Integer(required=True)
    uploaded_by = fields.Integer(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    download_url = fields.String(required=True)


class AttachmentListSchema(Schema):
    items = fields.List(fields.Nested(AttachmentSchema), required=True)


def _json(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body, headers={"Content-Type": JSON_TYPE})


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


def _too_large(limit: int, max_bytes: int, quota: int) -> PayloadTooLarge:
    if limit < max_bytes:
        return attachments.QuotaExceeded(quota)
    return PayloadTooLarge(f"A file may be at most {attachments.describe_size(max_bytes)} (ATTACHMENT_MAX_BYTES)")


@api(tags=TAGS, auth="user", upload=True, errors=(403,), responses={201: ok("The attachment", AttachmentSchema)})
async def upload_attachment(request: web.Request) -> web.Response:
    """Attach a file to a task (editor): `multipart/form-data` with one part named `file`.

    Up to ATTACHMENT_MAX_BYTES per file and ATTACHMENT_QUOTA_BYTES per user (413, nothing kept).
    """
    auth = await authenticate(request)
    return _json(201, await receive_upload(request, auth.user_id, auth.is_admin))


async def receive_upload(request: web.Request, user_id: int, is_admin: bool) -> str:
    """Stream the request's one `file` part into storage and record it; the attachment as JSON text.
    Also the page's upload form (web/pages/task_depth.py)."""
    settings, store, task_id = request.app[SETTINGS], request.app[STORAGE], _id(request)
    async with request.app[DB].write.acquire() as conn:
        room = await attachments.room_left(conn, task_id=task_id, user_id=user_id, is_admin=is_admin,
                                           quota=settings.attachment_quota_bytes)
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("Send the file as multipart/form-data with one part named 'file'")
    if request.content_length is not None and request.content_length > settings.attachment_max_bytes + 64 * 1024:
        raise _too_large(settings.attachment_max_bytes, settings.attachment_max_bytes, 0)
    limit = min(settings.attachment_max_bytes, room)
    key = attachments.new_key(task_id)
    filename, content_type, size = await _stream_to_storage(request, key, limit)
    try:
        async with request.app[DB].write.acquire() as conn:
            body, audience = await attachments.record(
                conn, task_id=task_id, user_id=user_id, is_admin=is_admin, filename=filename,
                content_type=content_type, size=size, key=key, quota=settings.attachment_quota_bytes)
    except BaseException:
        await store.delete(key)  # no row, no file
        raise
    await request.app[CACHE].invalidate(*audience)
    return body


async def _stream_to_storage(request: web.Request, key: str, limit: int) -> tuple[str, str, int]:
    """The one `file` part, written to ``key`` chunk by chunk: (filename, content type, size). On any
    error nothing is left at ``key`` (``Storage.create`` discards the partial file or aborts the upload)."""
    settings, store = request.app[SETTINGS], request.app[STORAGE]
    try:
        reader = await request.multipart()
        part = await reader.next()
        if not isinstance(part, BodyPartReader) or part.name != "file":
            raise ValidationFailed({"file": ["Send one part named 'file'."]})
        filename = attachments.clean_filename(part.filename)
        content_type = attachments.safe_content_type(part.headers.get("Content-Type"))
        async with store.create(key) as pending:
            size = 0
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, settings.attachment_max_bytes, settings.attachment_quota_bytes)
                await pending.write(chunk)
            if size == 0:
                raise ValidationFailed({"file": ["The file is empty."]})
            if await reader.next() is not None:
                raise ValidationFailed({"file": ["Send exactly one part, named 'file'."]})
    except LineTooLong:
        raise ValidationFailed({"file": [f"The part's headers are too long; a filename may have at most "
                                         f"{attachments.MAX_FILENAME} characters."]}) from None
    except BROKEN_BODY as exc:
        raise BadRequest("The upload was cut off or is not well-formed multipart/form-data") from exc
    except (ValidationFailed, PayloadTooLarge, BadRequest):
        raise
    except Exception as exc:  # the storage failed mid-way (create has aborted the partial file)
        logger.warning("attachment upload to storage failed", exc_info=True)
        raise ServiceUnavailable("The file store is unavailable; try again", headers={"Retry-After": "5"}) from exc
    return filename, content_type, size


@api(tags=TAGS, auth="user", responses={200: ok("The task's attachments", AttachmentListSchema)})
async def list_attachments(request: web.Request) -> web.Response:
    """List a task's attachments, oldest first (viewer)."""
    auth = await authenticate(request)
    items = await request.app[DB].read_as(auth.user_id, lambda conn: attachments.list_attachments(
        conn, task_id=_id(request), user_id=auth.user_id, is_admin=auth.is_admin))
    return _json(200, '{"items":[' + ",".join(items) + "]}")


def _disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback and the exact name in UTF-8 (filename*)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@api(tags=TAGS, auth="user", errors=(410,),
     responses={200: ok("The file, as an attachment", headers=("Content-Disposition",),
                        content={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})})
async def download_attachment(request: web.Request) -> web.StreamResponse:
    """Download an attachment's exact bytes (viewer); never shown inline. A file whose object is gone: 410."""
    auth = await authenticate(request)
    row = await request.app[DB].read_as(auth.user_id, lambda conn: attachments.get_attachment(
        conn, attachment_id=_id(request), user_id=auth.user_id, is_admin=auth.is_admin))
    store = request.app[STORAGE]
    headers = {"Content-Type": row["content_type"], "Content-Disposition": _disposition(row["filename"]),
               "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    download = await store.open_download(row["storage_key"])
    if download is None:
        raise Gone("The file of this attachment is no longer stored")
    try:
        response = web.StreamResponse(headers=headers)
        response.content_length = download.size
        await response.prepare(request)
        async for chunk in download.chunks:
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await download.close()


@api(tags=TAGS, auth="user", errors=(403,), responses={204: ok("Deleted")})
async def delete_attachment(request: web.Request) -> web.Response:
    """Delete an attachment: your own (editor), or any as a project admin. The file is removed by a job."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        audience = await attachments.delete_attachment(conn, attachment_id=_id(request), user_id=auth.user_id,
                                                       is_admin=auth.is_admin)
    await request.app[CACHE].invalidate(*audience)
    return web.Response(status=204)


def setup_routes(app: web.Application) -> None:
    STREAMED_BODY_ROUTES.add(UPLOAD_ROUTE)
    app.router.add_post(r"/api/v1/tasks/{id:\d+}/attachments", upload_attachment, name=UPLOAD_ROUTE)
    app.router.add_get(r"/api/v1/tasks/{id:\d+}/attachments", list_attachments, name="task-attachments")
    app.router.add_get(r"/api/v1/attachments/{id:\d+}/download", download_attachment, name="attachment-download")
    app.router.add_delete(r"/api/v1/attachments/{id:\d+}", delete_attachment, name="attachment-delete")
