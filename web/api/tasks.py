"""The task API: parse with marshmallow, call shared.tasks, send the JSON PostgreSQL already rendered."""
from __future__ import annotations

import functools
import json
import logging
import re
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Mapping

import asyncpg
from aiohttp import web
from marshmallow import Schema, ValidationError, fields, validate, validates

from shared import idempotency, tasks
from shared.errors import AppError
from shared.mail import outbox
from shared.security import AccessClaims
from web import ratelimit
from web.auth import authenticate
from web.keys import ARQ, CACHE, DB, REDIS_READ, SETTINGS
from web.openapi import api, ok
from web.request import load_json, load_query, load_query_pairs, read_json
from web.schemas import QueryBoolean, Text, cursor_field, limit_field

logger = logging.getLogger("app.web.tasks")

JSON_TYPE = "application/json; charset=utf-8"
TAGS = ("tasks",)
CREATE_SCOPE = "POST /api/v1/tasks"
# The list query a client sends with no parameters (owner_id may name yourself, or anyone for an admin).
DEFAULT_SORT = "-created_at"
DEFAULT_LIST_KEYS = frozenset({"sort", "limit", "owner_id"})


def _is_default_first_page(query: dict[str, Any]) -> bool:
    """The page every client opens first (the one cached): no filter, no cursor, the default sort."""
    return query["sort"] == DEFAULT_SORT and all(v is None for k, v in query.items() if k not in DEFAULT_LIST_KEYS)
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)?$")


