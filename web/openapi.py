"""OpenAPI 3.1 from the marshmallow schemas (apispec) and the handlers' docstrings; Swagger UI served locally."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.yaml_utils import load_yaml_from_docstring
from swagger_ui.core import ApplicationDocument

from web.request import json_response
from web.schemas import ProblemSchema
from web.security_headers import TRUSTED_INLINE_HTML

PROBLEM_STATUSES = (400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 429)
SPEC_URL = "/api/v1/openapi.json"
DOCS_PREFIX = "/api/docs"
OPENAPI_KEY = web.AppKey("openapi", dict)


def build_spec(app: web.Application) -> dict[str, Any]:
    """Every documented route of ``app``; a handler documents itself after ``---`` in its docstring."""
    spec = APISpec(title="Taskdeck API", version="1.0.0", openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Tasks, exports and reports. Errors are RFC 9457 problem details."})
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Problem", schema=ProblemSchema)
    for status in PROBLEM_STATUSES:
        spec.components.response(f"Problem{status}", {
            "description": "Problem details (RFC 9457)",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        })
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD" or not (route.handler.__doc__ or "").count("---"):
            continue
        operation = load_yaml_from_docstring(route.handler.__doc__)
        operation["responses"] = {str(code): value for code, value in operation.get("responses", {}).items()}
        operation.setdefault("summary", route.handler.__doc__.strip().splitlines()[0])
        operation.setdefault("operationId", route.name or route.handler.__name__)
        paths.setdefault(resource.canonical, {})[route.method.lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI_KEY])


def setup_routes(app: web.Application) -> None:
    """Call last: the document covers the routes registered before it."""
    app.router.add_get(SPEC_URL, get_openapi, name="openapi")
    spec = build_spec(app)
    app[OPENAPI_KEY] = spec
    # swagger-ui-py ships Swagger UI's files in the wheel, so the docs page needs no CDN.
    # (what swagger_ui.api_doc does, keeping the document: its page's inline init script is allowed
    # by hash in the Content-Security-Policy, see web/security_headers.py)
    # BaseLayout: no top bar, whose logo is an SVG with an inline <style> the policy would block
    # (and whose "explore any URL" box we do not want).
    doc = ApplicationDocument(app, config=json.loads(json.dumps(spec)), url_prefix=DOCS_PREFIX,
                              title="Taskdeck API", host_inject=False, parameters={"layout": '"BaseLayout"'})
    doc.match_handler()(doc)
    app.setdefault(TRUSTED_INLINE_HTML, []).append(doc.doc_html)
