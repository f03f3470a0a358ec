"""RFC 9457 problem details: the one place an error becomes a response body."""
from __future__ import annotations

import json
from typing import Any, Mapping

from aiohttp import web

from web.pages.common import login_url, render

PROBLEM_CONTENT_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 409: "Conflict", 410: "Gone", 412: "Precondition Failed", 413: "Payload Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}


def wants_html(request: web.Request) -> bool:
    """Browsers on the HTML pages get an error page; API clients (and anything under /api/) a problem."""
    return not request.path.startswith("/api/") and "text/html" in request.headers.get("Accept", "")


def error_page(request: web.Request, status: int, *, detail: str, request_id: str, title: str | None = None,
               headers: Mapping[str, str] | None = None, **_: Any) -> web.Response:
    """The HTML twin of problem_response (same arguments; validation details are for API clients)."""
    if status == 401 and request.method == "GET":  # a page that needs a signed-in browser: sign in first
        return web.Response(status=303, headers={"Location": login_url(request.path_qs)})
    context = {"status": status, "title": title or _TITLES.get(status, "Error"),
               "detail": detail, "request_id": request_id}
    response = render(request, "errors/error.html", context, status)
    response.headers.update(headers or {})
    return response


def problem_response(status: int, *, detail: str, request_id: str, slug: str | None = None,
                     title: str | None = None, errors: Mapping[str, Any] | None = None,
                     headers: Mapping[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {
        "type": f"/problems/{slug or str(status)}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    response = web.Response(status=status, text=json.dumps(body), headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    response.charset = "utf-8"
    return response
