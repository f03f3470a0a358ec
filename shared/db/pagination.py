"""Opaque, tamper-proof keyset cursors: base64(JSON of the last row's sort key) + an HMAC.

The cursor names the listing it belongs to (``scope``), so a cursor from one sort order or filter
set cannot be replayed against another.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from shared.errors import ValidationFailed

DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, scope: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), f"cursor:{scope}:{payload}".encode(), hashlib.sha256).digest()[:16]
    return _b64(mac)


def encode_cursor(secret: str, scope: str, values: list[Any]) -> str:
    payload = _b64(json.dumps(values, separators=(",", ":"), default=str).encode())
    return f"{payload}.{_sign(secret, scope, payload)}"


def decode_cursor(secret: str, scope: str, cursor: str) -> list[Any]:
    """The key values stored in ``cursor``; a forged, truncated or foreign cursor is a 422."""
    invalid = ValidationFailed({"cursor": ["Invalid cursor; use the next_cursor of a previous page"]})
    payload, _, mac = cursor.partition(".")
    # compare_digest raises TypeError on non-ASCII str; a cursor we made is always ASCII.
    if not (payload and mac and cursor.isascii()) or not hmac.compare_digest(mac, _sign(secret, scope, payload)):
        raise invalid
    try:
        values = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise invalid from None
    if not isinstance(values, list):
        raise invalid
    return values


def page(rows: list[Any], limit: int, key: Any, secret: str, scope: str) -> tuple[list[Any], str | None]:
    """Split ``limit + 1`` fetched rows into the page and the cursor of the next one (None at the end)."""
    if len(rows) <= limit:
        return rows, None
    items = rows[:limit]
    return items, encode_cursor(secret, scope, key(items[-1]))


def decode_id_cursor(secret: str, scope: str, cursor: str | None) -> int | None:
    """The id a ``[id]`` cursor (lists ordered by id) points after; None without a cursor; else a 422."""
    if not cursor:
        return None
    values = decode_cursor(secret, scope, cursor)
    if len(values) != 1 or type(values[0]) is not int:  # a valid MAC does not excuse bad data
        raise ValidationFailed({"cursor": ["Invalid cursor; use the next_cursor of a previous page"]})
    return values[0]
