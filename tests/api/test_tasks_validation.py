"""Bad input on every field and parameter of the task API: always a 4xx problem, never a 500."""
from __future__ import annotations

import io

import pytest

from tests.helpers import assert_problem

TASKS = "/api/v1/tasks"
LONG = "x" * 201


@pytest.mark.parametrize("body, field", [
    ({}, "title"),
    ({"title": ""}, "title"),
    ({"title": "   "}, "title"),
    ({"title": LONG}, "title"),
    ({"title": None}, "title"),
    ({"title": 42}, "title"),
    ({"title": ["a"]}, "title"),
    ({"title": "nul\x00byte"}, "title"),
    ({"title": "lone \ud800 surrogate"}, "title"),
    ({"title": "ok", "description": "d" * 10001}, "description"),
    ({"title": "ok", "description": None}, "description"),
    ({"title": "ok", "status": "nope"}, "status"),
    ({"title": "ok", "status": "DONE"}, "status"),
    ({"title": "ok", "priority": "critical"}, "priority"),
    ({"title": "ok", "priority": 1}, "priority"),
    ({"title": "ok", "due_at": "2030-01-01T00:00:00"}, "due_at"),  # naive: no offset
    ({"title": "ok", "due_at": "2030-01-01"}, "due_at"),
    ({"title": "ok", "due_at": "tomorrow"}, "due_at"),
    ({"title": "ok", "due_at": "2030-13-01T00:00:00Z"}, "due_at"),
    ({"title": "ok", "due_at": "2030-02-30T00:00:00Z"}, "due_at"),
    ({"title": "ok", "due_at": "2030-01-01T25:00:00Z"}, "due_at"),
    ({"title": "ok", "due_at": "9999-12-31T23:59:59-01:00"}, "due_at"),  # past year 9999 in UTC
    ({"title": "ok", "due_at": "2030-W01-1T00:00:00Z"}, "due_at"),
    ({"title": "ok", "due_at": 1700000000}, "due_at"),
    ({"title": "ok", "tags": "work"}, "tags"),
    ({"title": "ok", "tags": ["a", "a"]}, "tags"),
    ({"title": "ok", "tags": [""]}, "tags.0"),
    ({"title": "ok", "tags": ["  "]}, "tags.0"),
    ({"title": "ok", "tags": ["x" * 51]}, "tags.0"),
    ({"title": "ok", "tags": [f"t{i}" for i in range(21)]}, "tags"),
    ({"title": "ok", "tags": [1]}, "tags.0"),
    ({"title": "ok", "tags": None}, "tags"),
    ({"title": "ok", "owner_id": 1}, "owner_id"),
    ({"title": "ok", "id": 5}, "id"),
    ({"title": "ok", "completed_at": "2030-01-01T00:00:00Z"}, "completed_at"),
])
async def test_create_rejects_invalid_fields_with_422(client, make_user, db, body, field):
    user = await make_user()
    await assert_problem(await client.post(TASKS, json=body, headers=user.headers), 422, field)
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_limits_are_inclusive(client, make_user):
    user = await make_user()
    body = {"title": "x" * 200, "description": "d" * 10000, "tags": [f"{i:0>50}" for i in range(20)]}
    assert (await client.post(TASKS, json=body, headers=user.headers)).status == 201


@pytest.mark.parametrize("body, field", [
    ({"title": ""}, "title"), ({"title": None}, "title"), ({"status": None}, "status"),
    ({"priority": "x"}, "priority"), ({"due_at": "2030-01-01 00:00"}, "due_at"), ({"tags": ["a", "a"]}, "tags"),
    ({"description": None}, "description"), ({"version": 3}, "version"), ({"owner_id": 2}, "owner_id"),
])
async def test_patch_rejects_invalid_fields_with_422(client, make_user, body, field):
    user = await make_user()
    task = await (await client.post(TASKS, json={"title": "t"}, headers=user.headers)).json()
    await assert_problem(await client.patch(f"{TASKS}/{task['id']}", json=body, headers=user.headers), 422, field)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_body_errors(client, make_user, method):
    user = await make_user()
    task = await (await client.post(TASKS, json={"title": "t"}, headers=user.headers)).json()
    url = TASKS if method == "POST" else f"{TASKS}/{task['id']}"
    json_headers = {**user.headers, "Content-Type": "application/json"}
    await assert_problem(await client.request(method, url, data=b'{"title": ', headers=json_headers), 400)
    await assert_problem(await client.request(method, url, data=b"[]", headers=json_headers), 422, "_schema")
    await assert_problem(await client.request(method, url, data=b"title=x", headers={
        **user.headers, "Content-Type": "application/x-www-form-urlencoded"}), 415)
    big = io.BytesIO(b'{"title": "' + b"a" * (1024 * 1024) + b'"}')
    await assert_problem(await client.request(method, url, data=big, headers=json_headers), 413)


