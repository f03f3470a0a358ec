"""/api/v1/auth/*: register, login, refresh, logout, email verification, password reset."""
from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, validate

from shared import accounts
from web.auth import authenticate, deny
from web.keys import ARQ, DB, REDIS, SETTINGS
from web.request import json_response, load_json
from web.schemas import EmailField, PasswordField, Text, TrimmedSchema

TOKEN = validate.Length(min=1, max=200)


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
    refresh_token = Text(required=True, validate=TOKEN)


class LogoutSchema(Schema):
    refresh_token = Text(load_default=None, validate=TOKEN)


class VerifyEmailSchema(Schema):
    token = Text(required=True, validate=TOKEN)


class PasswordResetSchema(TrimmedSchema):
    class Meta:
        trim = ("email",)

    email = EmailField(required=True)


class PasswordResetConfirmSchema(Schema):
    token = Text(required=True, validate=TOKEN)
    password = PasswordField(required=True)


async def register(request: web.Request) -> web.Response:
    """Create an account and send its verification email.
    ---
    tags: [auth]
    requestBody: {required: true, content: {application/json: {schema: RegisterSchema}}}
    responses:
      201: {description: The new user, content: {application/json: {schema: UserOutSchema}}}
      400: {$ref: '#/components/responses/Problem400'}
      409: {$ref: '#/components/responses/Problem409'}
      413: {$ref: '#/components/responses/Problem413'}
      415: {$ref: '#/components/responses/Problem415'}
      422: {$ref: '#/components/responses/Problem422'}
    """
    data = await load_json(request, RegisterSchema())
    user = await accounts.register(request.app[DB], request.app[ARQ], request.app[SETTINGS], **data)
    return json_response(user, status=201, headers={"Location": "/api/v1/users/me"})


async def login(request: web.Request) -> web.Response:
    """Exchange email and password for an access and a refresh token.
    ---
    tags: [auth]
    requestBody: {required: true, content: {application/json: {schema: LoginSchema}}}
    responses:
      200: {description: A token pair, content: {application/json: {schema: TokenPairSchema}}}
      401: {$ref: '#/components/responses/Problem401'}
      403: {$ref: '#/components/responses/Problem403'}
      422: {$ref: '#/components/responses/Problem422'}
    """
    data = await load_json(request, LoginSchema())
    pair = await accounts.login(request.app[DB], request.app[SETTINGS], **data)
    return json_response(pair.as_dict(), headers={"Cache-Control": "no-store"})


async def refresh(request: web.Request) -> web.Response:
    """Spend a refresh token for a new pair; reusing a spent one ends that login.
    ---
    tags: [auth]
    requestBody: {required: true, content: {application/json: {schema: RefreshSchema}}}
    responses:
      200: {description: A new token pair, content: {application/json: {schema: TokenPairSchema}}}
      401: {$ref: '#/components/responses/Problem401'}
      422: {$ref: '#/components/responses/Problem422'}
    """
    data = await load_json(request, RefreshSchema())
    pair = await accounts.refresh(request.app[DB], request.app[REDIS], request.app[SETTINGS], **data)
    return json_response(pair.as_dict(), headers={"Cache-Control": "no-store"})


async def logout(request: web.Request) -> web.Response:
    """End this login: the access token is refused from now on, the refresh token revoked.
    ---
    tags: [auth]
    security: [{bearerAuth: []}]
    requestBody: {required: false, content: {application/json: {schema: LogoutSchema}}}
    responses:
      204: {description: Logged out}
      401: {$ref: '#/components/responses/Problem401'}
      422: {$ref: '#/components/responses/Problem422'}
    """
    auth = await authenticate(request)
    data = await load_json(request, LogoutSchema())
    await accounts.logout(request.app[DB], request.app[REDIS], user_id=auth.user_id, session_id=auth.claims.session_id, **data)
    await deny(request, auth.claims)
    return web.Response(status=204)


async def verify_email(request: web.Request) -> web.Response:
    """Confirm an email address with the token from the verification mail.
    ---
    tags: [auth]
    requestBody: {required: true, content: {application/json: {schema: VerifyEmailSchema}}}
    responses:
      204: {description: Verified}
      422: {$ref: '#/components/responses/Problem422'}
    """
    data = await load_json(request, VerifyEmailSchema())
    await accounts.verify_email(request.app[DB], request.app[REDIS], **data)
    return web.Response(status=204)


async def request_password_reset(request: web.Request) -> web.Response:
    """Mail a reset link if the account exists; the answer is 202 either way.
    ---
    tags: [auth]
    requestBody: {required: true, content: {application/json: {schema: PasswordResetSchema}}}
    responses:
      202: {description: Accepted}
      422: {$ref: '#/components/responses/Problem422'}
    """
    data = await load_json(request, PasswordResetSchema())
    await accounts.request_password_reset(request.app[DB], request.app[ARQ], request.app[SETTINGS], **data)
    return web.Response(status=202)


async def confirm_password_reset(request: web.Request) -> web.Response:
    """Set a new password with the mailed token; every session of the user ends.
    ---
    tags: [auth]
    requestBody: {required: true, content: {application/json: {schema: PasswordResetConfirmSchema}}}
    responses:
      204: {description: Password changed}
      422: {$ref: '#/components/responses/Problem422'}
    """
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
