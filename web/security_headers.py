"""Security headers on every response, from one place; and a guard for path segments no file can have.

The headers are set in an ``on_response_prepare`` handler rather than a middleware: it runs for every
response just before its headers go out, including static files, streamed downloads, redirects and
errors raised past the middlewares, so no response can miss them.

The HTML policy allows no inline script or style, except the inline blocks of sources we trust at
start-up (our own templates, Swagger UI's page), allowed by their SHA-256 hash: markup injected at run
time can never match one.
"""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Iterable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from shared.errors import BadRequest
from web.keys import SETTINGS
from web.request import streams_body

# Pages whose URL carries a one-time token: the Referer must not hand it to anything they link to.
TOKEN_PAGES = ("/verify-email", "/reset-password")
# HTML whose inline <script>/<style> blocks are trusted (appended at setup, e.g. the Swagger UI page).
TRUSTED_INLINE_HTML = web.AppKey("trusted_inline_html", list)
POLICY = web.AppKey("content_security_policy", str)
HSTS = "max-age=31536000; includeSubDomains"
# Longer than any file name (NAME_MAX): such a path names nothing we serve, and a static handler would
# turn it into an OSError (ENAMETOOLONG), i.e. a 500.
MAX_SEGMENT_BYTES = 255

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_INLINE = re.compile(r"<(script|style)\b([^>]*)>(.*?)</\1\s*>", re.S | re.I)


def inline_hashes(html: str) -> dict[str, set[str]]:
    """CSP source expressions ('sha256-...') of the inline script and style blocks of ``html``.

    Blocks holding Jinja syntax are skipped: their rendered text is not what we would hash.
    """
    found: dict[str, set[str]] = {"script": set(), "style": set()}
    for tag, attributes, body in _INLINE.findall(html):
        if (tag.lower() == "script" and re.search(r"\bsrc\s*=", attributes)) or "{{" in body or "{%" in body:
            continue
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        found[tag.lower()].add(f"'sha256-{digest}'")
    return found


def build_policy(trusted_html: Iterable[str]) -> str:
    scripts: set[str] = set()
    styles: set[str] = set()
    for html in trusted_html:
        hashes = inline_hashes(html)
        scripts |= hashes["script"]
        styles |= hashes["style"]
    return "; ".join([
        "default-src 'self'",
        " ".join(["script-src 'self'", *sorted(scripts)]),
        " ".join(["style-src 'self'", *sorted(styles)]),
        "img-src 'self' data:",  # Swagger UI's icons are data: SVGs in its CSS
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def template_sources(*folders: Path) -> list[str]:
    return [path.read_text(encoding="utf-8") for folder in folders if folder.is_dir()
            for path in sorted(folder.rglob("*.html"))]


async def _freeze_policy(app: web.Application) -> None:
    app[POLICY] = build_policy(app[TRUSTED_INLINE_HTML])


async def set_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    token_in_url = request.path.rstrip("/") in TOKEN_PAGES or "token" in request.query
    headers["Referrer-Policy"] = "no-referrer" if token_in_url else "same-origin"
    if request.app[SETTINGS].public_url.startswith("https://"):
        headers["Strict-Transport-Security"] = HSTS
    if (response.content_type or "").startswith("text/html"):
        headers["Content-Security-Policy"] = request.app[POLICY]
        headers["X-Frame-Options"] = "DENY"


@web.middleware
async def hostile_input_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Input that aiohttp itself would turn into a 500 is refused first, for every route.

    - a path segment longer than any file name: 404 (a static handler would raise ENAMETOOLONG);
    - a form that is not UTF-8 or has a broken multipart boundary: 400 (``request.post()`` would raise
      UnicodeDecodeError or ValueError). Parsed here, within client_max_size; aiohttp caches the result
      for the handler's own ``post()``.
    """
    if any(len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for segment in request.path.split("/")):
        raise web.HTTPNotFound()
    if request.content_type in FORM_TYPES and not streams_body(request):
        try:
            await request.post()
        except (UnicodeDecodeError, LookupError, ValueError, HttpProcessingError):  # e.g. a part's invalid header
            raise BadRequest("The form is malformed or not valid UTF-8") from None
    return await handler(request)


def setup(app: web.Application, template_folders: Iterable[Path]) -> None:
    """Call before the routes: they may add trusted HTML (Swagger UI) to ``app[TRUSTED_INLINE_HTML]``."""
    app[TRUSTED_INLINE_HTML] = template_sources(*template_folders)
    app.on_startup.append(_freeze_policy)
    app.on_response_prepare.append(set_security_headers)
