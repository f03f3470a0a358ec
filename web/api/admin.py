"""/api/v1/admin/*: user management and service-wide counters (role admin only)."""
from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from shared import accounts, admin
from shared.errors import NotFound
from web.auth import require_admin
from web.keys import DB, REDIS, SETTINGS
from web.openapi import api, ok
from web.request import json_response, load_json, load_query
from web.schemas import JsonBoolean, QueryBoolean, Text, UserOutSchema, UserPageSchema, cursor_field, limit_field

ROLES = validate.OneOf(["user", "admin"])
ADMIN_TAG = ("admin",)


class AdminUserQuerySchema(Schema):
    q = Text(load_default=None, validate=validate.Length(min=1, max=200))
    role = Text(load_default=None, validate=ROLES)
    is_active = QueryBoolean(load_default=None)
    limit = limit_field()
    cursor = cursor_field()


class AdminUserUpdateSchema(Schema):
    role = Text(validate=ROLES)
    is_active = JsonBoolean()


class AdminStatsSchema(Schema):
    users = fields.Dict(keys=fields.String(), values=fields.Integer())
    tasks = fields.Dict(keys=fields.String(), values=fields.Integer())
    jobs = fields.Dict(keys=fields.String(), values=fields.Integer())
    emails = fields.Dict(keys=fields.String(), values=fields.Integer())


def _user_id(request: web.Request) -> int:
    return int(request.match_info["id"])


@api(tags=ADMIN_TAG, auth="admin", query=AdminUserQuerySchema,
     responses={200: ok("A page of users", UserPageSchema)})
async def list_users(request: web.Request) -> web.Response:
    """Users, newest first; filter by `q` (email or name), `role`, `is_active`."""
    auth = await require_admin(request)
    query = load_query(request, AdminUserQuerySchema())
    items, next_cursor = await request.app[DB].read_as(auth.user_id, lambda conn: admin.list_users(
        conn, secret=request.app[SETTINGS].secret_key, **query))
    return json_response({"items": items, "next_cursor": next_cursor})


@api(tags=ADMIN_TAG, auth="admin", responses={200: ok("The user", UserOutSchema)})
async def get_user(request: web.Request) -> web.Response:
    """One user."""
    await require_admin(request)
    async with request.app[DB].write.acquire() as conn:
        user = await accounts.get_user(conn, user_id=_user_id(request))
    if user is None:
        raise NotFound("No such user")
    return json_response(user)


@api(tags=ADMIN_TAG, auth="admin", body=AdminUserUpdateSchema, errors=(409,),
     responses={200: ok("The updated user", UserOutSchema)})
async def update_user(request: web.Request) -> web.Response:
    """Change a user's role or deactivate/reactivate them.

    Deactivation ends their sessions at once; an admin cannot demote or deactivate themselves (409).
    """
    auth = await require_admin(request)
    changes = await load_json(request, AdminUserUpdateSchema())
    async with request.app[DB].write.acquire() as conn, conn.transaction():
        user = await admin.update_user(conn, user_id=_user_id(request), acting_admin_id=auth.user_id, **changes)
    await accounts.auth_changed(request.app[REDIS], user["id"])  # after the commit: role and is_active changed
    return json_response(user)


@api(tags=ADMIN_TAG, auth="admin", responses={200: ok("Counters", AdminStatsSchema)})
async def get_stats(request: web.Request) -> web.Response:
    """Counts of users, tasks by status, jobs by state and emails by state."""
    auth = await require_admin(request)
    stats = await request.app[DB].read_as(auth.user_id, admin.service_stats)
    return json_response(stats)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/users", list_users, name="admin-users")
    app.router.add_get(r"/api/v1/admin/users/{id:\d{1,18}}", get_user, name="admin-user-detail")
    app.router.add_patch(r"/api/v1/admin/users/{id:\d{1,18}}", update_user, name="admin-user-update")
    app.router.add_get("/api/v1/admin/stats", get_stats, name="admin-stats")
