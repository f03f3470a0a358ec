"""/projects, /projects/{id} and /invitations/accept: the project pages, without JavaScript.

The same schemas and ``shared`` calls as the JSON API (web/api/projects.py), so the same rights: a form
the viewer's role does not allow is not shown, and posting it anyway gets the API's 403/404/409.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from shared import activity, invitations, projects, rights, tasks
from shared.errors import AppError, ValidationFailed
from shared.mail import outbox
from web import ratelimit
from web.api.projects import CREATE, INVITE, ROLE, UPDATE
from web.keys import ARQ, CACHE, DB, SETTINGS
from web.pages.common import field_errors, form_data, load_form, page_user, redirect, render, task_dict

PAGE_SIZE = 50
ACTIVITY = 20  # the newest events on the page; the API pages through the rest


def _id(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])


async def list_projects(request: web.Request) -> web.Response:
    auth = await page_user(request)
    return await _render_list(request, auth, {}, None)


async def _render_list(request: web.Request, auth: Any, values: Any, errors: Any, status: int = 200) -> web.Response:
    rows, _ = await request.app[DB].read_as(auth.user_id, lambda conn: projects.list_projects(
        conn, user_id=auth.user_id, archived=None, limit=100, cursor=None, secret=request.app[SETTINGS].secret_key))
    return render(request, "projects.html", {"projects": [projects.project_out(r) for r in rows], "values": values,
                                             "errors": errors}, status)


async def create_project(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    values = {name: str(form.get(name, "")) for name in ("name", "description")}
    try:
        data = load_form(CREATE, values)
    except ValidationFailed as exc:
        return await _render_list(request, auth, values, field_errors(exc), 422)
    async with request.app[DB].write.acquire() as conn, conn.transaction():
        row = await projects.create_project(conn, owner_id=auth.user_id, data=data)
    return redirect(request, f"/projects/{row['id']}", f"Project “{row['name']}” created.")


async def show_project(request: web.Request, errors: dict[str, Any] | None = None,
                       values: dict[str, Any] | None = None, status: int = 200) -> web.Response:
    auth = await page_user(request)
    project_id = _id(request)
    secret = request.app[SETTINGS].secret_key

    async def read(conn: Any) -> dict[str, Any]:
        project = await projects.get_project(conn, project_id=project_id, user_id=auth.user_id, is_admin=auth.is_admin)
        items, _ = await tasks.list_tasks(conn, owner_id=auth.user_id if not auth.is_admin else project["owner_id"],
                                          filters=tasks.TaskFilters(project_id=project_id), sort="-created_at",
                                          limit=PAGE_SIZE, cursor=None, secret=secret)
        members, _ = await projects.list_members(conn, project_id=project_id, user_id=auth.user_id,
                                                 is_admin=auth.is_admin, limit=100, cursor=None, secret=secret)
        pending: list[Any] = []
        if rights.rank(project["role"]) >= rights.rank(rights.ADMIN):
            pending, _ = await invitations.list_pending(conn, project_id=project_id, user_id=auth.user_id,
                                                        is_admin=auth.is_admin, limit=100, cursor=None, secret=secret)
        recent, _ = await activity.project_activity(conn, project_id=project_id, user_id=auth.user_id,
                                                    is_admin=auth.is_admin, limit=ACTIVITY, cursor=None, secret=secret)
        return {"project": projects.project_out(project), "items": [task_dict(body) for body in items],
                "activity": [{"text": activity.describe(e), "at": e["at"]} for e in recent],
                "members": [projects.member_out(m) for m in members],
                "invitations": [invitations.invitation_out(i) for i in pending]}

    context = await request.app[DB].read_as(auth.user_id, read)
    role = context["project"]["role"]
    context.update(can_edit=rights.rank(role) >= rights.rank(rights.EDITOR),
                   can_admin=rights.rank(role) >= rights.rank(rights.ADMIN), is_owner=role == rights.OWNER,
                   grantable=rights.ROLES[:rights.rank(role)], me=auth.user_id, errors=errors or {},
                   values=values or {}, statuses=tasks.STATUSES)
    return render(request, "project.html", context, status)


async def _act(request: web.Request, action: Any, success: str, back: str | None = None) -> web.Response:
    """Run a form's write; a refusal (403/409/...) re-renders the project page with the reason."""
    try:
        audience, mails = await action()
    except ValidationFailed as exc:
        return await show_project(request, field_errors(exc), dict(await form_data(request)), 422)
    except AppError as exc:
        if exc.status == 404:
            raise
        return await show_project(request, {"_schema": [exc.detail]}, None, exc.status)
    await request.app[CACHE].invalidate(*audience)
    await outbox.dispatch(request.app[ARQ], mails)
    return redirect(request, back or f"/projects/{_id(request)}", success)


async def update_project(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)

    async def action() -> tuple[Any, Any]:
        changes = {name: str(form[name]) for name in ("name", "description") if name in form}
        if "archived" in form:
            changes["archived"] = form["archived"] == "true"
        data = load_form(UPDATE, changes)
        async with request.app[DB].write.acquire() as conn:
            result = await projects.update_project(conn, project_id=_id(request), user_id=auth.user_id,
                                                   is_admin=auth.is_admin, changes=data)
        return result.audience, ()

    return await _act(request, action, "Project saved.")


