"""/api/v1/auth/*: register, login, refresh, logout, email verification, password reset."""
from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from shared import accounts
from web import ratelimit
from web.auth import authenticate, deny
from web.keys import ARQ, DB, REDIS, SETTINGS
from web.openapi import api, ok
from web.request import json_response, load_json
from web.schemas import EmailField, PasswordField, Text, TokenPairSchema, TrimmedSchema, UserOutSchema

AUTH_TAG = ("auth",)



def _token(**kwargs: object) -> fields.String:
    """Any string: a token that is not live (garbage, 10 KB, an access token) is a 401 from the lookup, never a
    422 from its shape; only a missing or non-string token is a validation error."""
    return fields.String(metadata={"description": "A token this service issued"}, **kwargs)  # type: ignore[arg-type]


class RegisterSchema(TrimmedSchema):
    class Meta:
        trim = ("email", "name")

    email = EmailField(required=True)
    password = PasswordField(required=True)
    name = Text(load_default="", validate=validate.Length(max=100))


class LoginSchema(TrimmedSchema):
    class Meta:
        trim = ("email",)

    email = EmailField(required=True)
    password = PasswordField(required=True, existing=True)


class RefreshSchema(Schema):
    refresh_token = _token(required=True)


class LogoutSchema(Schema):
    refresh_token = _token(load_default=None)


class VerifyEmailSchema(Schema):
    token = _token(required=True)


class PasswordResetSchema(TrimmedSchema):
    class Meta:
        trim = ("email",)

    email = EmailField(required=True)


class PasswordResetConfirmSchema(Schema):
    token = _token(required=True)
    password = PasswordField(required=True)


TOKEN_PAIR = ok("A token pair", TokenPairSchema, headers=("Cache-Control",))


@api(tags=AUTH_TAG, body=RegisterSchema, rate_limited=True, hashes_password=True, errors=(409,),
     responses={201: ok("The new user", UserOutSchema, headers=("Location",))})
async def register(request: web.Request) -> web.Response:
    """Create an account and send its verification email."""
    data = await load_json(request, RegisterSchema())
    await ratelimit.hit(request, "auth_email", data["email"])
    user = await accounts.register(request.app[DB], request.app[ARQ], request.app[SETTINGS], **data)
    return json_response(user, status=201, headers={"Location": "/api/v1/users/me"})


@api(tags=AUTH_TAG, body=LoginSchema, rate_limited=True, hashes_password=True, errors=(401, 403),
     responses={200: TOKEN_PAIR})
async def login(request: web.Request) -> web.Response:
    """Exchange email and password for an access and a refresh token.

    Wrong email and wrong password are the same 401; a deactivated account is 403.
    """
    data = await load_json(request, LoginSchema())
    async with ratelimit.login_attempt(request, data["email"]):
        pair = await accounts.login(request.app[DB], request.app[SETTINGS], **data)
    return json_response(pair.as_dict(), headers={"Cache-Control": "no-store"})


@api(tags=AUTH_TAG, body=RefreshSchema, errors=(401,), responses={200: TOKEN_PAIR})
async def refresh(request: web.Request) -> web.Response:
    """Spend a refresh token for a new pair; reusing a spent one ends that login.

    Any string that is not a live refresh token is 401; only a missing or non-string one is 422.
    """
    data = await load_json(request, RefreshSchema())
    pair = await accounts.refresh(request.app[DB], request.app[REDIS], request.app[SETTINGS], **data)
    return json_response(pair.as_dict(), headers={"Cache-Control": "no-store"})


@api(tags=AUTH_TAG, auth="user", body=LogoutSchema, body_required=False, responses={204: ok("Logged out")})
async def logout(request: web.Request) -> web.Response:
    """End this login: the access token is refused from now on, the refresh token revoked."""
    auth = await authenticate(request)
    data = await load_json(request, LogoutSchema(), required=False)
    await accounts.logout(request.app[DB], request.app[REDIS], user_id=auth.user_id,
                          session_id=auth.claims.session_id, **data)
    await deny(request, auth.claims)
    return web.Response(status=204)


@api(tags=AUTH_TAG, body=VerifyEmailSchema, rate_limited=True, errors=(401,), responses={204: ok("Verified")})
async def verify_email(request: web.Request) -> web.Response:
    """Confirm an email address with the token from the verification mail (401 if it is not live)."""
    data = await load_json(request, VerifyEmailSchema())
    await accounts.verify_email(request.app[DB], request.app[REDIS], **data)
    return web.Response(status=204)


# 503: the reset is only queued in the request (same work whatever the email), so no queue, no answer.
@api(tags=AUTH_TAG, body=PasswordResetSchema, rate_limited=True, errors=(503,), responses={202: ok("Accepted")})
async def request_password_reset(request: web.Request) -> web.Response:
    """Mail a reset link if the account exists; the answer is 202 either way."""
    data = await load_json(request, PasswordResetSchema())
    await ratelimit.hit(request, "auth_email", data["email"])
    await accounts.request_password_reset(request.app[DB], request.app[ARQ], request.app[SETTINGS], **data)
    return web.Response(status=202)


@api(tags=AUTH_TAG, body=PasswordResetConfirmSchema, rate_limited=True, hashes_password=True, errors=(401,),
     responses={204: ok("Password changed")})
async def confirm_password_reset(request: web.Request) -> web.Response:
    """Set a new password with the mailed token (401 if it is not live); every session of the user ends."""
    data = await load_json(request, PasswordResetConfirmSchema())
    await accounts.confirm_password_reset(request.app[DB], request.app[REDIS], request.app[SETTINGS], **data)
    return web.Response(status=204)


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/auth/register", register, name="auth-register")
    app.router.add_post("/api/v1/auth/login", login, name="auth-login")
    app.router.add_post("/api/v1/auth/refresh", refresh, name="auth-refresh")
    app.router.add_post("/api/v1/auth/logout", logout, name="auth-logout")
    app.router.add_post("/api/v1/auth/verify-email", verify_email, name="auth-verify-email")
    app.router.add_post("/api/v1/auth/password-reset", request_password_reset, name="auth-password-reset")
    app.router.add_post("/api/v1/auth/password-reset/confirm", confirm_password_reset,
                        name="auth-password-reset-confirm")
