"""Request id, metrics and the single error mapping."""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from shared import audit
from shared.errors import AppError
from shared.observability.logs import request_id_var
from web import metrics, ratelimit
from web.keys import AUTH, DB, REQUEST_ID
from web.problem import error_page, problem_response, wants_html

logger = logging.getLogger("app.web")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Echo a sane client X-Request-ID or make one; it goes on every response and every log line."""
    incoming = request.headers.get("X-Request-ID", "")
    # 32 random hex digits, like uuid4().hex but without building a UUID object per request
    request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else os.urandom(16).hex()
    request[REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    # Where the request came from, for an audit entry written anywhere below (shared.audit).
    origin = audit.origin.set(audit.Origin(ratelimit.client_address(request), request.headers.get("User-Agent")))
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and 304 raised by handlers
        exc.headers["X-Request-ID"] = request_id
        raise
    finally:
        request_id_var.reset(token)
        audit.origin.reset(origin)
    response.headers["X-Request-ID"] = request_id
    return response


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    template = metrics.route_template(request)  # routing happens before the middlewares run
    in_flight = metrics.in_flight(request.method, template)
    in_flight.inc()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        in_flight.dec()
        metrics.observe_request(request.method, template, status, elapsed)
        logger.info("%s %s -> %s in %.1f ms", request.method, request.rel_url.path, status, elapsed * 1000)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as RFC 9457 problem+json; unknown ones are logged, never shown."""
    request_id = request.get(REQUEST_ID, "-")
    render = functools.partial(error_page, request) if wants_html(request) else problem_response
    try:
        return await handler(request)
    except AppError as exc:
        return render(exc.status, slug=exc.slug, title=exc.title, detail=exc.detail, errors=exc.errors,
                      headers=exc.headers, request_id=request_id)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After", "WWW-Authenticate")}
        return render(exc.status, detail=_http_detail(exc), headers=headers, request_id=request_id)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.rel_url.path)
        return render(500, detail="An unexpected error occurred. Quote the request id when reporting it.",
                      request_id=request_id)


def _http_detail(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "No such resource"
    if exc.status == 405:
        return f"Method not allowed; allowed: {exc.headers.get('Allow', '')}"
    if exc.status == 413:
        return "The request body is larger than 1 MiB"
    return exc.reason


# --- gzip -------------------------------------------------------------------------------
# JSON and HTML over ~1 KiB, when the client accepts gzip. Downloads (FileResponse: CSV, PDF) are a
# StreamResponse, not a Response, and are never touched: a PDF is compressed already and a CSV goes
# out with sendfile. Vary is set whether or not this client accepted, so shared caches keep both.
COMPRESS_MIN_BYTES = 1024
COMPRESSIBLE_TYPES = frozenset({"application/json", "application/problem+json", "text/html"})


@web.middleware
async def compression_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if (type(response) is not web.Response or response.content_type not in COMPRESSIBLE_TYPES
            or response.body is None or "Content-Encoding" in response.headers):
        return response
    response.headers.add("Vary", "Accept-Encoding")
    body = response.body
    size = len(body) if isinstance(body, (bytes, bytearray)) else COMPRESS_MIN_BYTES
    if size >= COMPRESS_MIN_BYTES and _accepts_gzip(request.headers.get("Accept-Encoding", "")):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def _accepts_gzip(header: str) -> bool:
    for part in header.lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() in ("gzip", "*"):
            quality = params.replace(" ", "").removeprefix("q=")
            return not (params and quality.rstrip("0").rstrip(".") in ("0", ""))
    return False


# --- read-your-writes: remember where each user's writes reached in the WAL -----------------
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def write_position_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After an authenticated caller's write request, record the primary's WAL position for them.

    Before the response leaves, so any read the caller makes after seeing it finds a replica that has
    the write, or the primary (shared/db/database.py). Failed requests count too: a 4xx usually wrote nothing,
    but a 5xx may have committed first, and one extra round trip is cheaper than a stale read.
    """
    try:
        return await handler(request)
    finally:
        auth = request.get(AUTH)
        if request.method in UNSAFE_METHODS and auth is not None and request.app[DB].replicas:
            await request.app[DB].wrote(auth.user_id)  # type: ignore[attr-defined]
