"""The OpenAPI document says what the server does: responses derived from each route's traits, enforced
constraints in the schemas, the download media types, one document behind the docs page."""
from __future__ import annotations

from pathlib import Path

import pytest

from shared.idempotency import KEY_PATTERN

ROOT = Path(__file__).resolve().parents[2]

SPEC = "/api/v1/openapi.json"


@pytest.fixture
async def spec(client):
    return await (await client.get(SPEC)).json()


def _operations(spec):
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            yield path, method, op


async def test_every_operation_documents_the_statuses_its_traits_imply(spec):
    for path, method, op in _operations(spec):
        codes = set(op["responses"])
        if op.get("security"):
            assert {"401", "429"} <= codes, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "415", "422"} <= codes, (method, path)
        if "{id}" in path:
            assert "404" in codes, (method, path)
        headers = {p["name"] for p in op.get("parameters", []) if p["in"] == "header"}
        assert ("If-None-Match" in headers) == ("304" in codes), (method, path)
        assert ("If-Match" in headers) == ("412" in codes), (method, path)
        for status, response in op["responses"].items():
            if status.startswith("4"):
                assert response["$ref"] == f"#/components/responses/Problem{status}"
    problem = spec["components"]["responses"]["Problem401"]
    assert list(problem["content"]) == ["application/problem+json"] and problem["headers"]["WWW-Authenticate"]
    assert {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
        spec["components"]["responses"]["Problem429"]["headers"])


async def test_rate_limited_public_routes_declare_429(spec):
    for path in ("register", "login", "password-reset", "password-reset/confirm"):
        assert "429" in spec["paths"][f"/api/v1/auth/{path}"]["post"]["responses"], path


async def test_enforced_constraints_are_in_the_schemas(spec):
    schemas = spec["components"]["schemas"]
    assert (schemas["Register"]["properties"]["password"]["minLength"],
            schemas["Register"]["properties"]["password"]["maxLength"]) == (8, 128)
    assert schemas["Register"]["additionalProperties"] is False
    key = next(p for p in spec["paths"]["/api/v1/tasks"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    assert key["schema"]["pattern"] == KEY_PATTERN
    # A token field is any string: a non-live one is 401, not a length error.
    assert schemas["Refresh"]["properties"]["refresh_token"] == {"type": "string",
                                                                 "description": "A token this service issued"}
    assert schemas["Refresh"]["required"] == ["refresh_token"]


async def test_downloads_declare_their_media_types(spec):
    export = spec["paths"]["/api/v1/exports/{id}/download"]["get"]["responses"]["200"]
    assert set(export["content"]) == {"text/csv", "application/pdf"}
    report = spec["paths"]["/api/v1/reports/{id}/download"]["get"]["responses"]["200"]
    assert set(report["content"]) == {"application/pdf"}


async def test_body_required_is_what_the_server_enforces(client, spec, make_user):
    user = await make_user()
    task = await (await client.post("/api/v1/tasks", json={"title": "t"}, headers=user.headers)).json()
    assert spec["paths"]["/api/v1/tasks/{id}"]["patch"]["requestBody"]["required"] is True
    empty = await client.patch(f"/api/v1/tasks/{task['id']}", headers=user.headers)
    assert empty.status == 422
    assert spec["paths"]["/api/v1/auth/logout"]["post"]["requestBody"]["required"] is False
    assert (await client.post("/api/v1/auth/logout", headers=user.headers)).status == 204


async def test_creations_link_to_the_created_resource(spec):
    links = spec["paths"]["/api/v1/tasks"]["post"]["responses"]["201"]["links"]
    assert set(links) == {"task-detail", "task-update", "task-delete", "task-comments", "task-comment-create",
                          "task-restore", "task-attachments", "task-attachment-create",
                          "task-activity"}
    assert links["task-detail"]["parameters"] == {"id": "$response.body#/id"}
    assert set(spec["paths"]["/api/v1/reports"]["post"]["responses"]["202"]["links"]) == {
        "report-detail", "report-download"}


async def test_no_handler_docstring_repeats_error_responses():
    handlers = [*(ROOT / "web" / "api").glob("*.py"), *(ROOT / "web" / "pages").glob("*.py")]
    assert len(handlers) > 10  # the folders moved: an empty glob would pass without checking anything
    for module in handlers:
        assert "components/responses" not in module.read_text(), module.name
