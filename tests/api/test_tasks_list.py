"""GET /api/v1/tasks filters and sorts, GET /api/v1/tasks/stats, and the admin's task counts."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared import tasks

TASKS = "/api/v1/tasks"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
INSERT = """
INSERT INTO tasks (owner_id, title, description, status, priority, due_at, tags, created_at, updated_at,
                   completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
        CASE WHEN $4::task_status = 'done' THEN coalesce($10::timestamptz, now()) END)
RETURNING id
"""


async def insert(db, owner_id, title="task", *, description="", status="todo", priority="medium", due_at=None,
                 tags=(), created_at=None, updated_at=None, completed_at=None):
    created_at = created_at or NOW
    return await db.fetchval(INSERT, owner_id, title, description, status, priority, due_at, list(tags), created_at,
                             updated_at or created_at, completed_at)


async def ids(client, user, query=""):
    response = await client.get(f"{TASKS}?limit=100&{query}", headers=user.headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["next_cursor"] is None
    return [task["id"] for task in body["items"]]


@pytest.fixture
async def mixed(db, make_user):
    """A user with a spread of tasks, and a stranger with look-alike tasks that must never show up."""
    user, stranger = await make_user(), await make_user()
    rows = {
        "a": await insert(db, user.id, "Pay invoice", description="ACME corp", status="todo", priority="high",
                          due_at=NOW - timedelta(days=1), tags=["work", "money"]),
        "b": await insert(db, user.id, "Buy milk", description="2% fat", status="in_progress", priority="low",
                          due_at=NOW + timedelta(days=1), tags=["home"]),
        "c": await insert(db, user.id, "Ship release", description="after the invoice run", status="done",
                          priority="urgent", due_at=NOW - timedelta(days=2), tags=["work"]),
        "d": await insert(db, user.id, "Call mum", status="todo", priority="medium", tags=[]),
        "e": await insert(db, user.id, "Review_PR 100%", description="Code review", status="in_progress",
                          priority="high", due_at=NOW + timedelta(days=10), tags=["work", "code"]),
    }
    for title in ("Pay invoice", "Buy milk", "Call mum"):
        await insert(db, stranger.id, title, tags=["work", "home"], due_at=NOW - timedelta(days=1))
    return user, stranger, rows


@pytest.mark.parametrize("query, expected", [
    ("", "abcde"),
    ("status=todo", "ad"),
    ("status=todo&status=done", "acd"),
    ("priority=high", "ae"),
    ("priority=low&priority=urgent", "bc"),
    ("tag=work", "ace"),
    ("tag=home", "b"),
    ("tag=WORK", ""),  # tags are exact
    ("tag=wor", ""),
    ("q=invoice", "ac"),  # title or description
    ("q=INVOICE", "ac"),  # case-insensitive
    ("q=acme", "a"),
    ("q=voic", "ac"),  # substrings
    ("q=pay+invoice", "a"),  # every word must occur
    ("q=invoice+acme", "a"),  # ... in title or description
    ("q=invoice+nothing", ""),
    ("q=%25", "be"),  # LIKE wildcards are literal characters
    ("q=_", "e"),
    ("q=", "abcde"),  # an empty search is no search
    ("q=+++", "abcde"),
    (f"due_before={(NOW).isoformat()}", "ac"),
    (f"due_after={(NOW).isoformat()}", "be"),
    (f"due_after={(NOW - timedelta(days=3)).isoformat()}&due_before={(NOW + timedelta(days=2)).isoformat()}", "abc"),
    ("overdue=true", "a"),  # c is past due but done; d has no due date
    ("overdue=false", "bcde"),
    ("overdue=true&tag=work&status=todo&priority=high&q=pay", "a"),
    ("status=done&tag=work&q=release&due_before=2100-01-01T00:00:00Z", "c"),
    ("status=done&overdue=true", ""),
])
async def test_filters(client, mixed, query, expected):
    user, _, rows = mixed
    assert sorted(await ids(client, user, query)) == sorted(rows[k] for k in expected)


async def test_default_sort_is_newest_first_and_items_is_never_null(client, db, make_user):
    user = await make_user()
    assert await (await client.get(TASKS, headers=user.headers)).json() == {"items": [], "next_cursor": None}
    first = await insert(db, user.id, created_at=NOW - timedelta(hours=1))
    second = await insert(db, user.id, created_at=NOW)
    third = await insert(db, user.id, created_at=NOW)  # tie on created_at: the higher id first
    assert await ids(client, user) == [third, second, first]
    assert await ids(client, user, "sort=-created_at") == [third, second, first]


@pytest.fixture
async def sortable(db, make_user):
    """Tasks with ties on every sort key and missing due dates; expected orders computed in Python."""
    user = await make_user()
    specs = []
    for i in range(12):
        spec = {"priority": tasks.PRIORITIES[i % 4],
                "due_at": None if i % 3 == 0 else NOW + timedelta(days=i % 2),
                "created_at": NOW - timedelta(minutes=i % 3), "updated_at": NOW + timedelta(minutes=i % 2)}
        spec["id"] = await insert(db, user.id, f"t{i}", **spec)
        specs.append(spec)
    return user, specs


def expected_order(specs, sort):
    field = sort.lstrip("-")
    far = datetime.max.replace(tzinfo=timezone.utc)

    def key(spec):
        value = spec[field]
        if field == "priority":
            value = tasks.PRIORITIES.index(value)
        elif value is None:
            value = far  # no due date sorts as +infinity
        return value, spec["id"]

    return [spec["id"] for spec in sorted(specs, key=key, reverse=sort.startswith("-"))]


@pytest.mark.parametrize("sort", tasks.SORTS)
async def test_every_sort_order_with_ties_and_null_due_dates(client, sortable, sort):
    user, specs = sortable
    assert await ids(client, user, f"sort={sort}") == expected_order(specs, sort)


async def test_priority_sorts_by_severity_not_alphabet(client, db, make_user):
    user = await make_user()
    by_priority = {p: await insert(db, user.id, priority=p) for p in ("urgent", "low", "high", "medium")}
    assert await ids(client, user, "sort=priority") == [by_priority[p] for p in tasks.PRIORITIES]
    assert await ids(client, user, "sort=-priority") == [by_priority[p] for p in reversed(tasks.PRIORITIES)]


async def test_lists_are_per_owner_and_admins_may_pick_the_owner(client, mixed, make_user):
    user, stranger, rows = mixed
    assert sorted(await ids(client, user)) == sorted(rows.values())
    assert len(await ids(client, stranger)) == 3
    admin = await make_user(role="admin")
    assert await ids(client, admin) == []  # an admin's own list is their own tasks
    assert sorted(await ids(client, admin, f"owner_id={user.id}")) == sorted(rows.values())
    assert sorted(await ids(client, admin, f"owner_id={user.id}&tag=home")) == [rows["b"]]
    assert await ids(client, admin, "owner_id=999999") == []


async def test_stats_counts_the_callers_tasks_in_one_object(client, db, make_user):
    user, other = await make_user(), await make_user()
    await insert(db, user.id, status="todo", priority="high", due_at=NOW - timedelta(hours=1))  # overdue
    await insert(db, user.id, status="in_progress", priority="high", due_at=NOW + timedelta(hours=1))
    await insert(db, user.id, status="done", priority="urgent", due_at=NOW - timedelta(days=1),
                 completed_at=NOW - timedelta(days=1))  # done: not overdue; completed recently
    await insert(db, user.id, status="done", priority="low", completed_at=NOW - timedelta(days=8))  # too long ago
    await insert(db, other.id, status="todo", due_at=NOW - timedelta(days=1))
    response = await client.get(f"{TASKS}/stats", headers=user.headers)
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == {
        "by_status": {"todo": 1, "in_progress": 1, "done": 2},
        "by_priority": {"low": 1, "medium": 0, "high": 2, "urgent": 1},
        "overdue": 1,
        "completed_last_7_days": 1,
    }
    empty = await (await client.get(f"{TASKS}/stats", headers=other.headers)).json()
    assert empty["by_status"] == {"todo": 1, "in_progress": 0, "done": 0} and empty["overdue"] == 1
    admin = await make_user(role="admin")
    as_admin = await (await client.get(f"{TASKS}/stats?owner_id={user.id}", headers=admin.headers)).json()
    assert as_admin["by_status"]["done"] == 2


async def test_created_task_shows_up_in_list_and_stats_at_once(client, make_user):
    user = await make_user()
    created = await (await client.post(TASKS, json={"title": "fresh"}, headers=user.headers)).json()
    assert await ids(client, user) == [created["id"]]
    stats = await (await client.get(f"{TASKS}/stats", headers=user.headers)).json()
    assert stats["by_status"]["todo"] == 1


async def test_task_counts_by_status_for_the_admin_stats(db, make_user):
    user, other = await make_user(), await make_user()
    assert await tasks.task_counts_by_status(db) == {"todo": 0, "in_progress": 0, "done": 0}
    await insert(db, user.id, status="done")
    await insert(db, other.id, status="done")
    await insert(db, other.id, status="todo")
    assert await tasks.task_counts_by_status(db) == {"todo": 1, "in_progress": 0, "done": 2}


async def test_list_items_are_full_tasks(client, make_user):
    user = await make_user()
    created = await (await client.post(TASKS, json={"title": "x", "tags": ["a"], "due_at": "2030-01-01T00:00:00Z"},
                                       headers=user.headers)).json()
    listed = await (await client.get(TASKS, headers=user.headers)).json()
    assert listed["items"] == [created]
