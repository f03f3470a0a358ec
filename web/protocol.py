"""Requests aiohttp's HTTP parser refuses, answered as problem+json with the status that says why.

aiohttp answers such a request (a request line or a header over its limit, too many headers, broken
framing) itself, before routing and so before any middleware: ``RequestHandler.handle_error`` builds a
text/plain 400. That method is the hook aiohttp offers; the class is chosen by ``web.Server.__call__``,
and the Server is made by ``Application._make_handler``, which every runner calls (``run_app``, gunicorn's
``GunicornWebWorker``, the test server). aiohttp has no public setting for the handler class, so
``install`` wraps that one method of *our* app instance so that its Server makes ``ProblemRequestHandler``:
no global patch, no subclass of Application (which aiohttp discourages). Both names are private API of
aiohttp 3.x (pinned, see DEPS.md); tests/api/test_raw_http.py fails if an upgrade moves them.

Statuses: 414 for a request line over MAX_REQUEST_LINE, 431 for a header over MAX_HEADER_FIELD or too many
headers, 400 for anything else malformed. The parser raises the same ``LineTooLong`` for a long request line
and a long header, with the limit it hit; the two limits differ by design so that the limit tells them apart.
"Too many headers" has no class of its own, only its message.
"""
from __future__ import annotations

import os
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from web.problem import problem_response

# Bytes of method, target and version. aiohttp's default (8190) is shorter than a *valid* request: a cursor
# at its documented maximum of 1000 characters, 4-byte ones percent-encoded, is 12 KB alone. 32 KiB holds
# every query parameter at (and a little past) its documented length, so the schema answers those (422),
# not the parser; only a line no operation could accept is a 414.
MAX_REQUEST_LINE = 32 * 1024
MAX_HEADER_FIELD = 8190  # bytes of one header's name and value (aiohttp's default)
HANDLER_ARGS = {"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_HEADER_FIELD}
_DETAILS = {
    400: "The request is not valid HTTP/1.1",
    414: f"The request line is longer than {MAX_REQUEST_LINE} bytes; send long filters in fewer parameters",
    431: f"The request headers are too large (at most {MAX_HEADER_FIELD} bytes each, 128 in all)",
    500: "An unexpected error occurred. Quote the request id when reporting it.",
}


def parser_status(status: int, exc: BaseException | None) -> int:
    if isinstance(exc, LineTooLong):
        return 414 if exc.args[1:2] == (MAX_REQUEST_LINE,) else 431
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
        return 431
    return status


class ProblemRequestHandler(web.RequestHandler):
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # The parent logs, refuses when a response was already started, and closes the connection after.
        super().handle_error(request, status, exc, message)
        status = parser_status(status, exc)
        request_id = os.urandom(16).hex()  # no middleware ran, so no id yet
        response = problem_response(status, detail=_DETAILS.get(status, _DETAILS[400]), request_id=request_id,
                                    headers={"X-Request-ID": request_id, "X-Content-Type-Options": "nosniff"})
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


def install(app: web.Application) -> None:
    """Make the servers every runner builds for ``app`` answer parser errors as problem+json."""
    make_handler = app._make_handler

    def _make_handler(**kwargs: Any) -> web.Server:
        server = make_handler(**kwargs)
        server.__class__ = _ProblemServer  # same state; only the protocol class it makes differs
        return server

    object.__setattr__(app, "_make_handler", _make_handler)
