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
from shared.db import failover
from shared.errors import AppError, ServiceUnavailable
from shared.observability import metrics as shared_metrics
from shared.observability.logs import request_id_var
from web import metrics, ratelimit
from web.keys import AUTH, DB, REQUEST_ID, SETTINGS
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
async def undecodable_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A header whose bytes are not UTF-8 is refused (400) before anything reads it.

    aiohttp keeps such bytes as lone surrogates in the ``str`` it hands out, which cannot be encoded again:
    every later ``.encode()`` of the value (the JWT of a session cookie or bearer token, the HMAC check of a
    CSRF token, a rate-limit key) would raise deep inside. Refusing them here covers every header and cookie,
    those read today and those read later. Answered as problem+json even to browsers: the HTML error page
    reads the same cookies.
    """
    for name, value in request.raw_headers:
        if not (name.isascii() and value.isascii()):
            try:
                name.decode("utf-8")
                value.decode("utf-8")
            except UnicodeDecodeError:
                header = name.decode("ascii", "replace")
                return problem_response(400, detail=f"The {header} header is not valid UTF-8",
                                        request_id=request.get(REQUEST_ID, "-"))
    return await handler(request)


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
    except Exception as exc:
        if failover.classify(exc) is not None:  # lost outside a handler's retry (middlewares, auth): 503
            logger.warning("database unavailable on %s %s: %s", request.method, request.rel_url.path,
                           type(exc).__name__)
            return render(503, detail="The database is failing over; try again in a few seconds",
                          headers={"Retry-After": RETRY_AFTER}, request_id=request_id)
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


# --- failover: a request that lost the primary is retried once when that is safe, else 503 ------------
# How long a retry waits for a new primary: Patroni's failover takes about its TTL (docs/ha.md), and a
# caller that waits this long gets its answer instead of a 503. Never longer than DB_COMMAND_TIMEOUT.
FAILOVER_WAIT = 8.0
RETRY_AFTER = "2"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _retry_is_safe(request: web.Request) -> bool:
    """A read, or a write under an Idempotency-Key on a route that honours it: running it twice is one run."""
    if request.method in SAFE_METHODS:
        return True
    traits = getattr(request.match_info.handler, "__api__", None)
    return bool(getattr(traits, "idempotent", False) and request.headers.get("Idempotency-Key"))


def _unavailable(exc: BaseException, outcome: str) -> ServiceUnavailable:
    shared_metrics.DB_RETRIES.labels(outcome).inc()
    logger.warning("database unavailable (%s: %s); answering 503", type(exc).__name__, failover.classify(exc))
    return ServiceUnavailable("The database is failing over; try again in a few seconds",
                              headers={"Retry-After": RETRY_AFTER})


@web.middleware
async def failover_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Innermost (only the handler is re-run: limits are not counted twice). See shared/failover.py."""
    try:
        return await handler(request)
    except Exception as exc:  # noqa: BLE001 - classified below; everything else goes on unchanged
        kind = failover.classify(exc)
        if kind is None:
            raise
        first = exc
    pool = request.app[DB].write
    if kind in (failover.TIMEOUT, failover.BUSY) or not _retry_is_safe(request):
        if kind in (failover.PRIMARY_GONE, failover.READ_ONLY):
            await pool.expire_connections()  # the next request connects afresh, to whoever is primary
        raise _unavailable(first, "refused") from first
    budget = min(FAILOVER_WAIT, request.app[SETTINGS].db_command_timeout)
    if not await failover.wait_for_primary(pool, budget):
        raise _unavailable(first, "no-primary") from first
    try:
        response = await handler(request)
    except Exception as exc:  # noqa: BLE001
        if failover.classify(exc) is None:
            raise
        raise _unavailable(exc, "failed-again") from exc
    shared_metrics.DB_RETRIES.labels("succeeded").inc()
    return response
