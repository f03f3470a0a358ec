"""The OpenAPI description of the task routes, and response basics."""
from __future__ import annotations

from shared import tasks

TASKS = "/api/v1/tasks"


async def test_openapi_documents_every_task_operation(client):
    spec = await (await client.get("/api/v1/openapi.json")).json()
    expected = {TASKS: {"get", "post"}, f"{TASKS}/stats": {"get"}, f"{TASKS}/{{id}}": {"get", "patch", "delete"}}
    for path, methods in expected.items():
        assert set(spec["paths"][path]) >= methods, path
        for method in methods:
            operation = spec["paths"][path][method]
            assert operation["security"] == [{"bearerAuth": []}]
            assert "401" in operation["responses"] and operation["tags"] == ["tasks"]
    schemas = spec["components"]["schemas"]
    assert set(schemas["TaskOut"]["properties"]) == set(tasks.TASK_FIELDS)
    assert schemas["TaskCreate"]["required"] == ["title"] and "required" not in schemas["TaskUpdate"]
    assert schemas["TaskCreate"]["additionalProperties"] is False
    create = spec["paths"][TASKS]["post"]
    assert {"201", "409", "422"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    list_params = {p["name"] for p in spec["paths"][TASKS]["get"]["parameters"]}
    assert list_params == {"status", "priority", "tag", "q", "due_before", "due_after", "overdue", "sort", "limit",
                           "cursor", "owner_id", "project_id", "assignee_id", "parent_id"}
    assert "412" in spec["paths"][f"{TASKS}/{{id}}"]["patch"]["responses"]


async def test_responses_carry_request_ids_and_json_content_type(client, make_user):
    user = await make_user()
    response = await client.post(TASKS, json={"title": "t"}, headers={**user.headers, "X-Request-ID": "req-7"})
    assert response.headers["X-Request-ID"] == "req-7"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    task = await response.json()
    for path in (TASKS, f"{TASKS}/stats", f"{TASKS}/{task['id']}"):
        got = await client.get(path, headers=user.headers)
        assert got.headers["Content-Type"] == "application/json; charset=utf-8" and got.headers["X-Request-ID"]
    conditional = {**user.headers, "If-None-Match": response.headers["ETag"]}
    not_modified = await client.get(f"{TASKS}/{task['id']}", headers=conditional)
    assert not_modified.status == 304 and not_modified.headers["X-Request-ID"]


async def test_unicode_round_trips(client, make_user):
    user = await make_user()
    body = {"title": "Überweisung 💸 \"quoted\" \\ back", "description": "日本語\ttab",
            "tags": ["ça", "emoji🙂"]}
    task = await (await client.post(TASKS, json=body, headers=user.headers)).json()
    assert {k: task[k] for k in body} == body
    found = await (await client.get(TASKS, params={"q": "💸"}, headers=user.headers)).json()
    assert [t["id"] for t in found["items"]] == [task["id"]]
    found = await (await client.get(TASKS, params={"tag": "ça"}, headers=user.headers)).json()
    assert [t["id"] for t in found["items"]] == [task["id"]]
