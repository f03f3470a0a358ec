"""Schemas used by more than one resource: users, token pairs, problems, pages, common validators."""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from shared.db.pagination import DEFAULT_LIMIT, MAX_LIMIT
from shared.security import PASSWORD_MAX, PASSWORD_MIN


class Text(fields.String):
    """A string PostgreSQL can store (no NUL, no lone surrogates), optionally trimmed before validation."""

    # In the OpenAPI document too, so that clients (and schemathesis) know a NUL is refused.
    NO_NUL = "^[^\\u0000]*$"

    def __init__(self, *, trim: bool = False, **kwargs: Any) -> None:
        kwargs["metadata"] = {"pattern": self.NO_NUL, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)
        self.trim = trim

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text or not _encodable(text):
            raise ValidationError("Must be valid text without NUL characters.")
        return text.strip() if self.trim and not over_max_length(self, text) else text


def over_max_length(field: fields.Field | None, text: str) -> bool:
    """True when ``text`` as sent is longer than a Length validator of ``field`` allows.

    Such a value is not trimmed: the OpenAPI document (maxLength) promises a limit on what is sent, so
    padding cannot carry an over-long value past it; the field's own validator then refuses it (422).
    """
    return field is not None and any(isinstance(rule, validate.Length) and rule.max is not None
                                     and len(text) > rule.max for rule in field.validators)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Characters (code points), as JSON Schema's maxLength counts them; the pre-hash makes the bytes irrelevant.
NEW_PASSWORD = validate.Length(PASSWORD_MIN, PASSWORD_MAX)


def validate_password(value: str) -> None:
    """A password we would store: 8..128 characters, any characters."""
    NEW_PASSWORD(value)


class JsonBoolean(fields.Boolean):
    """A JSON true or false, nothing else: marshmallow's Boolean also takes 1, "yes", "on"... which the
    document (type: boolean) does not allow."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryBoolean(fields.Boolean):
    """A query-string boolean: exactly ``true`` or ``false``, as OpenAPI serialises one."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if value not in ("true", "false"):
            raise self.make_error("invalid")
        return value == "true"


class TrimmedSchema(Schema):
    """Strips surrounding white space from the string fields named in ``Meta.trim``."""

    class Meta:
        trim: tuple[str, ...] = ()

    @pre_load
    def _trim(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict):
            return {k: v.strip() if isinstance(v, str) and k in self.Meta.trim and not over_max_length(
                self.fields.get(k), v) else v for k, v in data.items()}
        return data


class EmailField(fields.Email):
    """An email, lower-cased: addresses are case-insensitive and stored that way."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=validate.Length(max=254), **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return str(super()._deserialize(value, attr, data, **kwargs)).lower()


class PasswordField(Text):
    """A new password. ``existing=True`` accepts any length (a wrong guess is a 401, not a 422)."""

    def __init__(self, existing: bool = False, **kwargs: Any) -> None:
        check = validate.Length(1, PASSWORD_MAX) if existing else NEW_PASSWORD
        super().__init__(validate=check, load_only=True, **kwargs)


class UserOutSchema(Schema):
    id = fields.Integer()
    email = fields.Email()
    name = fields.String()
    role = fields.String(validate=validate.OneOf(["user", "admin"]))
    is_active = fields.Boolean()
    email_verified = fields.Boolean()
    email_notifications = fields.Boolean()
    created_at = fields.DateTime()


class UserPageSchema(Schema):
    items = fields.List(fields.Nested(UserOutSchema))
    next_cursor = fields.String(allow_none=True)


class TokenPairSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String(validate=validate.OneOf(["bearer"]))
    expires_in = fields.Integer()


class ProblemSchema(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    request_id = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))


def limit_field() -> fields.Integer:
    return fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(1, MAX_LIMIT))


def cursor_field() -> fields.String:
    # Our cursors are under 200 characters. 500 keeps even a cursor of 4-byte characters, percent-encoded
    # (12 bytes each), inside the HTTP parser's 8 KiB request line, so a long one is a 422, never a 400.
    return Text(load_default=None, validate=validate.Length(max=500))
