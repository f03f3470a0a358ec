"""/admin: find users, change their role, deactivate or reactivate them (admins only; others get the 403 page)."""
from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from shared import accounts, admin, audit
from shared.errors import Conflict, Forbidden, ValidationFailed
from web.auth import AuthContext
from web.keys import DB, REDIS, SETTINGS
from web.api.admin import AdminUserQuerySchema, AdminUserUpdateSchema
from web.pages.common import field_errors, form_data, load_form, page_user, present, redirect, render, safe_next

QUERY_SCHEMA, UPDATE_SCHEMA = AdminUserQuerySchema(), AdminUserUpdateSchema()
PAGE_SIZE = 25
AUDIT_ROWS = 20
FORM_BOOLEANS = {"true": True, "false": False}


async def page_admin(request: web.Request) -> AuthContext:
    """Signed in (else the login page) and an admin (else the 403 page): the API's rule, as a page."""
    auth = await page_user(request)
    if not auth.is_admin:
        raise Forbidden("This page is for admins only")
    return auth


async def show_admin(request: web.Request) -> web.Response:
    auth = await page_admin(request)
    filters = present(request.query, "q", "role", "is_active")
    context = {"query": request.query, "users": [], "next_url": None}
    try:
        query = load_form(QUERY_SCHEMA, {**filters, **present(request.query, "cursor"), "limit": PAGE_SIZE})
    except ValidationFailed as exc:
        return render(request, "admin.html", {**context, "filter_errors": field_errors(exc)}, 422)
    users, cursor = await request.app[DB].read_as(auth.user_id, lambda conn: admin.list_users(
        conn, secret=request.app[SETTINGS].secret_key, **query))
    async with request.app[DB].write.acquire() as conn:
        entries, _ = await audit.list_entries(conn, secret=request.app[SETTINGS].secret_key, limit=AUDIT_ROWS,
                                              cursor=None)
    context["audit"] = entries
    if cursor:
        context["next_url"] = "/admin?" + urlencode({**filters, "cursor": cursor})
    return render(request, "admin.html", {**context, "users": users, "back": request.path_qs})


async def update_user(request: web.Request) -> web.Response:
    """Role or active state through ``shared.admin.update_user`` (deactivation ends every session at once)."""
    auth = await page_admin(request)
    form = await form_data(request)
    back = safe_next(str(form.get("back", ""))) if str(form.get("back", "")).startswith("/admin") else "/admin"
    values: dict[str, object] = dict(present(form, "role", "is_active"))
    if "is_active" in values:  # a form sends the strings; the API's schema takes only a JSON boolean
        values["is_active"] = FORM_BOOLEANS.get(str(values["is_active"]), values["is_active"])
    changes = load_form(UPDATE_SCHEMA, values)
    try:
        async with request.app[DB].write.acquire() as conn, conn.transaction():
            user = await admin.update_user(conn, user_id=int(request.match_info["id"]), acting_admin_id=auth.user_id,
                                           **changes)
    except Conflict as exc:
        return redirect(request, back, exc.detail, "error")
    await accounts.auth_changed(request.app[REDIS], user["id"])  # after the commit: role and is_active changed
    state = "active" if user["is_active"] else "deactivated (signed out everywhere)"
    return redirect(request, back, f"{user['email']} is now {user['role']}, {state}.")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/admin", show_admin, name="page-admin")
    app.router.add_post(r"/admin/users/{id:\d{1,18}}", update_user, name="page-admin-user")
