"""/tasks and /tasks/{id}: the task list (filters, sort, pages, create, inline status) and one task (edit, delete).

Every read and write is the API's: the same schemas (``web.api.tasks``), the same ``shared.tasks``
functions with their one owner check, and the same replica routing with read-your-writes.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from marshmallow import Schema
from multidict import MultiDict, MultiDictProxy

from shared import tasks
from shared.errors import PreconditionFailed, ValidationFailed
from shared.mail import outbox
from web.api.tasks import CREATE_SCHEMA, LIST_QUERY_SCHEMA, UPDATE_SCHEMA
from web.auth import AuthContext
from web.keys import ARQ, CACHE, DB, SETTINGS
from web.pages import task_collab
from web.pages.common import (
    chosen,
    field_errors,
    form_data,
    load_form,
    next_day,
    page_user,
    parse_local,
    present,
    redirect,
    render,
    safe_next,
    split_tags,
    task_dict,
    zone_name,
)

PAGE_SIZE = 20
SORT_LABELS = {"-created_at": "Newest first", "created_at": "Oldest first", "due_at": "Due soonest",
               "-due_at": "Due latest", "-priority": "Most urgent", "priority": "Least urgent",
               "-updated_at": "Recently changed", "updated_at": "Least recently changed"}
FILTER_FIELDS = ("status", "priority", "tag", "q", "due_from", "due_to", "overdue", "sort")


def filter_input(query: MultiDictProxy[Any], zone: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    """A filter form (the list's, the export's) as the API's filter names; dates are whole days in ``zone``."""
    data: dict[str, Any] = present(query, "tag", "q", "sort")
    data.update({name: chosen(query, name) for name in ("status", "priority") if chosen(query, name)})
    if query.get("overdue"):
        data["overdue"] = "true"
    due_from = parse_local(str(query.get("due_from", "")), zone, "due_from", errors)
    due_to = parse_local(str(query.get("due_to", "")), zone, "due_to", errors)
    if due_from:
        data["due_after"] = due_from
    if due_to and (end := next_day(due_to)) is not None:
        data["due_before"] = end
    return data


def list_query(query: MultiDictProxy[Any], zone: str) -> dict[str, Any]:
    """The page's query string as the API's list query."""
    errors: dict[str, list[str]] = {}
    data = {**filter_input(query, zone, errors), **present(query, "cursor"), "limit": PAGE_SIZE}
    return load_form(LIST_QUERY_SCHEMA, data, errors)


def load_task(schema: Schema, form: MultiDictProxy[Any], zone: str) -> dict[str, Any]:
    """A task form through the API's schema: tags comma-separated, the due date in the viewer's zone."""
    data: dict[str, Any] = {name: str(form[name]) for name in ("title", "description", "status", "priority")
                            if name in form}
    errors: dict[str, list[str]] = {}
    if "due_at" in form:
        due_at = parse_local(str(form["due_at"]), zone, "due_at", errors)
        if "due_at" not in errors:
            data["due_at"] = due_at
    if "tags" in form:
        data["tags"] = split_tags(str(form["tags"]))
    for name in ("project_id", "assignee_id"):  # a select's value: "" is none, digits an id
        if name in form:
            value = str(form[name])
            data[name] = None if value == "" else int(value) if value.isdigit() and len(value) < 20 else value
    if data.get("project_id", 0) is None:
        del data["project_id"]  # "no change": a task always has a project
    return load_form(schema, data, errors)


def _filters_without_cursor(query: MultiDictProxy[Any]) -> list[tuple[str, str]]:
    return [(key, str(value)) for key, value in query.items() if key in FILTER_FIELDS and str(value)]


OPEN_STATUSES = tuple(status for status in tasks.STATUSES if status != "done")
DONE_SHOWN = 10  # finished tasks listed under the open ones; "All finished tasks" pages through the rest


def _item(body: str, now: datetime) -> dict[str, Any]:
    """A task as the API renders it, plus what the list shows of it: overdue (due in the past, not done)."""
    task = task_dict(body)
    due = task.get("due_at")
    task["past_due"] = bool(due) and datetime.fromisoformat(str(due).replace("Z", "+00:00")) < now
    task["overdue"] = task["past_due"] and task["status"] != "done"
    return task


