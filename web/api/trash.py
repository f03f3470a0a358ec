"""The trash: GET /api/v1/trash and POST /api/v1/tasks/{id}/restore (rules in shared.trash)."""
from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields

from shared import tasks, trash
from web.api.tasks import TaskOutSchema
from web.auth import authenticate
from web.keys import CACHE, DB, SETTINGS
from web.openapi import api, ok
from web.request import load_json, load_query
from web.schemas import cursor_field, limit_field

TAGS = ("tasks",)
JSON_TYPE = "application/json; charset=utf-8"


class TrashItemSchema(Schema):
    task = fields.Nested(TaskOutSchema, required=True)
    trashed_at = fields.DateTime(required=True)
    subtask_count = fields.Integer(required=True, metadata={"description": "Subtasks deleted with it"})


class TrashPageSchema(Schema):
    items = fields.List(fields.Nested(TrashItemSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class TrashQuerySchema(Schema):
    limit = limit_field()
    cursor = cursor_field()


class RestoreSchema(Schema):
    """No fields: a body is optional, and anything in it is an unknown field (422)."""


QUERY, RESTORE = TrashQuerySchema(), RestoreSchema()


@api(tags=TAGS, auth="user", query=TrashQuerySchema, responses={200: ok("A page of the trash", TrashPageSchema)})
async def list_trash(request: web.Request) -> web.Response:
    """List the deleted tasks of your projects, newest first; each is purged 30 days after its delete."""
    auth = await authenticate(request)
    query = load_query(request, QUERY)
    body = await request.app[DB].read_as(auth.user_id, lambda conn: trash.list_trash(
        conn, user_id=auth.user_id, limit=query["limit"], cursor=query.get("cursor"),
        secret=request.app[SETTINGS].secret_key, task_json=tasks.TASK_JSON))
    return web.Response(status=200, text=body, headers={"Content-Type": JSON_TYPE})


@api(tags=TAGS, auth="user", body=RestoreSchema, body_required=False, errors=(403, 409),
     responses={200: ok("The restored task", TaskOutSchema, headers=("ETag",))})
async def restore_task(request: web.Request) -> web.Response:
    """Bring a task back from the trash with the subtasks deleted with it (editor).

    A task whose parent is still in the trash: 409 (restore the parent first).
    """
    auth = await authenticate(request)
    await load_json(request, RESTORE, required=False)
    async with request.app[DB].write.acquire() as conn:
        task_id, audience = await trash.restore_task(conn, task_id=int(request.match_info["id"]),
                                                     user_id=auth.user_id, is_admin=auth.is_admin)
        task = await tasks.get_task_for_user(conn, task_id=task_id, user_id=auth.user_id, is_admin=auth.is_admin)
    await request.app[CACHE].invalidate(*audience)
    return web.Response(status=200, text=task["body"], headers={"Content-Type": JSON_TYPE, "ETag": tasks.etag(task)})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/trash", list_trash, name="trash-list")
    app.router.add_post(r"/api/v1/tasks/{id:\d+}/restore", restore_task, name="task-restore")