async def delete_project(request: web.Request) -> web.Response:
    auth = await page_user(request)
    await form_data(request)

    async def action() -> tuple[Any, Any]:
        async with request.app[DB].write.acquire() as conn:
            result = await projects.delete_project(conn, project_id=_id(request), user_id=auth.user_id,
                                                   is_admin=auth.is_admin)
        return result.audience, ()

    return await _act(request, action, "Project deleted.", "/projects")


async def create_task(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)

    async def action() -> tuple[Any, Any]:
        from web.api.tasks import CREATE_SCHEMA

        data = load_form(CREATE_SCHEMA, {"title": str(form.get("title", "")), "project_id": _id(request)})
        async with request.app[DB].write.acquire() as conn, conn.transaction():
            result = await tasks.create_task(conn, owner_id=auth.user_id, data=data, is_admin=auth.is_admin)
        return result.audience, result.mails

    return await _act(request, action, "Task created.")


async def invite(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)

    async def action() -> tuple[Any, Any]:
        data = load_form(INVITE, {"email": str(form.get("email", "")), "role": str(form.get("role", ""))})
        project_id = _id(request)
        async with request.app[DB].write.acquire() as conn:
            await projects.get_project(conn, project_id=project_id, user_id=auth.user_id, is_admin=auth.is_admin,
                                       needed=rights.ADMIN)
            await ratelimit.hit(request, "invites", f"project:{project_id}")
            await ratelimit.hit(request, "invites", f"inviter:{auth.user_id}")
            mail = await invitations.invite(conn, request.app[SETTINGS], project_id=project_id, user_id=auth.user_id,
                                            is_admin=auth.is_admin, user_email=auth.user["email"],
                                            email=data["email"], role=data["role"])
        return (), (mail,)

    return await _act(request, action, "Invitation sent.")


async def revoke_invitation(request: web.Request) -> web.Response:
    auth = await page_user(request)
    await form_data(request)

    async def action() -> tuple[Any, Any]:
        async with request.app[DB].write.acquire() as conn:
            await invitations.revoke(conn, project_id=_id(request), invitation_id=_id(request, "invitation_id"),
                                     user_id=auth.user_id, is_admin=auth.is_admin)
        return (), ()

    return await _act(request, action, "Invitation revoked.")


async def change_role(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)

    async def action() -> tuple[Any, Any]:
        data = load_form(ROLE, {"role": str(form.get("role", ""))})
        async with request.app[DB].write.acquire() as conn:
            result = await projects.change_role(conn, project_id=_id(request), user_id=auth.user_id,
                                                is_admin=auth.is_admin, member_id=_id(request, "user_id"),
                                                role=data["role"])
        return result.audience, ()

    return await _act(request, action, "Role changed.")


async def remove_member(request: web.Request) -> web.Response:
    auth = await page_user(request)
    await form_data(request)
    leaving = _id(request, "user_id") == auth.user_id

    async def action() -> tuple[Any, Any]:
        async with request.app[DB].write.acquire() as conn:
            result = await projects.remove_member(conn, project_id=_id(request), user_id=auth.user_id,
                                                  is_admin=auth.is_admin, member_id=_id(request, "user_id"))
        return result.audience, ()

    return await _act(request, action, "You left the project." if leaving else "Member removed.",
                      "/projects" if leaving else None)


async def show_accept(request: web.Request) -> web.Response:
    """The link in the mail: sign in (or register) first, then confirm with a POST (no change on a GET,
    which mail scanners and link previews make)."""
    auth = await page_user(request)
    token = str(request.query.get("token", ""))
    return render(request, "invitation_accept.html", {"token": token, "viewer_email": auth.user["email"]})


async def accept(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    token = str(form.get("token", ""))
    try:
        async with request.app[DB].write.acquire() as conn:
            result = await invitations.accept(conn, token=token, user_id=auth.user_id)
    except AppError as exc:
        return render(request, "invitation_accept.html", {"token": token, "viewer_email": auth.user["email"],
                                                          "error": exc.detail}, exc.status)
    await request.app[CACHE].invalidate(*result.audience)
    return redirect(request, f"/projects/{result.value['id']}", f"Welcome to “{result.value['name']}”.")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/projects", list_projects, name="page-projects")
    app.router.add_post("/projects", create_project)
    app.router.add_get(r"/projects/{id:\d{1,19}}", show_project, name="page-project")
    app.router.add_post(r"/projects/{id:\d{1,19}}", update_project)
    app.router.add_post(r"/projects/{id:\d{1,19}}/delete", delete_project)
    app.router.add_post(r"/projects/{id:\d{1,19}}/tasks", create_task)
    app.router.add_post(r"/projects/{id:\d{1,19}}/invitations", invite)
    app.router.add_post(r"/projects/{id:\d{1,19}}/invitations/{invitation_id:\d{1,19}}/revoke", revoke_invitation)
    app.router.add_post(r"/projects/{id:\d{1,19}}/members/{user_id:\d{1,19}}", change_role)
    app.router.add_post(r"/projects/{id:\d{1,19}}/members/{user_id:\d{1,19}}/remove", remove_member)
    app.router.add_get("/invitations/accept", show_accept, name="page-invitation-accept")
    app.router.add_post("/invitations/accept", accept)
