"""/webhooks: the signed-in user's webhooks without JavaScript: list, create (the secret shown once, on the
answer page), ping, delete. The same shared.webhooks calls and schemas as the JSON API."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from shared import events, webhooks
from shared.errors import AppError, ValidationFailed
from web.api.webhooks import CREATE
from web.keys import DB, SETTINGS
from web.pages.common import field_errors, form_data, load_form, page_user, redirect, render

PAGE = 100


async def _render(request: web.Request, auth: Any, **context: Any) -> web.Response:
    async with request.app[DB].write.acquire() as conn:
        items, _ = await webhooks.list_page(conn, user_id=auth.user_id, limit=PAGE, cursor=None,
                                            secret=request.app[SETTINGS].secret_key)
    status = context.pop("status", 200)
    return render(request, "webhooks.html", {"webhooks": items, "types": events.TYPES, "values": {}, "errors": {},
                                             **context}, status)


async def show(request: web.Request) -> web.Response:
    return await _render(request, await page_user(request))


async def create(request: web.Request) -> web.Response:
    auth = await page_user(request)
    form = await form_data(request)
    chosen = [str(t) for t in form.getall("events", [])] or ["*"]
    values = {"url": str(form.get("url", "")), "events": chosen}
    project = str(form.get("project_id", "")).strip()
    try:
        data = load_form(CREATE, {**values, "project_id": int(project) if project.isdigit() else None})
        settings = request.app[SETTINGS]
        async with request.app[DB].write.acquire() as conn:
            hook, secret = await webhooks.create(conn, secret_key=settings.secret_key, user_id=auth.user_id,
                                                 is_admin=auth.is_admin, url=data["url"], types=data["events"],
                                                 project_id=data["project_id"],
                                                 allow_private=settings.webhook_allow_private)
    except ValidationFailed as exc:
        return await _render(request, auth, values=values, errors=field_errors(exc), status=422)
    except AppError as exc:
        return await _render(request, auth, values=values, errors={"_schema": [exc.detail]}, status=exc.status)
    response = await _render(request, auth, created={**hook, "secret": secret}, status=201)
    response.headers["Cache-Control"] = "no-store"  # the secret is on this page, once
    return response


async def ping(request: web.Request) -> web.Response:
    auth = await page_user(request)
    await form_data(request)
    async with request.app[DB].write.acquire() as conn:
        await webhooks.ping(conn, webhook_id=int(request.match_info["id"]), user_id=auth.user_id)
    return redirect(request, "/webhooks", "Ping queued; see the deliveries log through the API.")


async def delete(request: web.Request) -> web.Response:
    auth = await page_user(request)
    await form_data(request)
    async with request.app[DB].write.acquire() as conn:
        await webhooks.delete(conn, webhook_id=int(request.match_info["id"]), user_id=auth.user_id)
    return redirect(request, "/webhooks", "Webhook deleted.")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/webhooks", show, name="page-webhooks")
    app.router.add_post("/webhooks", create)
    app.router.add_post(r"/webhooks/{id:\d{1,19}}/ping", ping)
    app.router.add_post(r"/webhooks/{id:\d{1,19}}/delete", delete)
