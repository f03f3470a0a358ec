"""Keyset pagination: every sort, ties, null due dates, concurrent inserts/deletes, tamper-proof cursors."""
from __future__ import annotations

import asyncio
import base64
import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from shared import tasks
from tests.helpers import assert_problem

TASKS = "/api/v1/tasks"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
INSERT = """
INSERT INTO tasks (owner_id, title, priority, due_at, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
"""


def tie_values(rng):
    """Few distinct values per sort key, so most rows tie with several others; a third have no due date."""
    return (rng.choice(tasks.PRIORITIES), rng.choice([None, NOW, NOW + timedelta(days=1)]),
            NOW - timedelta(minutes=rng.randrange(3)), NOW + timedelta(minutes=rng.randrange(3)))


async def insert(db, owner_id, rng, title="task"):
    return await db.fetchval(INSERT, owner_id, title, *tie_values(rng))


async def fetch_page(client, user, query, cursor=None):
    params = dict(query, **({"cursor": cursor} if cursor else {}))
    response = await client.get(TASKS, params=params, headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def walk(client, user, query, between_pages=None):
    seen, cursor, pages = [], None, 0
    while True:
        page = await fetch_page(client, user, query, cursor)
        assert len(page["items"]) <= int(query["limit"])
        seen += [task["id"] for task in page["items"]]
        cursor, pages = page["next_cursor"], pages + 1
        if cursor is None:
            return seen, pages
        assert page["items"], "a page with a next_cursor is never empty"
        if between_pages is not None:
            await between_pages(pages)


@pytest.mark.parametrize("sort", tasks.SORTS)
@pytest.mark.parametrize("limit", [1, 3, 5])
async def test_walk_matches_the_one_page_listing(client, db, make_user, sort, limit):
    user, rng = await make_user(), random.Random(sort + str(limit))
    for _ in range(15):
        await insert(db, user.id, rng)
    whole = await fetch_page(client, user, {"sort": sort, "limit": "100"})
    seen, pages = await walk(client, user, {"sort": sort, "limit": str(limit)})
    assert seen == [task["id"] for task in whole["items"]]
    assert pages == -(-15 // limit)  # exactly enough pages: no empty last page when 15 % limit == 0


async def test_next_cursor_is_null_exactly_at_the_end(client, db, make_user):
    user, rng = await make_user(), random.Random(1)
    for _ in range(4):
        await insert(db, user.id, rng)
    first = await fetch_page(client, user, {"limit": "2"})
    assert len(first["items"]) == 2 and first["next_cursor"]
    last = await fetch_page(client, user, {"limit": "2"}, first["next_cursor"])
    assert len(last["items"]) == 2 and last["next_cursor"] is None
    everything = await fetch_page(client, user, {"limit": "4"})
    assert everything["next_cursor"] is None


@pytest.mark.parametrize("sort", tasks.SORTS)
async def test_walk_with_inserts_and_deletes_between_pages(client, db, make_user, sort):
    """Rows present for the whole walk appear exactly once; nothing appears twice."""
    user, rng = await make_user(), random.Random(sort)
    stable = {await insert(db, user.id, rng, "stable") for _ in range(20)}
    doomed = [await insert(db, user.id, rng, "doomed") for _ in range(10)]

    async def churn(page_number):
        for _ in range(3):  # new rows tie with existing ones, before and after the cursor
            await insert(db, user.id, rng, "new")
        if doomed:
            await db.execute("DELETE FROM tasks WHERE id = $1", doomed.pop(rng.randrange(len(doomed))))

    seen, _ = await walk(client, user, {"sort": sort, "limit": "3"}, churn)
    assert len(seen) == len(set(seen)), "a row was repeated"
    assert stable <= set(seen), "a row that existed for the whole walk was skipped"


@pytest.mark.parametrize("sort", ["-created_at", "due_at", "-priority"])
async def test_walk_while_other_requests_write_concurrently(client, db, make_user, sort):
    user, rng = await make_user(), random.Random(7)
    stable = {await insert(db, user.id, rng, "stable") for _ in range(30)}
    extra = [await insert(db, user.id, rng, "doomed") for _ in range(15)]
    stop = asyncio.Event()

    async def writer():
        i = 0
        while not stop.is_set():  # API writes racing the page requests
            body = {"title": f"new {i}", "priority": rng.choice(tasks.PRIORITIES), "due_at": rng.choice(
                [None, NOW.isoformat()])}
            assert (await client.post(TASKS, json=body, headers=user.headers)).status == 201
            if extra:
                assert (await client.delete(f"{TASKS}/{extra.pop()}", headers=user.headers)).status == 204
            i += 1
            await asyncio.sleep(0)

    writing = asyncio.create_task(writer())
    try:
        seen, _ = await walk(client, user, {"sort": sort, "limit": "2"})
    finally:
        stop.set()
        await writing
    assert len(seen) == len(set(seen)) and stable <= set(seen)


async def test_limit_may_change_between_pages(client, db, make_user):
    user, rng = await make_user(), random.Random(3)
    for _ in range(6):
        await insert(db, user.id, rng)
    whole = [t["id"] for t in (await fetch_page(client, user, {"limit": "100"}))["items"]]
    first = await fetch_page(client, user, {"limit": "2"})
    rest = await fetch_page(client, user, {"limit": "10"}, first["next_cursor"])
    assert [t["id"] for t in first["items"] + rest["items"]] == whole


async def test_filtered_walk(client, db, make_user):
    user = await make_user()
    for i in range(20):
        await db.execute("INSERT INTO tasks (owner_id, title, tags, created_at) VALUES ($1, $2, $3, $4)",
                         user.id, f"task {i}", ["even"] if i % 2 == 0 else [], NOW - timedelta(minutes=i % 4))
    seen, _ = await walk(client, user, {"tag": "even", "sort": "created_at", "limit": "3"})
    whole = await fetch_page(client, user, {"tag": "even", "sort": "created_at", "limit": "100"})
    assert seen == [t["id"] for t in whole["items"]] and len(seen) == 10


@pytest.fixture
async def cursor_setup(client, db, make_user):
    user, rng = await make_user(), random.Random(5)
    for _ in range(3):
        await insert(db, user.id, rng)
    page = await fetch_page(client, user, {"limit": "1", "sort": "due_at"})
    return user, page["next_cursor"]


@pytest.mark.parametrize("change", [
    {"sort": "-due_at"}, {"sort": "created_at"}, {"status": "todo"}, {"priority": "low"}, {"tag": "x"},
    {"q": "task"}, {"overdue": "true"}, {"due_before": "2100-01-01T00:00:00Z"}, {"due_after": "2000-01-01T00:00:00Z"},
])
async def test_a_cursor_is_only_valid_for_its_own_listing(client, cursor_setup, change):
    user, cursor = cursor_setup
    query = {"limit": "1", "sort": "due_at", **change, "cursor": cursor}
    await assert_problem(await client.get(TASKS, params=query, headers=user.headers), 422, "cursor")


async def test_a_cursor_is_only_valid_for_its_owner(client, cursor_setup, make_user):
    user, cursor = cursor_setup
    other = await make_user()
    query = {"limit": "1", "sort": "due_at", "cursor": cursor}
    await assert_problem(await client.get(TASKS, params=query, headers=other.headers), 422, "cursor")
    admin = await make_user(role="admin")
    as_admin = await client.get(TASKS, params={**query, "owner_id": str(user.id)}, headers=admin.headers)
    assert as_admin.status == 200  # the same listing, read by an admin


def _tampered(cursor):
    payload, _, mac = cursor.partition(".")
    values = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    values[1] += 1
    forged = base64.urlsafe_b64encode(json.dumps(values).encode()).rstrip(b"=").decode()
    return [f"{forged}.{mac}", f"{payload}.{mac[:-2]}", payload, f"{payload}.", f".{mac}", cursor + "x",
            cursor[1:], "😀." + mac]


async def test_tampered_cursors_are_422(client, cursor_setup):
    user, cursor = cursor_setup
    for bad in _tampered(cursor):
        query = {"limit": "1", "sort": "due_at", "cursor": bad}
        await assert_problem(await client.get(TASKS, params=query, headers=user.headers), 422, "cursor")


@pytest.mark.parametrize("values, sort", [
    ([], "created_at"), (["x"], "created_at"), (["not a time", 1], "created_at"),
    (["2030-01-01T00:00:00", 1], "created_at"),
    ([None, 1], "created_at"), (["2030-01-01T00:00:00+00:00", "1"], "created_at"), (["critical", 1], "priority"),
    (["2030-01-01T00:00:00+00:00", True], "due_at"), ({"a": 1}, "created_at"),
])
async def test_validly_signed_but_malformed_cursor_values_are_422(client, make_user, settings, values, sort):
    """Defence in depth: even a leaked signing key cannot make the list query fail with a 500."""
    from shared.db.pagination import encode_cursor

    user = await make_user()
    scope = tasks.TaskFilters().scope(user.id, sort)
    cursor = encode_cursor(settings.secret_key, scope, values)
    query = {"sort": sort, "cursor": cursor}
    await assert_problem(await client.get(TASKS, params=query, headers=user.headers), 422, "cursor")


async def test_a_null_due_date_cursor_continues_among_the_undated(client, db, make_user):
    user = await make_user()
    undated = [await db.fetchval("INSERT INTO tasks (owner_id, title) VALUES ($1, 't') RETURNING id", user.id)
               for _ in range(5)]
    seen, _ = await walk(client, user, {"sort": "due_at", "limit": "2"})
    assert seen == sorted(undated)
    seen, _ = await walk(client, user, {"sort": "-due_at", "limit": "2"})
    assert seen == sorted(undated, reverse=True)
