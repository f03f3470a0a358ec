"""The OpenAPI 3.1 document, derived from each route's traits; Swagger UI served locally.

A handler declares what it *is* with ``@api(...)`` — authenticated, takes a JSON body, conditional,
idempotent, rate limited — plus its own success responses and domain errors. Every status code that
follows from a trait (401 for a bearer route, 400/413/415/422 for a JSON body, 304/412 for
conditional requests, 429 where limits apply...) is added here, in one place, so no handler repeats
them and none can forget one. The handler's docstring gives the summary (first line) and description.
"""
from __future__ import annotations

import copy
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, TypeVar

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema
from swagger_ui.core import ApplicationDocument
from swagger_ui.handlers.aiohttp import handler as swagger_ui_handler

from shared.idempotency import HEADER as IDEMPOTENCY_HEADER, KEY_PATTERN
from shared.tasks import MAX_ID
from web.request import json_response
from web.schemas import ProblemSchema
from web.security_headers import TRUSTED_INLINE_HTML

SPEC_URL = "/api/v1/openapi.json"
DOCS_PREFIX = "/api/docs"
OPENAPI_KEY = web.AppKey("openapi", dict)
PROBLEM_STATUSES = (400, 401, 403, 404, 409, 410, 412, 413, 414, 415, 422, 429, 431, 503)
# Any request can be refused before it reaches its route: by the HTTP parser (web/protocol.py: malformed 400,
# request line too long 414, headers too large 431), or by the per-user ``api`` tier, which counts every
# /api/ request that carries a validly signed credential, whatever the route (429). Every operation
# declares them.
ANY_REQUEST_STATUSES = frozenset({400, 414, 429, 431})
IDEMPOTENCY_KEY = {"type": "string", "pattern": KEY_PATTERN,
                   "description": "Replays the first response for 24 h; a UUID is a good choice"}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "Requests allowed in the window", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the window", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the window resets", "schema": {"type": "integer"}},
}
Handler = TypeVar("Handler", bound=Callable[..., Any])


@dataclass(frozen=True)
class Traits:
    """What a route is. ``auth``: None (public), "user" or "admin" (bearer; admins-only adds 403)."""

    tags: tuple[str, ...]
    responses: dict[int, dict[str, Any]]
    auth: Literal["user", "admin"] | None = None
    body: Schema | type[Schema] | None = None
    body_required: bool = True
    query: Schema | type[Schema] | None = None
    conditional: Literal["read", "write"] | None = None  # If-None-Match → 304, or If-Match → 412
    idempotent: bool = False  # Idempotency-Key: 409 while the first request runs, 422 on another body
    rate_limited: bool = False  # per-address/email limits of the public auth routes (bearer routes always are)
    errors: tuple[int, ...] = ()  # domain errors of this operation alone (409 duplicate email, 410 expired...)
    # Runs bcrypt: limited per address (429) and refused with 503 + Retry-After while the bounded bcrypt
    # queue is full (shared/security.py).
    hashes_password: bool = False


def api(**traits: Any) -> Callable[[Handler], Handler]:
    """Declare a handler's traits: ``@api(tags=("tasks",), auth="user", body=Schema, responses={...})``."""
    def mark(handler: Handler) -> Handler:
        handler.__api__ = Traits(**traits)  # type: ignore[attr-defined]
        return handler
    return mark


def ok(description: str, schema: Any = None, *, headers: tuple[str, ...] = (),
       content: dict[str, Any] | None = None) -> dict[str, Any]:
    """A success response: JSON ``schema`` (or raw ``content``) and the headers it always carries."""
    response: dict[str, Any] = {"description": description}
    if headers:
        response["headers"] = {name: {"required": True, "schema": {"type": "string"}} for name in headers}
    if schema is not None:
        response["content"] = {"application/json": {"schema": schema}}
    if content is not None:
        response["content"] = content
    return response


def _problem(status: int) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/Problem{status}"}


def _responses(traits: Traits, path: str) -> dict[str, Any]:
    codes = set(traits.errors) | ANY_REQUEST_STATUSES
    if traits.auth:
        codes |= {401, 429} | ({403} if traits.auth == "admin" else set())
    if traits.body is not None:
        codes |= {400, 413, 415, 422}
    if traits.query is not None:
        codes.add(422)
    if "{" in path:
        codes.add(404)
    if traits.conditional == "write":
        codes.add(412)
    if traits.idempotent:
        codes |= {409, 422}
    if traits.rate_limited:
        codes.add(429)
    if traits.hashes_password:
        codes |= {429, 503}
    if traits.auth or traits.body is not None:  # touches the primary: 503 while it fails over (docs/ha.md)
        codes.add(503)
    # A copy: apispec resolves schemas in place, and every app built (tests build many) reads the same traits.
    responses: dict[str, Any] = {str(code): copy.deepcopy(value) for code, value in traits.responses.items()}
    if traits.conditional == "read":
        responses["304"] = {"description": "Not modified: the If-None-Match ETag is current",
                            "headers": {"ETag": {"required": True, "schema": {"type": "string"}}}}
    responses.update({str(code): _problem(code) for code in sorted(codes)})
    return responses


