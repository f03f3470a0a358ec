"""/api/v1/admin/audit: the site audit log, newest first (site admins; shared.audit writes it)."""
from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from shared import audit
from shared.tasks import MAX_ID
from web.api.tasks import Rfc3339DateTime
from web.auth import require_admin
from web.keys import DB, SETTINGS
from web.openapi import api, ok
from web.request import json_response, load_query
from web.schemas import Text, cursor_field, limit_field


class AuditQuerySchema(Schema):
    type = Text(load_default=None, validate=validate.OneOf(audit.TYPES))
    actor_id = fields.Integer(load_default=None, validate=validate.Range(1, MAX_ID))
    since = Rfc3339DateTime(query=True, load_default=None, metadata={"description": "RFC 3339; entries at or after"})
    until = Rfc3339DateTime(query=True, load_default=None, metadata={"description": "RFC 3339; entries before"})
    limit = limit_field()
    cursor = cursor_field()


class AuditEntrySchema(Schema):
    id = fields.Integer(required=True)
    type = fields.String(required=True, validate=validate.OneOf(audit.TYPES))
    actor_id = fields.Integer(required=True, allow_none=True)
    subject_type = fields.String(required=True, allow_none=True)
    subject_id = fields.Integer(required=True, allow_none=True)
    ip = fields.String(required=True, allow_none=True)
    user_agent = fields.String(required=True, allow_none=True)
    request_id = fields.String(required=True, allow_none=True)
    at = fields.DateTime(required=True)
    detail = fields.Dict(required=True)


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEntrySchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


QUERY = AuditQuerySchema()


@api(tags=("admin",), auth="admin", query=AuditQuerySchema,
     responses={200: ok("A page of audit entries, newest first", AuditPageSchema)})
async def list_audit(request: web.Request) -> web.Response:
    """The site audit log: logins, sessions, passwords, roles, project deletions and handovers, members, webhooks."""
    auth = await require_admin(request)
    query = load_query(request, QUERY)
    # From the primary: an entry written by this very request path (a login elsewhere) shows at once.
    async with request.app[DB].write.acquire() as conn:
        items, cursor = await audit.list_entries(
            conn, secret=request.app[SETTINGS].secret_key, limit=query["limit"], cursor=query["cursor"],
            type_=query["type"], actor_id=query["actor_id"], since=query["since"], until=query["until"])
    return json_response({"items": items, "next_cursor": cursor})


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/audit", list_audit, name="admin-audit")
