"""/api/v1/changes (the caller's change feed after a cursor) and the project and task activity pages.

shared.events decides what a feed page holds and in which order; shared.activity the activity pages.

Read from the primary, never a replica: the cursor's argument (docs/changes.md) rests on the snapshot
horizon of the server that answers, and a replica's snapshot lags the commits it has not replayed.
"""
from __future__ import annotations

import json

from aiohttp import web
from marshmallow import Schema, fields, validate

from shared import activity, events
from shared.observability.metrics import EVENTS_SERVED
from web.auth import authenticate
from web.keys import DB, SETTINGS
from web.openapi import api, ok
from web.request import load_query
from web.schemas import Text, cursor_field, limit_field

TAGS = ("changes",)
JSON_TYPE = "application/json; charset=utf-8"
MAX_LIMIT = 500


class ActorSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True, allow_none=True)


class EventOutSchema(Schema):
    id = fields.String(required=True, metadata={"description": "Opaque; also a cursor (`since`) right after it"})
    type = fields.String(required=True, validate=validate.OneOf(events.TYPES))
    project_id = fields.Integer(required=True)
    task_id = fields.Integer(required=True, allow_none=True)
    actor = fields.Nested(ActorSchema, required=True, allow_none=True)
    at = fields.DateTime(required=True)
    data = fields.Dict(required=True, metadata={"description": "The object after the change ({id} for a deletion)"})


class ChangesPageSchema(Schema):
    items = fields.List(fields.Nested(EventOutSchema), required=True)
    next_cursor = fields.String(required=True)


class ChangesQuerySchema(Schema):
    since = Text(load_default=None, validate=validate.Length(max=events.MAX_CURSOR),
                 metadata={"description": "A next_cursor or event id you were sent; without it: the cursor of now"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, MAX_LIMIT))


class ActivityPageSchema(Schema):
    items = fields.List(fields.Nested(EventOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class ActivityQuerySchema(Schema):
    limit = limit_field()
    cursor = cursor_field()


QUERY, ACTIVITY_QUERY = ChangesQuerySchema(), ActivityQuerySchema()


def _json(payload: object) -> web.Response:
    return web.Response(status=200, text=json.dumps(payload, separators=(",", ":")),
                        headers={"Content-Type": JSON_TYPE})


@api(tags=TAGS, auth="user", query=ChangesQuerySchema, errors=(410,),
     responses={200: ok("Your projects' events after `since`, oldest first", ChangesPageSchema)})
async def list_changes(request: web.Request) -> web.Response:
    """The events of your projects after a cursor, oldest first; walking it never skips or repeats one."""
    auth = await authenticate(request)
    query = load_query(request, QUERY)
    async with request.app[DB].write.acquire() as conn:
        items, cursor = await events.changes(conn, secret=request.app[SETTINGS].secret_key, user_id=auth.user_id,
                                             since=query["since"], limit=query["limit"])
    if items:  # what was sent reads back through any replica (the read rule in API.md)
        await request.app[DB].wrote(auth.user_id)
        EVENTS_SERVED.inc(len(items))
    body = '{"items":[' + ",".join(items) + '],"next_cursor":' + json.dumps(cursor) + "}"
    return web.Response(status=200, text=body, headers={"Content-Type": JSON_TYPE})


@api(tags=TAGS, auth="user", query=ActivityQuerySchema,
     responses={200: ok("A page of the project's events, newest first", ActivityPageSchema)})
async def project_activity(request: web.Request) -> web.Response:
    """A project's activity: who did what, newest first (viewer)."""
    auth = await authenticate(request)
    query = load_query(request, ACTIVITY_QUERY)
    items, cursor = await request.app[DB].read_as(auth.user_id, lambda conn: activity.project_activity(
        conn, project_id=int(request.match_info["id"]), user_id=auth.user_id, is_admin=auth.is_admin,
        limit=query["limit"], cursor=query.get("cursor"), secret=request.app[SETTINGS].secret_key))
    return _json({"items": items, "next_cursor": cursor})


@api(tags=TAGS, auth="user", query=ActivityQuerySchema,
     responses={200: ok("A page of the task's events (its comments and files too), newest first",
                        ActivityPageSchema)})
async def task_activity(request: web.Request) -> web.Response:
    """A task's activity, its comments and files included, newest first (viewer)."""
    auth = await authenticate(request)
    query = load_query(request, ACTIVITY_QUERY)
    items, cursor = await request.app[DB].read_as(auth.user_id, lambda conn: activity.task_activity(
        conn, task_id=int(request.match_info["id"]), user_id=auth.user_id, is_admin=auth.is_admin,
        limit=query["limit"], cursor=query.get("cursor"), secret=request.app[SETTINGS].secret_key))
    return _json({"items": items, "next_cursor": cursor})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/changes", list_changes, name="changes")
    app.router.add_get(r"/api/v1/projects/{id:\d+}/activity", project_activity, name="project-activity")
    app.router.add_get(r"/api/v1/tasks/{id:\d+}/activity", task_activity, name="task-activity")