@pytest.mark.parametrize("query, field", [
    ("limit=abc", "limit"), ("limit=0", "limit"), ("limit=101", "limit"), ("limit=-1", "limit"),
    ("limit=2.5", "limit"), ("limit=", "limit"), ("limit=99999999999999999999999", "limit"),
    ("cursor=garbage", "cursor"), ("cursor=a.b", "cursor"), ("cursor=" + "x" * 1001, "cursor"),
    ("status=nope", "status"), ("status=todo&status=nope", "status"), ("status=", "status"),
    ("priority=severe", "priority"),
    ("due_before=yesterday", "due_before"), ("due_before=2030-01-01", "due_before"),
    ("due_before=2030-01-01T00:00:00", "due_before"), ("due_after=0", "due_after"),
    ("overdue=maybe", "overdue"), ("overdue=", "overdue"),
    ("sort=title", "sort"), ("sort=--created_at", "sort"), ("sort=", "sort"),
    ("tag=", "tag"), ("tag=" + "t" * 51, "tag"), ("tag=a%00b", "tag"),
    ("q=" + "q" * 201, "q"), ("q=" + "+".join("w" * 11), "q"), ("q=a%00b", "q"),
    ("owner_id=abc", "owner_id"), ("owner_id=0", "owner_id"), ("owner_id=99999999999999999999", "owner_id"),
    ("unknown=1", "unknown"),
])
async def test_list_rejects_bad_parameters_with_422(client, make_user, query, field):
    user = await make_user()
    await assert_problem(await client.get(f"{TASKS}?{query}", headers=user.headers), 422, field)


async def test_an_empty_cursor_means_the_first_page(client, make_user):
    user = await make_user()
    response = await client.get(f"{TASKS}?cursor=", headers=user.headers)
    assert response.status == 200 and await response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("query, field", [("owner_id=x", "owner_id"), ("sort=x", "sort")])
async def test_stats_rejects_bad_parameters_with_422(client, make_user, query, field):
    user = await make_user()
    await assert_problem(await client.get(f"{TASKS}/stats?{query}", headers=user.headers), 422, field)


async def test_non_admin_may_not_name_another_owner(client, make_user):
    user, other = await make_user(), await make_user()
    for path in (TASKS, f"{TASKS}/stats"):
        await assert_problem(await client.get(f"{path}?owner_id={other.id}", headers=user.headers), 403)
        own = await client.get(f"{path}?owner_id={user.id}", headers=user.headers)
        assert own.status == 200


@pytest.mark.parametrize("path", [
    f"{TASKS}/abc", f"{TASKS}/-1", f"{TASKS}/0", f"{TASKS}/1.5", f"{TASKS}/99999999999999999999999",
    f"{TASKS}/9223372036854775808", f"{TASKS}/1/extra",
])
async def test_bad_task_ids_are_404(client, make_user, path):
    user = await make_user()
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(method, path, json={"title": "x"}, headers=user.headers)
        assert response.status in (404, 405), (method, path)
        await assert_problem(response, response.status)


async def test_unsupported_method_is_405_problem(client, make_user):
    user = await make_user()
    await assert_problem(await client.put(TASKS, json={}, headers=user.headers), 405)
    await assert_problem(await client.post(f"{TASKS}/1", json={}, headers=user.headers), 405)


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "ünïcode", "tab\tkey"])
async def test_bad_idempotency_keys_are_422(client, make_user, db, key):
    user = await make_user()
    headers = {**user.headers, "Idempotency-Key": key}
    await assert_problem(await client.post(TASKS, json={"title": "t"}, headers=headers), 422, "Idempotency-Key")
    assert await db.fetchval("SELECT count(*) FROM tasks") == 0


async def test_offsets_in_query_strings_survive_an_unencoded_plus(client, make_user):
    user = await make_user()
    await client.post(TASKS, json={"title": "t", "due_at": "2030-01-01T12:00:00Z"}, headers=user.headers)
    # `+` decodes to a space in a query string; "…T13:30:00 01:00" is read as +01:00 (12:30Z).
    response = await client.get(f"{TASKS}?due_after=2030-01-01T13:30:00+01:00", headers=user.headers)
    assert response.status == 200
    assert len((await response.json())["items"]) == 0
    response = await client.get(f"{TASKS}?due_after=2030-01-01T12:30:00%2B02:00", headers=user.headers)
    assert len((await response.json())["items"]) == 1