def _parameters(traits: Traits, path: str) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
        for name in re.findall(r"{(\w+)}", path)]
    if traits.query is not None:
        parameters.append({"in": "query", "schema": traits.query})
    if traits.conditional == "read":
        parameters.append({"in": "header", "name": "If-None-Match", "schema": {"type": "string"},
                           "description": "An ETag you hold: 304 if it is still current"})
    if traits.conditional == "write":
        parameters.append({"in": "header", "name": "If-Match", "schema": {"type": "string"},
                           "description": "Change only if the ETag still matches (else 412)"})
    if traits.idempotent:
        parameters.append({"in": "header", "name": IDEMPOTENCY_HEADER, "schema": IDEMPOTENCY_KEY})
    return parameters


def operation(route: web.AbstractRoute, traits: Traits) -> dict[str, Any]:
    path = route.resource.canonical if route.resource else ""
    summary, _, description = inspect.cleandoc(route.handler.__doc__ or "").partition("\n")
    op: dict[str, Any] = {"operationId": route.name or route.handler.__name__, "summary": summary.rstrip("."),
                          "tags": list(traits.tags), "responses": _responses(traits, path)}
    if description.strip():
        op["description"] = description.strip()
    if traits.auth:
        op["security"] = [{"bearerAuth": []}]
    if parameters := _parameters(traits, path):
        op["parameters"] = parameters
    if traits.body is not None:
        op["requestBody"] = {"required": traits.body_required,
                             "content": {"application/json": {"schema": traits.body}}}
    return op


def _links(paths: dict[str, dict[str, Any]]) -> None:
    """Stateful testing and clients follow these: a created resource's id, or a listed one, into its own routes."""
    for path, operations in paths.items():
        item_routes = [(p, m, op) for p, ops in paths.items() if p.startswith(f"{path}/{{id}}")
                       for m, op in ops.items()]
        for method, op in operations.items():
            for status, source in (("201", "$response.body#/id"), ("202", "$response.body#/id"),
                                   ("200", "$response.body#/items/0/id" if method == "get" else "")):
                response = op["responses"].get(status)
                if not source or response is None or "$ref" in response:
                    continue
                response["links"] = {target["operationId"]: {"operationId": target["operationId"],
                                                             "parameters": {"id": source}}
                                     for _, _, target in item_routes}
                if not response["links"]:
                    del response["links"]


def _components(spec: APISpec) -> None:
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Problem", schema=ProblemSchema)
    headers: dict[int, dict[str, Any]] = {
        401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
        429: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
              **RATE_LIMIT_HEADERS},
        # During a database failover (docs/ha.md), while Redis-backed password reset is down, or while the
        # bounded bcrypt queue is full (shared/security.py).
        503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    }
    for status in PROBLEM_STATUSES:
        response = {"description": "Problem details (RFC 9457)",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        if status in headers:
            response["headers"] = headers[status]
        spec.components.response(f"Problem{status}", response)


def build_spec(app: web.Application) -> dict[str, Any]:
    """Every route whose handler carries ``@api`` traits."""
    spec = APISpec(title="Taskdeck API", version="1.0.0", openapi_version="3.1.0", plugins=[MarshmallowPlugin()],
                   info={"description": "Tasks, exports and reports. Every error is RFC 9457 problem details; "
                                        "validation errors list messages by dotted field path."})
    _components(spec)
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        traits = getattr(route.handler, "__api__", None)
        if route.resource is None or route.method == "HEAD" or traits is None:
            continue
        paths.setdefault(route.resource.canonical, {})[route.method.lower()] = operation(route, traits)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _links(document["paths"])
    return document


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


class _SwaggerUI(ApplicationDocument):
    """swagger-ui-py, pointed at the one document (its default serves a copy under ``<prefix>/swagger.json``)."""

    @property
    def swagger_json_uri_absolute(self) -> str:
        return SPEC_URL


def setup_routes(app: web.Application) -> None:
    """Call last: the document covers the routes registered before it."""
    app.router.add_get(SPEC_URL, get_openapi, name="openapi")
    app[OPENAPI_KEY] = build_spec(app)
    # A config_rel_url stops swagger-ui-py from registering its own copy of the document; the files of
    # Swagger UI ship in the wheel, so the page needs no CDN. BaseLayout: no top bar, whose logo is an SVG
    # with an inline <style> the Content-Security-Policy would block (and whose "explore any URL" box we do
    # not want). The page's inline init script is allowed by hash (web/security_headers.py).
    doc = _SwaggerUI(app, config_rel_url=SPEC_URL, url_prefix=DOCS_PREFIX, title="Taskdeck API",
                     parameters={"layout": '"BaseLayout"'})
    swagger_ui_handler(doc)
    app.setdefault(TRUSTED_INLINE_HTML, []).append(doc.doc_html)
