"""/api/v1/exports: request a CSV or PDF export of your tasks, poll it, download it (the worker does the work)."""
from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from marshmallow import Schema, fields, pre_load, validate

from shared import exports, idempotency, tasks
from shared.errors import Gone
from shared.task_export import DEFAULT_SORT, filters_to_params
from web.auth import AuthContext, authenticate
from web.keys import ARQ, DB, SETTINGS, STORAGE
from web.openapi import api, ok
from web.request import dumps, json_response, load_json, load_query, read_json
from web.schemas import JsonBoolean, cursor_field, limit_field
from web.api.tasks import TaskFilterSchema

JSON_TYPE = "application/json; charset=utf-8"
CREATE_SCOPE = "POST /api/v1/exports"
EXPORT_KINDS = (exports.EXPORT,)
TAGS = ("exports",)
_BINARY = {"schema": {"type": "string", "format": "binary"}}
FILE_ATTACHMENT = ok("The file, as an attachment", headers=("Content-Disposition",),
                     content={"text/csv": _BINARY, "application/pdf": _BINARY})


class ExportFiltersSchema(TaskFilterSchema):
    """The task list's filters and sort, as a JSON object; `status` and `priority` take a list or one value."""

    sort = fields.String(load_default=DEFAULT_SORT, validate=validate.OneOf(tasks.SORTS))
    overdue = JsonBoolean()

    @pre_load
    def _one_or_many(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            return {k: [v] if k in ("status", "priority") and isinstance(v, str) else v for k, v in data.items()}
        return data


class ExportCreateSchema(Schema):
    format = fields.String(required=True, validate=validate.OneOf(exports.FORMATS))
    filters = fields.Nested(ExportFiltersSchema, load_default=lambda: {"sort": DEFAULT_SORT})


class JobOutSchema(Schema):
    """Documents shared.exports.job_out."""

    id = fields.Integer(required=True)
    kind = fields.String(required=True, validate=validate.OneOf((exports.EXPORT, *exports.REPORT_KINDS)))
    format = fields.String(required=True, validate=validate.OneOf(exports.FORMATS))
    status = fields.String(required=True, validate=validate.OneOf(exports.STATUSES))
    progress = fields.Float(required=True, validate=validate.Range(0, 1))
    row_count = fields.Integer(required=True, allow_none=True)
    size_bytes = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    finished_at = fields.DateTime(required=True, allow_none=True)
    expires_at = fields.DateTime(required=True, allow_none=True)
    download_url = fields.String(required=True, allow_none=True,
                                 metadata={"description": "Set once the file can be downloaded"})


class JobPageSchema(Schema):
    items = fields.List(fields.Nested(JobOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


JOB_QUEUED = ok("The job, queued", JobOutSchema, headers=("Location",))


class JobListQuerySchema(Schema):
    limit = limit_field()
    cursor = cursor_field()


async def create_job_response(request: web.Request, auth: AuthContext, *, scope: str, kind: str, format: str,
                              params: dict[str, Any]) -> web.Response:
    """Insert the job (honouring Idempotency-Key) and answer 202 + Location; enqueue only after the commit."""
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    created: list[asyncpg.Record] = []

    async def create(conn: asyncpg.Connection) -> idempotency.StoredResponse:
        job = await exports.create_job(conn, owner_id=auth.user_id, kind=kind, format=format, params=params,
                                       max_active=request.app[SETTINGS].max_active_jobs)
        created.append(job)
        return idempotency.StoredResponse(202, {"Content-Type": JSON_TYPE, "Location": exports.resource_path(job)},
                                          dumps(exports.job_out(job)))

    body = await read_json(request) if key else None
    async with request.app[DB].write.acquire() as conn:
        stored = await idempotency.run_once(conn, user_id=auth.user_id, scope=scope, key=key, request_body=body,
                                            action=create)
    if created:  # not on a replay: that job was enqueued by the first request (or the sweeper)
        await exports.enqueue(request.app[ARQ], created[0])
    return web.Response(status=stored.status, text=stored.body, headers=stored.response_headers())


def job_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def visible_job(request: web.Request, kinds: tuple[str, ...]) -> asyncpg.Record:
    """The job in the URL if it is of ``kinds`` and the caller may see it (owner or admin), else 404.

    Primary: it was just created."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        return await exports.get_job_for_user(conn, job_id=job_id(request), user_id=auth.user_id,
                                              is_admin=auth.is_admin, kinds=kinds)


async def file_response(request: web.Request, job: asyncpg.Record) -> web.StreamResponse:
    """The job's file as an attachment: 409 while not ready, 410 once expired (or already cleaned up).

    A directory backend is sent with sendfile; S3 is streamed through this process chunk by chunk
    (constant memory), not redirected to a presigned URL: docs/exports.md says why.
    """
    key = exports.check_downloadable(job)
    storage = request.app[STORAGE]
    headers = {
        "Content-Type": exports.media_type(job), "Cache-Control": "private, no-store",
        "Content-Disposition": f'attachment; filename="{exports.download_name(job)}"',
        "X-Content-Type-Options": "nosniff",
    }
    path = storage.local_path(key)
    if path is not None:
        if await storage.size(key) is None:
            raise Gone("The file is no longer available; request a new one")
        return web.FileResponse(path, headers=headers)
    download = await storage.open_download(key)
    if download is None:
        raise Gone("The file is no longer available; request a new one")
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


@api(tags=TAGS, auth="user", body=ExportCreateSchema, idempotent=True, responses={202: JOB_QUEUED})
async def create_export(request: web.Request) -> web.Response:
    """Request an export of your tasks.

    Every task matching `filters` (the task list's names and semantics, plus `sort`), one row each,
    as CSV (UTF-8, header row) or as a PDF table. The worker pool builds the file; poll the job at
    `Location`, download it from `download_url`, and expect an email when it is ready. With an
    Idempotency-Key, a retry with the same body within 24 h replays the first response.
    """
    auth = await authenticate(request)
    data = await load_json(request, ExportCreateSchema())
    return await create_job_response(request, auth, scope=CREATE_SCOPE, kind=exports.EXPORT, format=data["format"],
                                     params=filters_to_params(data["filters"]))


@api(tags=TAGS, auth="user", query=JobListQuerySchema, responses={200: ok("A page of jobs", JobPageSchema)})
async def list_exports(request: web.Request) -> web.Response:
    """Your jobs (exports and reports), newest first."""
    auth = await authenticate(request)
    query = load_query(request, JobListQuerySchema())
    async with request.app[DB].write.acquire() as conn:
        items, cursor = await exports.list_jobs(conn, owner_id=auth.user_id, limit=query["limit"],
                                                cursor=query["cursor"], secret=request.app[SETTINGS].secret_key)
    return json_response({"items": [exports.job_out(job) for job in items], "next_cursor": cursor})


@api(tags=TAGS, auth="user", responses={200: ok("The job", JobOutSchema)})
async def get_export(request: web.Request) -> web.Response:
    """One export job: status, progress and, once ready, its download_url."""
    return json_response(exports.job_out(await visible_job(request, EXPORT_KINDS)))


@api(tags=TAGS, auth="user", errors=(409, 410), responses={200: FILE_ATTACHMENT})
async def download_export(request: web.Request) -> web.StreamResponse:
    """Download the export's file: 409 while it is not ready, 410 once expired."""
    return await file_response(request, await visible_job(request, EXPORT_KINDS))


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/exports", create_export, name="exports-create")
    app.router.add_get("/api/v1/exports", list_exports, name="exports-list")
    app.router.add_get(r"/api/v1/exports/{id:\d{1,19}}", get_export, name="export-detail")
    app.router.add_get(r"/api/v1/exports/{id:\d{1,19}}/download", download_export, name="export-download")
