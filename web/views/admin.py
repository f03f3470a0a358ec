"""/api/v1/admin/*: user management and service-wide counters (role admin only)."""
from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from shared import accounts, admin
from shared.errors import NotFound
from web.auth import require_admin
from web.keys import DB, REDIS, SETTINGS
from web.request import json_response, load_json, load_query
from web.schemas import Text, cursor_field, limit_field

ROLES = validate.OneOf(["user", "admin"])


class AdminUserQuerySchema(Schema):
    q = Text(load_default=None, validate=validate.Length(min=1, max=200))
    role = Text(load_default=None, validate=ROLES)
    is_active = fields.Boolean(load_default=None)
    limit = limit_field()
    cursor = cursor_field()


class AdminUserUpdateSchema(Schema):
    role = Text(validate=ROLES)
    is_active = fields.Boolean()


class AdminStatsSchema(Schema):
    users = fields.Dict(keys=fields.String(), values=fields.Integer())
    tasks = fields.Dict(keys=fields.String(), values=fields.Integer())
    jobs = fields.Dict(keys=fields.String(), values=fields.Integer())
    emails = fields.Dict(keys=fields.String(), values=fields.Integer())


def _user_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def list_users(request: web.Request) -> web.Response:
    """Users, newest first; filter by `q` (email or name), `role`, `is_active`.
    ---
    tags: [admin]
    security: [{bearerAuth: []}]
    parameters: [{in: query, schema: AdminUserQuerySchema}]
    responses:
      200: {description: A page of users, content: {application/json: {schema: UserPageSchema}}}
      401: {$ref: '#/components/responses/Problem401'}
      403: {$ref: '#/components/responses/Problem403'}
      422: {$ref: '#/components/responses/Problem422'}
    """
    await require_admin(request)
    query = load_query(request, AdminUserQuerySchema())
    async with request.app[DB].read().acquire() as conn:
        items, next_cursor = await admin.list_users(conn, secret=request.app[SETTINGS].secret_key, **query)
    return json_response({"items": items, "next_cursor": next_cursor})


async def get_user(request: web.Request) -> web.Response:
    """One user.
    ---
    tags: [admin]
    security: [{bearerAuth: []}]
    parameters: [{in: path, name: id, required: true, schema: {type: integer}}]
    responses:
      200: {description: The user, content: {application/json: {schema: UserOutSchema}}}
      401: {$ref: '#/components/responses/Problem401'}
      403: {$ref: '#/components/responses/Problem403'}
      404: {$ref: '#/components/responses/Problem404'}
    """
    await require_admin(request)
    async with request.app[DB].write.acquire() as conn:
        user = await accounts.get_user(conn, user_id=_user_id(request))
    if user is None:
        raise NotFound("No such user")
    return json_response(user)


async def update_user(request: web.Request) -> web.Response:
    """Change a user's role or deactivate/reactivate them (deactivation ends their sessions at once).
    ---
    tags: [admin]
    security: [{bearerAuth: []}]
    parameters: [{in: path, name: id, required: true, schema: {type: integer}}]
    requestBody: {required: true, content: {application/json: {schema: AdminUserUpdateSchema}}}
    responses:
      200: {description: The updated user, content: {application/json: {schema: UserOutSchema}}}
      401: {$ref: '#/components/responses/Problem401'}
      403: {$ref: '#/components/responses/Problem403'}
      404: {$ref: '#/components/responses/Problem404'}
      409: {$ref: '#/components/responses/Problem409'}
      422: {$ref: '#/components/responses/Problem422'}
    """
    auth = await require_admin(request)
    changes = await load_json(request, AdminUserUpdateSchema())
    async with request.app[DB].write.acquire() as conn, conn.transaction():
        user = await admin.update_user(conn, user_id=_user_id(request), acting_admin_id=auth.user_id, **changes)
    await accounts.auth_changed(request.app[REDIS], user["id"])  # after the commit: role and is_active changed
    return json_response(user)


async def get_stats(request: web.Request) -> web.Response:
    """Counts of users, tasks by status, jobs by state and emails by state.
    ---
    tags: [admin]
    security: [{bearerAuth: []}]
    responses:
      200: {description: Counters, content: {application/json: {schema: AdminStatsSchema}}}
      401: {$ref: '#/components/responses/Problem401'}
      403: {$ref: '#/components/responses/Problem403'}
    """
    await require_admin(request)
    async with request.app[DB].read().acquire() as conn:
        stats = await admin.service_stats(conn)
    return json_response(stats)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/users", list_users, name="admin-users")
    app.router.add_get(r"/api/v1/admin/users/{id:\d{1,18}}", get_user, name="admin-user-detail")
    app.router.add_patch(r"/api/v1/admin/users/{id:\d{1,18}}", update_user, name="admin-user-update")
    app.router.add_get("/api/v1/admin/stats", get_stats, name="admin-stats")
