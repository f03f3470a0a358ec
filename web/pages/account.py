"""The pages that emailed links open (confirm an email address, choose a new password), and the one that
asks for the reset mail ("Forgot password?").

They work without JavaScript. The one-time token in the form is the credential; the forms carry a CSRF
token anyway (bound to the browser's nonce, as the login form), like every other form of the site.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from marshmallow import ValidationError

from shared import accounts
from shared.errors import Unauthorized, ValidationFailed
from web import session
from web.keys import ARQ, DB, REDIS, SETTINGS
from web.schemas import validate_password
from web.api.auth import PasswordResetSchema
from web.pages.common import field_errors, form_data, load_form, redirect, render
from web.pages.auth import limit_auth_email

RESET_REQUEST_SCHEMA = PasswordResetSchema()

MAX_TOKEN = 200


def _token(source: Any) -> str:
    token = str(source.get("token", ""))
    return token if 0 < len(token) <= MAX_TOKEN else ""


def _show_form(template: str, request: web.Request) -> web.Response:
    token = _token(request.query)
    error = None if token else "This link is incomplete. Open the link from the email again."
    return render(request, template, {"token": token, "error": error}, 200 if token else 400)


async def show_verify_email(request: web.Request) -> web.Response:
    return _show_form("verify_email.html", request)


async def submit_verify_email(request: web.Request) -> web.Response:
    await session.check_csrf(request, request.app[SETTINGS], None)
    token = _token(await request.post())
    try:
        await accounts.verify_email(request.app[DB], request.app[REDIS], token=token)
    except Unauthorized:
        context = {"error": "This link is invalid, already used or expired. Ask for a new one."}
        return render(request, "verify_email.html", context, status=422)
    return render(request, "verify_email.html", {"done": True})


async def show_reset_password(request: web.Request) -> web.Response:
    """With the mail's token: the new-password form. Without one: the form that asks for the mail."""
    if "token" not in request.query:
        return await show_forgot_password(request)
    return _show_form("reset_password.html", request)


async def show_forgot_password(request: web.Request) -> web.Response:
    return render(request, "forgot_password.html", {"values": {"email": request.query.get("email", "")}})


async def submit_forgot_password(request: web.Request) -> web.Response:
    """The API's ``POST /api/v1/auth/password-reset`` as a form: the same schema, the same limits (per address
    and per email), the same call that only enqueues; so the answer is the same whether the account exists."""
    await session.check_csrf(request, request.app[SETTINGS], None)
    form = await form_data(request)
    values = {"email": str(form.get("email", ""))}
    try:
        data = load_form(RESET_REQUEST_SCHEMA, values)
    except ValidationFailed as exc:
        return render(request, "forgot_password.html", {"values": values, "errors": field_errors(exc)}, 422)
    await limit_auth_email(request, data["email"])  # per address: the middleware (AUTH_ADDRESS_ROUTES)
    await accounts.request_password_reset(request.app[DB], request.app[ARQ], request.app[SETTINGS], **data)
    return redirect(request, "/login?" + urlencode({"email": data["email"]}),
                    f"If {data['email']} has an account, a link to choose a new password is on its way. "
                    f"The link works for {int(accounts.RESET_TTL.total_seconds() // 3600)} hour(s).")


async def submit_reset_password(request: web.Request) -> web.Response:
    await session.check_csrf(request, request.app[SETTINGS], None)
    form = await request.post()
    token, password = _token(form), str(form.get("password", ""))
    try:
        validate_password(password)
        await accounts.confirm_password_reset(request.app[DB], request.app[REDIS], request.app[SETTINGS],
                                              token=token, password=password)
    except ValidationError as exc:
        return _reset_error(request, token, " ".join(map(str, exc.messages)))
    except Unauthorized:
        return _reset_error(request, "", "This link is invalid, already used or expired. Ask for a new one.")
    return render(request, "reset_password.html", {"done": True})


def _reset_error(request: web.Request, token: str, message: str) -> web.Response:
    return render(request, "reset_password.html", {"token": token, "error": message}, 422)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/verify-email", show_verify_email, name="page-verify-email")
    app.router.add_post("/verify-email", submit_verify_email, name="page-verify-email-submit")
    app.router.add_get("/forgot-password", show_forgot_password, name="page-forgot-password")
    app.router.add_post("/forgot-password", submit_forgot_password, name="page-forgot-password-submit")
    app.router.add_get("/reset-password", show_reset_password, name="page-reset-password")
    app.router.add_post("/reset-password", submit_reset_password, name="page-reset-password-submit")
