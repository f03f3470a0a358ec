"""Browser sessions: the HttpOnly cookie, CSRF tokens and flash messages.

The cookie names a row of the same ``sessions`` table the bearer tokens use, and ``web.auth.authenticate``
checks that row on every request: logout, deactivation, a password reset and "sign out everywhere" end a
browser session exactly when they end its tokens. The cookie itself is a signed JWT (``typ: browser``), so a
forged or edited one is refused before any database work.

CSRF: a token is an HMAC of what the request is bound to: the session id when signed in, else a random
per-browser nonce cookie (login and register forms). It travels in a form field (``csrf_token``) or the
``X-CSRF-Token`` header. SameSite=Lax already stops most cross-site posts; the token is the real check.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from typing import Any

import jwt
from aiohttp import web

from shared.config import Settings
from shared.errors import Forbidden
from shared.security import JWT_ALGORITHM, AccessClaims, decode_claims
from web.keys import SETTINGS
from web.request import streams_body

SESSION_COOKIE = "taskdeck_session"
NONCE_COOKIE = "taskdeck_csrf"
FLASH_COOKIE = "taskdeck_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
NONCE_KEY = web.RequestKey("csrf_nonce", str)  # a nonce minted during this request, to be set as a cookie
FLASH_SHOWN = web.RequestKey("flash_shown", bool)


def _secure(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


def _cookie_options(settings: Settings, max_age: int | None) -> dict[str, Any]:
    return {"httponly": True, "samesite": "Lax", "secure": _secure(settings), "path": "/", "max_age": max_age}


# -- the session cookie ------------------------------------------------------------------------------------

def session_token(settings: Settings, *, user_id: int, session_id: str) -> str:
    """The cookie value for a session; it expires with the refresh tokens of that login."""
    now = int(time.time())
    payload = {"sub": str(user_id), "sid": session_id, "jti": uuid.uuid4().hex, "iat": now,
               "exp": now + settings.refresh_token_ttl, "typ": "browser"}
    return jwt.encode(payload, settings.secret_key, algorithm=JWT_ALGORITHM)


def decode_session(settings: Settings, token: str) -> AccessClaims:
    """The claims of a session cookie; Unauthorized when it is forged, expired or not a browser token."""
    return decode_claims(settings, token, typ="browser", expired="The session has expired; sign in again",
                         invalid="The session cookie is invalid; sign in again")


def set_session_cookie(response: web.StreamResponse, settings: Settings, *, user_id: int, session_id: str) -> None:
    response.set_cookie(SESSION_COOKIE, session_token(settings, user_id=user_id, session_id=session_id),
                        **_cookie_options(settings, settings.refresh_token_ttl))


def clear_session_cookie(response: web.StreamResponse, settings: Settings) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", secure=_secure(settings), httponly=True, samesite="Lax")


# -- CSRF ----------------------------------------------------------------------------------------------

def _mac(settings: Settings, purpose: str, value: str) -> str:
    digest = hmac.new(settings.secret_key.encode(), f"{purpose}|{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def csrf_token(request: web.Request, settings: Settings, session_id: str | None) -> str:
    """The token forms of this page carry: bound to the session, or (signed out) to the browser's nonce."""
    if session_id is not None:
        return _mac(settings, "csrf", "s:" + session_id)
    nonce = request.cookies.get(NONCE_COOKIE) or request.get(NONCE_KEY)
    if not nonce:
        nonce = secrets.token_urlsafe(24)
        request[NONCE_KEY] = nonce
    return _mac(settings, "csrf", "a:" + nonce)


async def submitted_csrf(request: web.Request) -> str:
    """The token the request sent: the header, else the form field of a form post."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if streams_body(request):  # a streamed upload form carries it in its action URL (web/pages/task_depth.py)
        return request.query.get(CSRF_FIELD, "")
    if request.content_type in FORM_TYPES:
        return str((await request.post()).get(CSRF_FIELD, ""))
    return ""


async def check_csrf(request: web.Request, settings: Settings, session_id: str | None) -> None:
    """403 for an unsafe request whose token is missing or wrong (safe methods pass)."""
    if request.method in SAFE_METHODS:
        return
    if session_id is None and not request.cookies.get(NONCE_COOKIE):
        raise Forbidden("This form needs cookies; enable them for this site and reload the page")
    expected = csrf_token(request, settings, session_id)
    if not hmac.compare_digest(expected.encode(), (await submitted_csrf(request)).encode()):
        raise Forbidden("The security token of this form is missing or out of date; reload the page and retry")


# -- flash messages ----------------------------------------------------------------------------------------

def set_flash(response: web.StreamResponse, settings: Settings, text: str, level: str = "ok") -> None:
    """A one-line message for the next page (signed, so nobody can plant text in someone's page)."""
    payload = base64.urlsafe_b64encode(json.dumps([level, text]).encode()).decode()
    response.set_cookie(FLASH_COOKIE, f"{payload}.{_mac(settings, 'flash', payload)}",
                        **_cookie_options(settings, 60))


def read_flash(request: web.Request, settings: Settings) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE, "")
    payload, _, mac = raw.partition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(settings, "flash", payload).encode()):
        return None
    request[FLASH_SHOWN] = True
    try:
        level, text = json.loads(base64.urlsafe_b64decode(payload))
    except ValueError:
        return None
    return {"level": "error" if level == "error" else "ok", "text": str(text)}


def finish(request: web.Request, response: web.StreamResponse) -> None:
    """Set the nonce minted while rendering, and drop a flash message once it has been shown."""
    settings = request.app[SETTINGS]
    nonce = request.get(NONCE_KEY)
    if nonce and not request.cookies.get(NONCE_COOKIE):
        response.set_cookie(NONCE_COOKIE, nonce, **_cookie_options(settings, 365 * 24 * 3600))
    if request.get(FLASH_SHOWN) and FLASH_COOKIE not in response.cookies:
        response.del_cookie(FLASH_COOKIE, path="/", secure=_secure(settings), httponly=True, samesite="Lax")
