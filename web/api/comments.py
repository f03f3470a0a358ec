"""Comments on tasks: /api/v1/tasks/{id}/comments and /api/v1/comments/{id} (rights in shared.comments)."""
from __future__ import annotations

import json

from aiohttp import web
from marshmallow import Schema, fields, validate

from shared import comments
from shared.mail import outbox
from web.auth import authenticate
from web.keys import ARQ, CACHE, DB, SETTINGS
from web.openapi import api, ok
from web.request import load_json, load_query
from web.schemas import Text, cursor_field, limit_field

TAGS = ("comments",)
JSON_TYPE = "application/json; charset=utf-8"
BODY = validate.Length(1, 10000)


class CommentInSchema(Schema):
    body = Text(required=True, validate=BODY, metadata={"description": "Plain text"})


class CommentAuthorSchema(Schema):
    id = fields.Integer(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True)


class CommentOutSchema(Schema):
    id = fields.Integer(required=True)
    task_id = fields.Integer(required=True)
    author = fields.Nested(CommentAuthorSchema, required=True)
    body = fields.String(required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class CommentPageSchema(Schema):
    items = fields.List(fields.Nested(CommentOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class CommentQuerySchema(Schema):
    limit = limit_field()
    cursor = cursor_field()


BODY_SCHEMA, QUERY = CommentInSchema(), CommentQuerySchema()


def _json(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body, headers={"Content-Type": JSON_TYPE})


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


@api(tags=TAGS, auth="user", query=CommentQuerySchema, responses={200: ok("A page of comments", CommentPageSchema)})
async def list_comments(request: web.Request) -> web.Response:
    """List a task's comments, oldest first (viewer)."""
    auth = await authenticate(request)
    query = load_query(request, QUERY)
    items, cursor = await request.app[DB].read_as(auth.user_id, lambda conn: comments.list_comments(
        conn, task_id=_id(request), user_id=auth.user_id, is_admin=auth.is_admin, limit=query["limit"],
        cursor=query.get("cursor"), secret=request.app[SETTINGS].secret_key))
    return _json(200, '{"items":[' + ",".join(items) + '],"next_cursor":' + json.dumps(cursor) + "}")


@api(tags=TAGS, auth="user", body=CommentInSchema, errors=(403,), responses={201: ok("The comment", CommentOutSchema)})
async def create_comment(request: web.Request) -> web.Response:
    """Comment on a task (editor). The task's assignee is emailed."""
    auth = await authenticate(request)
    data = await load_json(request, BODY_SCHEMA)
    async with request.app[DB].write.acquire() as conn:
        result = await comments.create_comment(conn, task_id=_id(request), user_id=auth.user_id,
                                               is_admin=auth.is_admin, body=data["body"])
    await request.app[CACHE].invalidate(*result.audience)
    await outbox.dispatch(request.app[ARQ], result.mails)
    return _json(201, result.task["body"])


@api(tags=TAGS, auth="user", body=CommentInSchema, errors=(403,), responses={200: ok("The comment", CommentOutSchema)})
async def update_comment(request: web.Request) -> web.Response:
    """Change your own comment."""
    auth = await authenticate(request)
    data = await load_json(request, BODY_SCHEMA)
    async with request.app[DB].write.acquire() as conn:
        body = await comments.update_comment(conn, comment_id=_id(request), user_id=auth.user_id,
                                             is_admin=auth.is_admin, body=data["body"])
    return _json(200, body)


@api(tags=TAGS, auth="user", errors=(403,), responses={204: ok("Deleted")})
async def delete_comment(request: web.Request) -> web.Response:
    """Delete a comment: your own, or any as a project admin."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        result = await comments.delete_comment(conn, comment_id=_id(request), user_id=auth.user_id,
                                               is_admin=auth.is_admin)
    await request.app[CACHE].invalidate(*result.audience)
    return web.Response(status=204)


def setup_routes(app: web.Application) -> None:
    app.router.add_get(r"/api/v1/tasks/{id:\d+}/comments", list_comments, name="task-comments")
    app.router.add_post(r"/api/v1/tasks/{id:\d+}/comments", create_comment, name="task-comment-create")
    app.router.add_patch(r"/api/v1/comments/{id:\d+}", update_comment, name="comment-update")
    app.router.add_delete(r"/api/v1/comments/{id:\d+}", delete_comment, name="comment-delete")
