"""Signing in and out in a browser: /, /login, /register, /logout and /account."""
from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from shared import accounts
from shared.errors import AppError, Forbidden, Unauthorized, ValidationFailed
from web import ratelimit, session
from web.api.auth import LoginSchema, RegisterSchema
from web.api.users import UserUpdateSchema
from web.auth import current_user, deny
from web.keys import ARQ, DB, REDIS, SETTINGS
from web.pages.common import field_errors, form_data, load_form, page_user, redirect, render, safe_next

LOGIN_SCHEMA, REGISTER_SCHEMA, UPDATE_SCHEMA = LoginSchema(), RegisterSchema(), UserUpdateSchema()


async def limit_auth_email(request: web.Request, email: str) -> None:
    """Register and reset-mail requests per target email, the JSON API's tier (the per-address tier is the
    middleware's, web/ratelimit.py AUTH_ADDRESS_ROUTES). RateLimited renders as the 429 page."""
    await ratelimit.hit(request, "auth_email", email)


async def home(request: web.Request) -> web.Response:
    """/ : the task list when signed in, else the login page."""
    return redirect(request, "/tasks" if await current_user(request) else "/login")


async def show_login(request: web.Request) -> web.Response:
    if await current_user(request):
        return redirect(request, safe_next(request.query.get("next")))
    values = {"email": request.query.get("email", "")}
    return render(request, "login.html", {"values": values, "next": safe_next(request.query.get("next"))})


async def submit_login(request: web.Request) -> web.Response:
    """Check the password with the API's rules, open a session row, set the cookie, go where they were going."""
    settings = request.app[SETTINGS]
    await session.check_csrf(request, settings, None)
    form = await form_data(request)
    values, next_path = {"email": str(form.get("email", ""))}, safe_next(str(form.get("next", "")))
    try:
        data = load_form(LOGIN_SCHEMA, {"email": values["email"], "password": str(form.get("password", ""))})
        async with ratelimit.login_attempt(request, data["email"]):  # the API's failed-login tier
            user_id, session_id = await accounts.open_browser_session(request.app[DB], settings, **data)
    except ValidationFailed as exc:
        return render(request, "login.html", {"values": values, "next": next_path, "errors": field_errors(exc)}, 422)
    except (Unauthorized, Forbidden) as exc:
        return render(request, "login.html", {"values": values, "next": next_path, "error": exc.detail},
                      exc.status)
    response = redirect(request, next_path)
    session.set_session_cookie(response, settings, user_id=user_id, session_id=session_id)
    return response


async def show_register(request: web.Request) -> web.Response:
    # An invitation link sends newcomers here with ``next``: after signing in they land back on it.
    return render(request, "register.html", {"values": {}, "next": _register_next(request.query.get("next"))})


def _register_next(value: str | None) -> str | None:
    return safe_next(value) if value else None


async def submit_register(request: web.Request) -> web.Response:
    """Create the account (the verification mail goes out), then on to the login page."""
    await session.check_csrf(request, request.app[SETTINGS], None)
    form = await form_data(request)
    values = {"email": str(form.get("email", "")), "name": str(form.get("name", ""))}
    next_path = _register_next(str(form.get("next", "")))
    try:
        data = load_form(REGISTER_SCHEMA, {**values, "password": str(form.get("password", ""))})
        await limit_auth_email(request, data["email"])
        user = await accounts.register(request.app[DB], request.app[ARQ], request.app[SETTINGS], **data)
    except ValidationFailed as exc:
        return render(request, "register.html", {"values": values, "errors": field_errors(exc), "next": next_path},
                      422)
    except AppError as exc:
        if exc.status != 409:
            raise
        return render(request, "register.html", {"values": values, "errors": {"email": [exc.detail]},
                                                 "next": next_path}, 409)
    query = urlencode({"email": user["email"], **({"next": next_path} if next_path else {})})
    return redirect(request, f"/login?{query}",
                    f"Welcome! We sent a confirmation link to {user['email']}. You can sign in now.")


async def show_logout(request: web.Request) -> web.Response:
    """A GET never signs anyone out (a prefetch or an image tag could); it offers the button."""
    await page_user(request)
    return render(request, "logout.html", {})


async def submit_logout(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    auth = await current_user(request)  # checks the CSRF token when signed in
    if auth is not None:
        await accounts.logout(request.app[DB], request.app[REDIS], user_id=auth.user_id,
                              session_id=auth.claims.session_id, refresh_token=None)
        await deny(request, auth.claims)
    response = redirect(request, "/login", "You are signed out.")
    session.clear_session_cookie(response, settings)
    return response


async def show_account(request: web.Request) -> web.Response:
    auth = await page_user(request)
    return render(request, "account.html", {"values": {"name": auth.user["name"]}})


async def submit_account(request: web.Request) -> web.Response:
    """Name, email notifications or password, through the API's schema and ``update_me`` (a new password ends
    the other sessions)."""
    auth = await page_user(request)
    form = await form_data(request)
    action = str(form.get("action", "name"))
    if action == "notifications":  # a checkbox: present means on
        on = form.get("email_notifications") == "on"
        await accounts.update_me(request.app[DB], request.app[REDIS], request.app[SETTINGS], user_id=auth.user_id,
                                 session_id=auth.claims.session_id, changes={"email_notifications": on})
        return redirect(request, "/account", "Emails about assignments and comments are " + ("on." if on else "off."))
    fields = ("name",) if action == "name" else ("password", "current_password")
    changes = {name: str(form.get(name, "")) for name in fields}
    try:
        data = load_form(UPDATE_SCHEMA, changes)
        if "password" in data:
            await ratelimit.password_attempt(request)
        await accounts.update_me(request.app[DB], request.app[REDIS], request.app[SETTINGS], user_id=auth.user_id,
                                 session_id=auth.claims.session_id, changes=data)
    except ValidationFailed as exc:
        values = {"name": changes["name"] if action == "name" else auth.user["name"]}
        return render(request, "account.html", {"values": values, "errors": field_errors(exc), "action": action},
                      422)
    message = "Your name is saved." if action == "name" else \
        "Your password is changed. Your other sessions were signed out."
    return redirect(request, "/account", message)


async def sign_out_everywhere(request: web.Request) -> web.Response:
    """Revoke every session of the user, this one included: every browser and token is signed out."""
    auth = await page_user(request)
    async with request.app[DB].write.acquire() as conn:
        await accounts.revoke_all_sessions(conn, user_id=auth.user_id, reason="sign_out_everywhere")
    await accounts.auth_changed(request.app[REDIS], auth.user_id)  # after the commit: every process forgets
    await deny(request, auth.claims)
    response = redirect(request, "/login", "You are signed out on every device.")
    session.clear_session_cookie(response, request.app[SETTINGS])
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", home, name="page-home")
    app.router.add_get("/login", show_login, name="page-login")
    app.router.add_post("/login", submit_login, name="page-login-submit")
    app.router.add_get("/register", show_register, name="page-register")
    app.router.add_post("/register", submit_register, name="page-register-submit")
    app.router.add_get("/logout", show_logout, name="page-logout")
    app.router.add_post("/logout", submit_logout)
    app.router.add_get("/account", show_account, name="page-account")
    app.router.add_post("/account", submit_account)
    app.router.add_post("/account/sign-out-everywhere", sign_out_everywhere, name="page-sign-out-everywhere")
