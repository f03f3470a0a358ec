"""What the task page shows below the task itself: its subtasks (with progress and an add form), the next
occurrences of a recurring task, its files (with an upload form); and the /trash page.

Every read and write goes through the same ``shared`` functions as the API. The upload form streams like
the API's route (``receive_upload`` in web/api/attachments.py); its CSRF token travels in the form's
action URL, since nothing may read a streamed multipart body before the handler.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from shared import attachments, recurrence, tasks, trash
from shared.errors import AppError, ValidationFailed
from web.api.attachments import receive_upload
from web.api.tasks import CREATE_SCHEMA
from web.keys import CACHE, DB, SETTINGS
from web.request import STREAMED_BODY_ROUTES
from web.pages.common import field_errors, form_data, load_form, page_user, redirect, render, task_dict

UPLOAD_PAGE_ROUTE = "page-task-upload"
SUBTASKS_SHOWN = 100
OCCURRENCES_SHOWN = 5
# The rules the edit form offers by name; "custom" keeps whatever RRULE the task has.
RULE_CHOICES = (("", "Does not repeat"), ("daily", "Every day"), ("weekdays", "Every weekday (Mon–Fri)"),
                ("weekly", "Every week, on the due date's weekday"), ("monthly", "Every month, on the due date's day"),
                ("yearly", "Every year, on the due date"))
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


async def depth(conn: asyncpg.Connection, task: asyncpg.Record, auth: Any, secret: str) -> dict[str, Any]:
    """Subtasks, occurrences and files of one task (the caller has already checked it is visible)."""
    filters = tasks.TaskFilters(parent_id=task["id"])
    bodies, _ = await tasks.list_tasks(conn, owner_id=auth.user_id, filters=filters, sort="created_at",
                                       limit=SUBTASKS_SHOWN, cursor=None, secret=secret)
    subtasks = [task_dict(body) for body in bodies]
    files = [json.loads(body) for body in await attachments.list_attachments(
        conn, task_id=task["id"], user_id=auth.user_id, is_admin=auth.is_admin)]
    occurrences: list[datetime] = []
    if task["recurrence"] and task["due_at"]:
        try:
            occurrences = recurrence.upcoming(task["recurrence"], task["due_at"], OCCURRENCES_SHOWN)
        except ValidationFailed:  # a rule stored before a stricter check: show none rather than fail
            occurrences = []
    preset = next((name for name, rule in recurrence.PRESETS.items() if rule == task["recurrence"]), None)
    return {"subtasks": subtasks, "subtasks_done": sum(t["status"] == "done" for t in subtasks),
            "files": files, "occurrences": [o.strftime("%Y-%m-%dT%H:%M:%SZ") for o in occurrences],
            "rule_choices": RULE_CHOICES, "rule_preset": preset if preset else ("custom" if task["recurrence"] else "")}


def rule_from_form(form: Any) -> tuple[bool, str | None]:
    """(sent, rule) from the edit form's repeat select and its custom RRULE field."""
    if "repeat" not in form:
        return False, None
    choice = str(form.get("repeat", ""))
    if choice == "":
        return True, None
    if choice == "custom":
        return True, str(form.get("rrule", "")).strip() or None
    if choice not in recurrence.PRESETS:
        raise ValidationFailed({"recurrence": ["Choose one of the offered rules."]})
    return True, recurrence.PRESETS[choice]


async def add_subtask(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    parent_id = int(request.match_info["id"])
    try:
        async with request.app[DB].write.acquire() as conn:
            parent = await tasks.get_task_for_user(conn, task_id=parent_id, user_id=auth.user_id,
                                                   is_admin=auth.is_admin)
            data = load_form(CREATE_SCHEMA, {"title": str(form.get("title", "")), "parent_id": parent_id,
                                             "project_id": parent["project_id"]})
            result = await tasks.create_task(conn, owner_id=auth.user_id, data=data, is_admin=auth.is_admin)
    except ValidationFailed as exc:
        errors = field_errors(exc)
        message = " ".join(errors.get("title", []) + errors.get("parent_id", [])) or "The subtask is not valid."
        return redirect(request, f"/tasks/{parent_id}#subtasks", f"Subtask not added: {message}", "error")
    await request.app[CACHE].invalidate(*result.audience)
    return redirect(request, f"/tasks/{parent_id}#subtasks", "Subtask added.")


async def show_trash(request: web.Request) -> web.Response:
    auth = await page_user(request)
    cursor = request.query.get("cursor") or None
    body = await request.app[DB].read_as(auth.user_id, lambda conn: trash.list_trash(
        conn, user_id=auth.user_id, limit=50, cursor=cursor, secret=request.app[SETTINGS].secret_key,
        task_json=tasks.TASK_JSON))
    page = json.loads(body)
    return render(request, "trash.html", {"items": page["items"], "next_cursor": page["next_cursor"],
                                          "retention_days": trash.RETENTION_DAYS})


async def restore(request: web.Request) -> web.Response:
    auth = await page_user(request)
    task_id = int(request.match_info["id"])
    try:
        async with request.app[DB].write.acquire() as conn:
            _, audience = await trash.restore_task(conn, task_id=task_id, user_id=auth.user_id,
                                                   is_admin=auth.is_admin)
    except AppError as exc:
        if exc.status == 404:
            raise
        return redirect(request, "/trash", exc.detail, "error")
    await request.app[CACHE].invalidate(*audience)
    return redirect(request, f"/tasks/{task_id}", "Task restored.")


async def upload(request: web.Request) -> web.Response:
    """The upload form without JavaScript (with JavaScript, app.js posts to the API and shows progress)."""
    auth = await page_user(request)
    task_id = int(request.match_info["id"])
    try:
        await receive_upload(request, auth.user_id, auth.is_admin)
    except AppError as exc:
        if exc.status in (401, 403, 404):
            raise
        message = " ".join(m for ms in (exc.errors or {}).values() for m in ms) or exc.detail
        return redirect(request, f"/tasks/{task_id}#files", f"File not attached: {message}", "error")
    return redirect(request, f"/tasks/{task_id}#files", "File attached.")


def setup_routes(app: web.Application) -> None:
    STREAMED_BODY_ROUTES.add(UPLOAD_PAGE_ROUTE)
    app.router.add_post(r"/tasks/{id:\d{1,19}}/attachments", upload, name=UPLOAD_PAGE_ROUTE)
    app.router.add_post(r"/tasks/{id:\d{1,19}}/subtasks", add_subtask)
    app.router.add_get("/trash", show_trash, name="page-trash")
    app.router.add_post(r"/trash/{id:\d{1,19}}/restore", restore)