async def _list_context(request: web.Request, auth: AuthContext) -> dict[str, Any]:
    """The list page. Without a status filter, open tasks are paged and the latest finished ones are listed
    apart below them (the open list's cursor is signed with the open statuses, added again on every page)."""
    zone = zone_name(request)
    filters = _filters_without_cursor(request.query)
    context: dict[str, Any] = {"query": request.query, "sorts": SORT_LABELS, "statuses": tasks.STATUSES,
                               "priorities": tasks.PRIORITIES, "items": [], "done_items": [], "next_url": None,
                               "filtered": bool(filters), "back": request.path_qs}
    try:
        query = list_query(request.query, zone)
    except ValidationFailed as exc:
        return {**context, "filter_errors": field_errors(exc)}
    split = not query.get("status")
    context["split"] = split
    chosen_filters = tasks.TaskFilters.from_mapping(query)
    open_filters = replace(chosen_filters, status=OPEN_STATUSES) if split else chosen_filters
    secret, with_done = request.app[SETTINGS].secret_key, split and not query.get("cursor")

    async def read(conn: Any) -> tuple[tuple[list[str], str | None], tuple[list[str], str | None]]:
        listing = await tasks.list_tasks(conn, owner_id=auth.user_id, filters=open_filters, sort=query["sort"],
                                         limit=PAGE_SIZE, cursor=query.get("cursor"), secret=secret)
        done = await tasks.list_tasks(conn, owner_id=auth.user_id, sort="-updated_at", limit=DONE_SHOWN,
                                      filters=replace(chosen_filters, status=("done",)), cursor=None,
                                      secret=secret) if with_done else ([], None)
        return listing, done

    (items, cursor), (done, more_done) = await request.app[DB].read_as(auth.user_id, read)
    now = datetime.now(timezone.utc)
    context["items"] = [_item(body, now) for body in items]
    context["done_items"] = [_item(body, now) for body in done]
    context["all_done_url"] = "/tasks?" + urlencode([*filters, ("status", "done")]) if more_done else None
    if cursor:
        context["next_url"] = "/tasks?" + urlencode([*filters, ("cursor", cursor)])
    context["paged"] = "cursor" in request.query
    context["first_url"] = "/tasks?" + urlencode(filters) if filters else "/tasks"
    return context


async def list_tasks(request: web.Request) -> web.Response:
    """The viewer's tasks, one keyset page at a time, with the filter and create forms."""
    auth = await page_user(request)
    context = await _list_context(request, auth)
    return render(request, "tasks.html", {**context, "values": {}}, 422 if "filter_errors" in context else 200)


