"""/api/v1/webhooks: a user's webhooks, their deliveries log and a ping (shared.webhooks; the worker delivers)."""
from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from shared import events, webhooks
from shared.tasks import MAX_ID
from web.auth import authenticate
from web.keys import DB, SETTINGS
from web.openapi import api, ok
from web.request import json_response, load_json, load_query
from web.schemas import JsonBoolean, Text, cursor_field, limit_field

TAGS = ("webhooks",)
URL = validate.Length(1, 2000)


class WebhookCreateSchema(Schema):
    url = Text(required=True, validate=URL)
    events = fields.List(Text(validate=validate.OneOf([*events.TYPES, "*"])), required=True,
                         validate=validate.Length(1, len(events.TYPES)))
    project_id = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, MAX_ID))


class WebhookUpdateSchema(Schema):
    url = Text(validate=URL)
    events = fields.List(Text(validate=validate.OneOf([*events.TYPES, "*"])),
                         validate=validate.Length(1, len(events.TYPES)))
    active = JsonBoolean()


class WebhookOutSchema(Schema):
    id = fields.Integer(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    project_id = fields.Integer(required=True, allow_none=True)
    active = fields.Boolean(required=True)
    created_at = fields.DateTime(required=True)


class WebhookCreatedSchema(WebhookOutSchema):
    secret = fields.String(required=True, metadata={"description": "whsec_ + base64 of the HMAC key; shown only here"})


class WebhookPageSchema(Schema):
    items = fields.List(fields.Nested(WebhookOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class DeliveryOutSchema(Schema):
    id = fields.Integer(required=True)
    event_id = fields.String(required=True, allow_none=True)
    event_type = fields.String(required=True)
    attempt = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["pending", "delivered", "failed"]))
    response_status = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    duration_ms = fields.Integer(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    next_attempt_at = fields.DateTime(required=True, allow_none=True)


class DeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(DeliveryOutSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True)


class PageQuerySchema(Schema):
    limit = limit_field()
    cursor = cursor_field()


class PingSchema(Schema):
    """No fields: a ping carries nothing (an empty body or `{}`)."""


class PingOutSchema(Schema):
    delivery_id = fields.Integer(required=True)


CREATE, UPDATE, QUERY, PING = WebhookCreateSchema(), WebhookUpdateSchema(), PageQuerySchema(), PingSchema()


def _id(request: web.Request) -> int:
    return int(request.match_info["id"])


@api(tags=TAGS, auth="user", body=WebhookCreateSchema, errors=(403, 404),
     responses={201: ok("The webhook with its secret (shown this once)", WebhookCreatedSchema,
                        headers=("Location",))})
async def create_webhook(request: web.Request) -> web.Response:
    """Create a webhook: `https://` URL, event types (or `["*"]`), optionally one project (admin there)."""
    auth = await authenticate(request)
    data = await load_json(request, CREATE)
    settings = request.app[SETTINGS]
    async with request.app[DB].write.acquire() as conn:
        hook, secret = await webhooks.create(conn, secret_key=settings.secret_key, user_id=auth.user_id,
                                             is_admin=auth.is_admin, url=data["url"], types=data["events"],
                                             project_id=data["project_id"],
                                             allow_private=settings.webhook_allow_private)
    return json_response({**hook, "secret": secret}, status=201,
                         headers={"Location": f"/api/v1/webhooks/{hook['id']}", "Cache-Control": "no-store"})


@api(tags=TAGS, auth="user", query=PageQuerySchema, responses={200: ok("A page of your webhooks", WebhookPageSchema)})
async def list_webhooks(request: web.Request) -> web.Response:
    """Your webhooks."""
    auth = await authenticate(request)
    query = load_query(request, QUERY)
    async with request.app[DB].write.acquire() as conn:
        items, cursor = await webhooks.list_page(conn, user_id=auth.user_id, limit=query["limit"],
                                                 cursor=query["cursor"], secret=request.app[SETTINGS].secret_key)
    return json_response({"items": items, "next_cursor": cursor})


@api(tags=TAGS, auth="user", responses={200: ok("The webhook", WebhookOutSchema)})
async def get_webhook(request: web.Request) -> web.Response:
    """One of your webhooks (never its secret)."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        return json_response(await webhooks.get(conn, webhook_id=_id(request), user_id=auth.user_id))


@api(tags=TAGS, auth="user", body=WebhookUpdateSchema, responses={200: ok("The webhook", WebhookOutSchema)})
async def update_webhook(request: web.Request) -> web.Response:
    """Change the URL or events, or turn it off and on (`active`)."""
    auth = await authenticate(request)
    changes = await load_json(request, UPDATE)
    async with request.app[DB].write.acquire() as conn:
        hook = await webhooks.update(conn, webhook_id=_id(request), user_id=auth.user_id, changes=changes,
                                     allow_private=request.app[SETTINGS].webhook_allow_private)
    return json_response(hook)


@api(tags=TAGS, auth="user", responses={204: ok("Deleted")})
async def delete_webhook(request: web.Request) -> web.Response:
    """Delete a webhook; nothing more is delivered to it."""
    auth = await authenticate(request)
    async with request.app[DB].write.acquire() as conn:
        await webhooks.delete(conn, webhook_id=_id(request), user_id=auth.user_id)
    return web.Response(status=204)


@api(tags=TAGS, auth="user", query=PageQuerySchema,
     responses={200: ok("A page of the webhook's deliveries, newest first", DeliveryPageSchema)})
async def list_deliveries(request: web.Request) -> web.Response:
    """The deliveries log: each delivery's attempts, last answer and next try."""
    auth = await authenticate(request)
    query = load_query(request, QUERY)
    async with request.app[DB].write.acquire() as conn:
        items, cursor = await webhooks.deliveries(conn, webhook_id=_id(request), user_id=auth.user_id,
                                                  limit=query["limit"], cursor=query["cursor"],
                                                  secret=request.app[SETTINGS].secret_key)
    return json_response({"items": items, "next_cursor": cursor})


@api(tags=TAGS, auth="user", body=PingSchema, body_required=False,
     responses={202: ok("A ping delivery is queued", PingOutSchema)})
async def ping_webhook(request: web.Request) -> web.Response:
    """Queue a `ping` delivery, whatever the webhook's `events`."""
    auth = await authenticate(request)
    await load_json(request, PING, required=False)  # a body, if any, is read like every other: 413, 415, 422
    async with request.app[DB].write.acquire() as conn:
        delivery_id = await webhooks.ping(conn, webhook_id=_id(request), user_id=auth.user_id)
    return json_response({"delivery_id": delivery_id}, status=202)


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/webhooks", create_webhook, name="webhooks-create")
    app.router.add_get("/api/v1/webhooks", list_webhooks, name="webhooks")
    app.router.add_get(r"/api/v1/webhooks/{id:\d+}", get_webhook, name="webhook-detail")
    app.router.add_patch(r"/api/v1/webhooks/{id:\d+}", update_webhook, name="webhook-update")
    app.router.add_delete(r"/api/v1/webhooks/{id:\d+}", delete_webhook, name="webhook-delete")
    app.router.add_get(r"/api/v1/webhooks/{id:\d+}/deliveries", list_deliveries, name="webhook-deliveries")
    app.router.add_post(r"/api/v1/webhooks/{id:\d+}/ping", ping_webhook, name="webhook-ping")
