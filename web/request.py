"""Turning request bodies and query strings into validated data (or the contract's 4xx)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from aiohttp import web
from marshmallow import Schema, ValidationError

from shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

MAX_BODY = 1024 * 1024
NO_BODY: Any = object()  # an empty body, as opposed to the JSON value null


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request) -> Any:
    """The body as JSON: 413 over 1 MiB, 415 when not JSON, 400 when malformed. An empty body is ``NO_BODY``."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise PayloadTooLarge("The request body is larger than 1 MiB")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("The request body is larger than 1 MiB") from None
    if not raw.strip():
        return NO_BODY
    mime = request.content_type
    if mime != "application/json" and not mime.endswith("+json"):
        raise UnsupportedMediaType(f"Expected Content-Type application/json, got {mime or 'none'}")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"Malformed JSON: {exc}") from None
    except RecursionError:  # nesting deeper than the parser's recursion limit: refused, like any bad JSON
        raise BadRequest("Malformed JSON: nested too deeply") from None


async def load_json(request: web.Request, schema: Schema, *, required: bool = True) -> dict[str, Any]:
    """Read the body and load it with ``schema``; validation problems become one 422.

    ``required`` must match the route's ``body_required`` trait: the document promises what this enforces.
    """
    data = await read_json(request)
    if data is NO_BODY:
        if required:
            raise ValidationFailed({"_schema": ["A JSON object is required as the request body"]})
        data = {}
    if not isinstance(data, dict):
        raise ValidationFailed({"_schema": ["Expected a JSON object"]})
    return load(schema, data)


def load_query(request: web.Request, schema: Schema) -> dict[str, Any]:
    """Query parameters through ``schema``; fields declared as List collect repeated parameters."""
    return load_query_pairs(schema, tuple(request.query.items()))


def load_query_pairs(schema: Schema, pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``load_query`` of (name, value) pairs in query-string order (hashable, so callers may memoise)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        field = schema.fields.get(key)
        if field is not None and field.__class__.__name__ == "List":
            data.setdefault(key, []).append(value)
        else:
            data[key] = value  # the last one wins
    return load(schema, data)


def load(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages) from None  # flattened to dotted paths there


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def rfc3339(value: datetime) -> str:
    """UTC with a trailing Z, as the contract writes timestamps (fraction only when there is one)."""
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_default)