class Rfc3339DateTime(fields.DateTime):
    """RFC 3339 with a mandatory offset, normalised to UTC. Naive times are refused, not guessed."""

    def __init__(self, *, query: bool = False, whole_seconds: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.query, self.whole_seconds = query, whole_seconds

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if self.query and isinstance(value, str):  # an unencoded '+' in a query string arrives as a space
            value = re.sub(r" (\d\d:\d\d)$", r"+\1", value)
        match = _RFC3339.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValidationError("Not a valid RFC 3339 date-time, e.g. 2026-11-22T18:30:00Z.")
        base, fraction, offset = match.groups()
        if offset is None:
            raise ValidationError("A UTC offset is required, e.g. 2026-11-22T18:30:00Z or +01:00.")
        offset = "+00:00" if offset in "Zz" else offset
        try:
            moment = datetime.fromisoformat(f"{base.upper()}.{(fraction or '')[:6]:0<6}{offset}")
            moment = moment.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            raise ValidationError("Not a valid RFC 3339 date-time, e.g. 2026-11-22T18:30:00Z.") from None
        return moment.replace(microsecond=0) if self.whole_seconds else moment


def _unique(values: list[str]) -> None:
    if len(set(values)) != len(values):
        raise ValidationError("Tags must be unique.")


def _tags(**kwargs: Any) -> fields.List:
    return fields.List(Text(trim=True, validate=validate.Length(1, 50)),
                       validate=[validate.Length(max=20), _unique], **kwargs)


# An empty title says what is missing, not a length range (the form's most common mistake).
TITLE = [validate.Length(min=1, error="A title is needed."), validate.Length(max=200)]
DESCRIPTION = validate.Length(max=10000)
ID = validate.Range(1, tasks.MAX_ID)


class AssigneeFilter(fields.Field):
    """``assignee_id`` in the list query: a user id, or ``me``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | str:
        if value == "me":
            return "me"
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValidationError("A user id, or 'me'.") from None
        if not 1 <= number <= tasks.MAX_ID:
            raise ValidationError("A user id, or 'me'.")
        return number


class ParentFilter(fields.Field):
    """``parent_id`` in the list query: a task id (its direct subtasks), or ``none`` (top-level tasks)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int | str:
        if value == "none":
            return "none"
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValidationError("A task id, or 'none'.") from None
        if not 1 <= number <= tasks.MAX_ID:
            raise ValidationError("A task id, or 'none'.")
        return number


STATUS, PRIORITY = validate.OneOf(tasks.STATUSES), validate.OneOf(tasks.PRIORITIES)
RECURRENCE = {"description": "An RRULE: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY with INTERVAL, BYDAY, BYMONTHDAY, "
                             "BYMONTH, COUNT (1..1000) or UNTIL, e.g. FREQ=WEEKLY;BYDAY=MO,TH; needs due_at"}


class TaskCreateSchema(Schema):
    title = Text(required=True, trim=True, validate=TITLE)
    description = Text(load_default="", validate=DESCRIPTION)
    status = fields.String(load_default="todo", validate=STATUS)
    priority = fields.String(load_default="medium", validate=PRIORITY)
    # Stored in whole seconds, the precision the API prints: what a client reads back is what it sent.
    due_at = Rfc3339DateTime(allow_none=True, load_default=None, whole_seconds=True)
    tags = _tags(load_default=list)
    project_id = fields.Integer(strict=True, validate=ID, metadata={"description": "Default: your Inbox"})
    assignee_id = fields.Integer(strict=True, allow_none=True, validate=ID, load_default=None,
                                 metadata={"description": "A member of the project"})
    parent_id = fields.Integer(strict=True, allow_none=True, validate=ID, load_default=None,
                               metadata={"description": "A task of the same project (at most 4 levels)"})
    recurrence = Text(allow_none=True, load_default=None, validate=validate.Length(1, 500), metadata=RECURRENCE)


class TaskUpdateSchema(Schema):
    """Only the fields sent change; no defaults (loaded with partial=True as well, to be sure)."""

    title = Text(trim=True, validate=TITLE)
    description = Text(validate=DESCRIPTION)
    status = fields.String(validate=STATUS)
    priority = fields.String(validate=PRIORITY)
    due_at = Rfc3339DateTime(allow_none=True, whole_seconds=True)
    tags = _tags()
    project_id = fields.Integer(strict=True, validate=ID,
                                metadata={"description": "Moves the task (editor on both projects)"})
    assignee_id = fields.Integer(strict=True, allow_none=True, validate=ID)
    parent_id = fields.Integer(strict=True, allow_none=True, validate=ID)
    recurrence = Text(allow_none=True, validate=validate.Length(1, 500), metadata=RECURRENCE)


class TaskOutSchema(Schema):
    """Documents shared.tasks.TASK_JSON, which renders the task (a test keeps the two in step)."""

    id = fields.Integer(required=True)
    owner_id = fields.Integer(required=True, metadata={"description": "The task's creator"})
    project_id = fields.Integer(required=True)
    assignee_id = fields.Integer(required=True, allow_none=True)
    parent_id = fields.Integer(required=True, allow_none=True)
    title = fields.String(required=True)
    description = fields.String(required=True)
    status = fields.String(required=True, validate=STATUS)
    priority = fields.String(required=True, validate=PRIORITY)
    due_at = fields.DateTime(required=True, allow_none=True)
    recurrence = fields.String(required=True, allow_none=True)
    tags = fields.List(fields.String(), required=True)
    comment_count = fields.Integer(required=True)
    attachment_count = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    completed_at = fields.DateTime(required=True, allow_none=True)


class TaskPageSchema(Schema):
    items = fields.List(fields.Nested(TaskOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class TaskStatsSchema(Schema):
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    by_priority = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    overdue = fields.Integer(required=True)
    completed_last_7_days = fields.Integer(required=True)


class TaskOwnerQuerySchema(Schema):
    owner_id = fields.Integer(validate=validate.Range(1, tasks.MAX_ID),
                              metadata={"description": "Admins only (or your own id)"})


class TaskFilterSchema(Schema):
    """The list filters; export requests take the same names."""

    status = fields.List(fields.String(validate=STATUS))
    priority = fields.List(fields.String(validate=PRIORITY))
    tag = Text(validate=validate.Length(1, 50))
    q = Text(validate=validate.Length(max=200),
             metadata={"description": "Words that must all occur in title or description (case-insensitive)"})
    due_before = Rfc3339DateTime(query=True)
    due_after = Rfc3339DateTime(query=True)
    overdue = QueryBoolean()
    project_id = fields.Integer(validate=ID)
    assignee_id = AssigneeFilter(metadata={"description": "A user id, or `me`"})
    parent_id = ParentFilter(metadata={"description": "A task id (its direct subtasks), or `none` (top-level)"})

    @validates("q")
    def _few_words(self, value: str, **kwargs: Any) -> None:
        if len(value.split()) > tasks.MAX_SEARCH_WORDS:
            raise ValidationError(f"At most {tasks.MAX_SEARCH_WORDS} words.")


class TaskListQuerySchema(TaskFilterSchema, TaskOwnerQuerySchema):
    sort = fields.String(load_default="-created_at", validate=validate.OneOf(tasks.SORTS))
    limit = limit_field()
    cursor = cursor_field()


# Built once: a marshmallow schema costs ~0.1 ms to instantiate (it deep-copies its fields), and loading
# keeps no state on the instance, so one of each serves every request.
CREATE_SCHEMA, UPDATE_SCHEMA = TaskCreateSchema(), TaskUpdateSchema(partial=True)
LIST_QUERY_SCHEMA, OWNER_QUERY_SCHEMA = TaskListQuerySchema(), TaskOwnerQuerySchema()


@functools.lru_cache(maxsize=256)
def _list_query(pairs: tuple[tuple[str, str], ...]) -> Mapping[str, Any]:
    """The list's query string validated once per distinct string (~40 us each time otherwise): clients send
    the same few again and again. Read-only, since every request shares it; LIST_QUERY_SCHEMA has no
    time-dependent default, so the same string always loads the same. Errors are not cached."""
    return MappingProxyType(load_query_pairs(LIST_QUERY_SCHEMA, pairs))


def _json(status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=body, headers={"Content-Type": JSON_TYPE, **(headers or {})})


def _task_response(task: asyncpg.Record, status: int = 200, **headers: str) -> web.Response:
    return _json(status, task["body"], {"ETag": tasks.etag(task), **headers})


def _task_id(request: web.Request) -> int:
    return int(request.match_info["id"])


@api(tags=TAGS, auth="user", body=TaskCreateSchema, idempotent=True, errors=(403, 404),
     responses={201: ok("The task", TaskOutSchema, headers=("Location", "ETag"))})
async def create_task(request: web.Request) -> web.Response:
    """Create a task.

    With an Idempotency-Key, a retry with the same body within 24 h replays the first response.
    """
    auth = await authenticate(request)
    data = await load_json(request, CREATE_SCHEMA)
    key = idempotency.parse_key(request.headers.get("Idempotency-Key"))

    written: list[tasks.Written] = []

    async def create(conn: asyncpg.Connection) -> idempotency.StoredResponse:
        result = await tasks.create_task(conn, owner_id=auth.user_id, data=data, is_admin=auth.is_admin)
        written.append(result)
        location = str(request.app.router["task-detail"].url_for(id=str(result.task["id"])))
        return idempotency.StoredResponse(201, {"Content-Type": JSON_TYPE, "Location": location,
                                                "ETag": tasks.etag(result.task)}, result.task["body"])

    body = await read_json(request) if key else None
    async with request.app[DB].write.acquire() as conn:
        if key is None and data["assignee_id"] is None:  # one INSERT is atomic by itself: no BEGIN/COMMIT
            stored = await create(conn)
        else:  # the assignment mail commits with the task
            stored = await idempotency.run_once(conn, user_id=auth.user_id, scope=CREATE_SCOPE, key=key,
                                                request_body=body, action=create)
        if stored.replayed:  # the first answer, but only while the caller may still see that task
            await tasks.get_task_for_user(conn, task_id=json.loads(stored.body)["id"], user_id=auth.user_id,
                                          is_admin=auth.is_admin)
    if written:
        await request.app[CACHE].invalidate(*written[0].audience)
        await outbox.dispatch(request.app[ARQ], written[0].mails)
    return web.Response(status=stored.status, text=stored.body, headers=stored.response_headers())


@api(tags=TAGS, auth="user", query=TaskListQuerySchema, errors=(403,),
     responses={200: ok("A page of tasks", TaskPageSchema)})
async def list_tasks(request: web.Request) -> web.Response:
    """List the tasks of every project you are a member of, one keyset page at a time.

    `owner_id` other than your own needs the admin role (403): then that user's projects.
    """
    auth = await authenticate(request)
    query = _list_query(tuple(request.query.items()))
    owner_id = tasks.resolve_owner(user_id=auth.user_id, is_admin=auth.is_admin, requested=query.get("owner_id"))

    async def page(conn: asyncpg.Connection) -> str:
        items, cursor = await tasks.list_tasks(conn, owner_id=owner_id, sort=query["sort"], limit=query["limit"],
                                               filters=tasks.TaskFilters.from_mapping(query),
                                               cursor=query.get("cursor"), secret=request.app[SETTINGS].secret_key)
        return '{"items":[' + ",".join(items) + '],"next_cursor":' + json.dumps(cursor) + "}"

    async def fill() -> tuple[str, None]:
        async with request.app[DB].write.acquire() as conn:  # cache fills read the primary (shared/cache.py)
            return await page(conn), None

    if _is_default_first_page(query):
        body = await request.app[CACHE].get(owner_id, "task_list", fill, variant=str(query["limit"]),
                                            early=request.get(REDIS_READ))
    else:
        body = await request.app[DB].read_as(auth.user_id, page)
    return _json(200, body)


def _own_first_page_keys(request: web.Request, claims: AccessClaims) -> tuple[str, ...]:
    """The cache keys of the caller's own first page, for the rate limiter's round trip (web/ratelimit.py)."""
    try:
        query = _list_query(tuple(request.query.items()))
    except AppError:  # bad query: the handler answers the 4xx itself
        return ()
    if query.get("owner_id") is not None or not _is_default_first_page(query):
        return ()
    return request.app[CACHE].keys(claims.user_id, "task_list", str(query["limit"]))


@api(tags=TAGS, auth="user", query=TaskOwnerQuerySchema, errors=(403,),
     responses={200: ok("Counts", TaskStatsSchema)})
async def task_stats(request: web.Request) -> web.Response:
    """Count the tasks of the caller's projects (or, for an admin, `owner_id`'s)."""
    auth = await authenticate(request)
    query = load_query(request, OWNER_QUERY_SCHEMA)
    owner_id = tasks.resolve_owner(user_id=auth.user_id, is_admin=auth.is_admin, requested=query.get("owner_id"))

    async def fill() -> tuple[str, float | None]:
        async with request.app[DB].write.acquire() as conn:  # cache fills read the primary (shared/cache.py)
            stats, changes_in = await tasks.task_stats(conn, owner_id=owner_id)
        return json.dumps(stats, separators=(",", ":")), changes_in

    return _json(200, await request.app[CACHE].get(owner_id, "task_stats", fill))


@api(tags=TAGS, auth="user", conditional="read",
     responses={200: ok("The task", TaskOutSchema, headers=("ETag",))})
async def get_task(request: web.Request) -> web.Response:
    """Get a task."""
    auth = await authenticate(request)
    task = await request.app[DB].read_as(auth.user_id, lambda conn: tasks.get_task_for_user(
        conn, task_id=_task_id(request), user_id=auth.user_id, is_admin=auth.is_admin))
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and tasks.etag_matches(if_none_match, tasks.etag(task), weak=True):
        return web.Response(status=304, headers={"ETag": tasks.etag(task)})
    return _task_response(task)


@api(tags=TAGS, auth="user", body=TaskUpdateSchema, conditional="write", errors=(403,),
     responses={200: ok("The updated task", TaskOutSchema, headers=("ETag",))})
async def update_task(request: web.Request) -> web.Response:
    """Change some fields of a task (only those sent)."""
    auth = await authenticate(request)
    changes = await load_json(request, UPDATE_SCHEMA)
    async with request.app[DB].write.acquire() as conn:
        result = await tasks.update_task(conn, task_id=_task_id(request), user_id=auth.user_id,
                                         is_admin=auth.is_admin, changes=changes,
                                         if_match=request.headers.get("If-Match"))
    await request.app[CACHE].invalidate(*result.audience)
    await outbox.dispatch(request.app[ARQ], result.mails)
    return _task_response(result.task)


@api(tags=TAGS, auth="user", conditional="write", errors=(403,), responses={204: ok("Deleted")})
async def delete_task(request: web.Request) -> web.Response:
    """Move a task and its subtasks to the trash (restore with POST /api/v1/tasks/{id}/restore)."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        result = await tasks.delete_task(conn, task_id=_task_id(request), user_id=auth.user_id,
                                         is_admin=auth.is_admin, if_match=request.headers.get("If-Match"))
    await request.app[CACHE].invalidate(*result.audience)
    return web.Response(status=204)


def setup_routes(app: web.Application) -> None:
    # One name per route: the OpenAPI document uses them as operationIds, which must be unique.
    app.router.add_post("/api/v1/tasks", create_task, name="tasks-create")
    app.router.add_get("/api/v1/tasks", list_tasks, name="tasks-list")
    ratelimit.EARLY_READS["tasks-list"] = _own_first_page_keys
    app.router.add_get("/api/v1/tasks/stats", task_stats, name="task-stats")
    app.router.add_get(r"/api/v1/tasks/{id:\d+}", get_task, name="task-detail")
    app.router.add_patch(r"/api/v1/tasks/{id:\d+}", update_task, name="task-update")
    app.router.add_delete(r"/api/v1/tasks/{id:\d+}", delete_task, name="task-delete")