async def create_task(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    try:
        data = load_task(CREATE_SCHEMA, form, zone_name(request, form.get("tz")))
        async with request.app[DB].write.acquire() as conn:
            async with conn.transaction():  # with an assignee, its mail commits with the task
                result = await tasks.create_task(conn, owner_id=auth.user_id, data=data, is_admin=auth.is_admin)
    except ValidationFailed as exc:
        context = await _list_context(request, auth)
        return render(request, "tasks.html", {**context, "values": form, "errors": field_errors(exc)}, 422)
    await written(request, result)
    back = safe_next(str(form.get("back", ""))) if form.get("back") else "/tasks"
    return redirect(request, back, f"Task “{task_dict(result.task['body'])['title']}” created.")


async def written(request: web.Request, result: tasks.Written) -> None:
    """After a committed task write: every member's cached views go, and its mails are sent."""
    await request.app[CACHE].invalidate(*result.audience)
    await outbox.dispatch(request.app[ARQ], result.mails)


def _task_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def _task_page(request: web.Request, auth: AuthContext, conn: Any) -> dict[str, Any]:
    """The task with what the page shows around it (project, members, comments), read on one connection."""
    task = await tasks.get_task_for_user(conn, task_id=_task_id(request), user_id=auth.user_id,
                                         is_admin=auth.is_admin)
    return {"task": _item(task["body"], datetime.now(timezone.utc)), "etag": tasks.etag(task),
            "statuses": tasks.STATUSES, "priorities": tasks.PRIORITIES,
            **await task_collab.collaboration(conn, task, auth, request.app[SETTINGS].secret_key)}


async def show_task(request: web.Request) -> web.Response:
    auth = await page_user(request)
    context = await request.app[DB].read_as(auth.user_id, lambda conn: _task_page(request, auth, conn))
    return render(request, "task.html", context)


async def update_task(request: web.Request) -> web.Response:
    """Save the edit form; with the ETag it was rendered with, so a change made meanwhile is not overwritten."""
    auth = await page_user(request)
    form = await form_data(request)
    task_id = _task_id(request)
    try:
        changes = load_task(UPDATE_SCHEMA, _changed_fields(form), zone_name(request, form.get("tz")))
        async with request.app[DB].write.acquire() as conn:
            result = await tasks.update_task(conn, task_id=task_id, user_id=auth.user_id, is_admin=auth.is_admin,
                                             changes=changes, if_match=str(form.get("etag") or "") or None)
    except (ValidationFailed, PreconditionFailed) as exc:
        async with request.app[DB].write.acquire() as conn:
            context = await _task_page(request, auth, conn)
        errors = field_errors(exc) if isinstance(exc, ValidationFailed) else {}
        conflict = "Someone changed this task after you opened it. Their version is shown under “Details”; " \
                   "your edits are still in the form — save again to overwrite." \
            if isinstance(exc, PreconditionFailed) else None
        return render(request, "task.html", {**context, "values": form, "errors": errors, "conflict": conflict},
                      409 if conflict else 422)
    await written(request, result)
    return redirect(request, f"/tasks/{task_id}", "Task saved.")


def _changed_fields(form: MultiDictProxy[Any]) -> MultiDictProxy[Any]:
    """The edit form without a due date left as shown (a minute-precision field must not round it)."""
    fields = MultiDict(form)
    if fields.get("due_at") == fields.get("due_at_shown"):
        fields.popall("due_at", None)
    return MultiDictProxy(fields)


async def change_status(request: web.Request) -> web.Response:
    """The inline status form of the list (app.js sends the same change as a PATCH without reloading)."""
    auth = await page_user(request)
    form = await form_data(request)
    changes = load_form(UPDATE_SCHEMA, {"status": str(form.get("status", ""))})
    async with request.app[DB].write.acquire() as conn:
        result = await tasks.update_task(conn, task_id=_task_id(request), user_id=auth.user_id,
                                         is_admin=auth.is_admin, changes=changes)
    await written(request, result)
    title = task_dict(result.task["body"])["title"]
    back = safe_next(str(form.get("back", "")))
    return redirect(request, back, f"“{title}” is now {changes['status'].replace('_', ' ')}.")


async def confirm_delete(request: web.Request) -> web.Response:
    auth = await page_user(request)
    task = await request.app[DB].read_as(auth.user_id, lambda conn: tasks.get_task_for_user(
        conn, task_id=_task_id(request), user_id=auth.user_id, is_admin=auth.is_admin))
    return render(request, "task_delete.html", {"task": task_dict(task["body"])})


async def delete_task(request: web.Request) -> web.Response:
    auth = await page_user(request)
    async with request.app[DB].write.acquire() as conn:
        result = await tasks.delete_task(conn, task_id=_task_id(request), user_id=auth.user_id,
                                         is_admin=auth.is_admin)
    await written(request, result)
    return redirect(request, "/tasks", "Task deleted.")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/tasks", list_tasks, name="page-tasks")
    app.router.add_post("/tasks", create_task)
    app.router.add_get(r"/tasks/{id:\d{1,19}}", show_task, name="page-task")
    app.router.add_post(r"/tasks/{id:\d{1,19}}", update_task)
    app.router.add_post(r"/tasks/{id:\d{1,19}}/status", change_status, name="page-task-status")
    app.router.add_get(r"/tasks/{id:\d{1,19}}/delete", confirm_delete, name="page-task-delete")
    app.router.add_post(r"/tasks/{id:\d{1,19}}/delete", delete_task)
    task_collab.setup_routes(app)
