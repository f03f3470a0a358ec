"""The two pages that emailed links open: confirm an email address, choose a new password.

They work without JavaScript. No CSRF token is needed: the forms carry no cookie authority, the
one-time token in the form *is* the credential.
"""
from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from marshmallow import ValidationError

from shared import accounts
from shared.errors import ValidationFailed
from web.keys import DB, REDIS, SETTINGS
from web.schemas import validate_password

MAX_TOKEN = 200


def _token(source: Any) -> str:
    token = str(source.get("token", ""))
    return token if 0 < len(token) <= MAX_TOKEN else ""


def _show_form(template: str, request: web.Request) -> web.Response:
    token = _token(request.query)
    error = None if token else "This link is incomplete. Open the link from the email again."
    return aiohttp_jinja2.render_template(template, request, {"token": token, "error": error},
                                          status=200 if token else 400)


async def show_verify_email(request: web.Request) -> web.Response:
    return _show_form("verify_email.html", request)


async def submit_verify_email(request: web.Request) -> web.Response:
    token = _token(await request.post())
    try:
        await accounts.verify_email(request.app[DB], request.app[REDIS], token=token)
    except ValidationFailed:
        context = {"error": "This link is invalid, already used or expired. Ask for a new one."}
        return aiohttp_jinja2.render_template("verify_email.html", request, context, status=422)
    return aiohttp_jinja2.render_template("verify_email.html", request, {"done": True})


async def show_reset_password(request: web.Request) -> web.Response:
    return _show_form("reset_password.html", request)


async def submit_reset_password(request: web.Request) -> web.Response:
    form = await request.post()
    token, password = _token(form), str(form.get("password", ""))
    try:
        validate_password(password)
        await accounts.confirm_password_reset(request.app[DB], request.app[REDIS], request.app[SETTINGS], token=token, password=password)
    except ValidationError as exc:
        return _reset_error(request, token, " ".join(map(str, exc.messages)))
    except ValidationFailed:
        return _reset_error(request, "", "This link is invalid, already used or expired. Ask for a new one.")
    return aiohttp_jinja2.render_template("reset_password.html", request, {"done": True})


def _reset_error(request: web.Request, token: str, message: str) -> web.Response:
    return aiohttp_jinja2.render_template("reset_password.html", request, {"token": token, "error": message},
                                          status=422)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/verify-email", show_verify_email, name="page-verify-email")
    app.router.add_post("/verify-email", submit_verify_email, name="page-verify-email-submit")
    app.router.add_get("/reset-password", show_reset_password, name="page-reset-password")
    app.router.add_post("/reset-password", submit_reset_password, name="page-reset-password-submit")
