"""/api/v1/users/me: the caller's own account."""
from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import ValidationError, validate, validates_schema

from shared import accounts
from web import ratelimit
from web.auth import authenticate
from web.keys import DB, REDIS, SETTINGS
from web.openapi import api, ok
from web.request import json_response, load_json
from web.schemas import JsonBoolean, PasswordField, Text, TrimmedSchema, UserOutSchema


class UserUpdateSchema(TrimmedSchema):
    class Meta:
        trim = ("name",)

    name = Text(validate=validate.Length(max=100))
    email_notifications = JsonBoolean(metadata={"description": "Emails about assignments and comments"})
    password = PasswordField()
    current_password = PasswordField(existing=True)

    @validates_schema
    def _password_needs_current(self, data: dict[str, Any], **_: Any) -> None:
        if "password" in data and "current_password" not in data:
            raise ValidationError("Required to set a new password.", "current_password")


@api(tags=("users",), auth="user", responses={200: ok("The caller", UserOutSchema)})
async def get_me(request: web.Request) -> web.Response:
    """The authenticated user."""
    auth = await authenticate(request)
    return json_response(auth.user)


@api(tags=("users",), auth="user", body=UserUpdateSchema, hashes_password=True,
     responses={200: ok("The updated user", UserOutSchema)})
async def update_me(request: web.Request) -> web.Response:
    """Change your name, email notifications or password.

    A new password needs `current_password` and ends your other sessions.
    """
    auth = await authenticate(request)
    changes = await load_json(request, UserUpdateSchema())
    if "password" in changes:
        await ratelimit.password_attempt(request)
    user = await accounts.update_me(request.app[DB], request.app[REDIS], request.app[SETTINGS], user_id=auth.user_id,
                                    session_id=auth.claims.session_id, changes=changes)
    return json_response(user)


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/users/me", get_me, name="users-me")
    app.router.add_patch("/api/v1/users/me", update_me, name="users-me-update")
