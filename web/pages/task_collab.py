"""What the task page shows about working together: its project, who may be assigned, where it may move,
its comments; and the comment forms (POST /tasks/{id}/comments, /comments/{id}/delete)."""
from __future__ import annotations

import json
from typing import Any

import asyncpg
from aiohttp import web

from shared import activity, comments, projects, rights
from shared.errors import AppError, ValidationFailed
from shared.mail import outbox
from web.api.comments import BODY_SCHEMA
from web.keys import ARQ, CACHE, DB
from web.pages.common import field_errors, form_data, load_form, page_user, redirect

PAGE = 100
ACTIVITY = 20  # the newest events on the page; GET /api/v1/tasks/{id}/activity pages through the rest


async def collaboration(conn: asyncpg.Connection, task: asyncpg.Record, auth: Any, secret: str) -> dict[str, Any]:
    """The project, its members, the projects the task may move to and the first comments (one read_as)."""
    project = await projects.get_project(conn, project_id=task["project_id"], user_id=auth.user_id,
                                         is_admin=auth.is_admin)
    members, _ = await projects.list_members(conn, project_id=project["id"], user_id=auth.user_id,
                                             is_admin=auth.is_admin, limit=PAGE, cursor=None, secret=secret)
    mine, _ = await projects.list_projects(conn, user_id=auth.user_id, archived=False, limit=PAGE, cursor=None,
                                           secret=secret)
    bodies, _ = await comments.list_comments(conn, task_id=task["id"], user_id=auth.user_id, is_admin=auth.is_admin,
                                             limit=PAGE, cursor=None, secret=secret)
    recent, _ = await activity.task_activity(conn, task_id=task["id"], user_id=auth.user_id, is_admin=auth.is_admin,
                                             limit=ACTIVITY, cursor=None, secret=secret)
    role = project["role"]
    return {"activity": [{"text": activity.describe(e), "at": e["at"]} for e in recent],
            "project": projects.project_out(project), "members": [projects.member_out(m) for m in members],
            "targets": [(p["id"], p["name"]) for p in mine if rights.rank(p["role"]) >= rights.rank(rights.EDITOR)],
            "comments": [json.loads(body) for body in bodies], "me": auth.user_id,
            "can_edit": rights.rank(role) >= rights.rank(rights.EDITOR),
            "can_moderate": rights.rank(role) >= rights.rank(rights.ADMIN)}


async def add_comment(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    task_id = int(request.match_info["id"])
    try:
        data = load_form(BODY_SCHEMA, {"body": str(form.get("body", ""))})
        async with request.app[DB].write.acquire() as conn:
            result = await comments.create_comment(conn, task_id=task_id, user_id=auth.user_id,
                                                   is_admin=auth.is_admin, body=data["body"])
    except ValidationFailed as exc:
        message = " ".join(field_errors(exc).get("body", ["The comment is not valid."]))
        return redirect(request, f"/tasks/{task_id}#comments", f"Comment not added: {message}", "error")
    await request.app[CACHE].invalidate(*result.audience)
    await outbox.dispatch(request.app[ARQ], result.mails)
    return redirect(request, f"/tasks/{task_id}#comments", "Comment added.")


async def remove_comment(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    back = f"/tasks/{int(str(form.get('task_id', '0')) or 0)}#comments" if str(form.get("task_id", "")).isdigit() \
        else "/tasks"
    try:
        async with request.app[DB].write.acquire() as conn:
            result = await comments.delete_comment(conn, comment_id=int(request.match_info["id"]),
                                                   user_id=auth.user_id, is_admin=auth.is_admin)
    except AppError as exc:
        if exc.status == 404:
            raise
        return redirect(request, back, exc.detail or "Not allowed.", "error")
    await request.app[CACHE].invalidate(*result.audience)
    return redirect(request, back, "Comment deleted.")


def setup_routes(app: web.Application) -> None:
    app.router.add_post(r"/tasks/{id:\d{1,19}}/comments", add_comment)
    app.router.add_post(r"/comments/{id:\d{1,19}}/delete", remove_comment)
