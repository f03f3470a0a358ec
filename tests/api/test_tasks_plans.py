"""Query plans on 100,000 tasks over 100 users: every task query reads through an index led by project_id,
reached from the caller's memberships (the rights join), so it never reads another project's rows.

The rows live in one transaction that is rolled back, so nothing needs cleaning up. docs/tasks.md keeps
the full plans (`python bench/tasks.py explain` prints them).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from shared import tasks
from shared.tasks import TaskFilters as F

SEED_USERS = ("INSERT INTO users (email, password_hash) "
              "SELECT 'plan' || g || '@example.com', 'x' FROM generate_series(1, 100) g")
# 1,000 tasks per user, interleaved (as real inserts are), with every status/priority/tag/due-date mix.
SEED_TASKS = """
INSERT INTO tasks (owner_id, title, description, status, priority, due_at, tags, created_at, updated_at,
                   completed_at)
SELECT owner_id, (ARRAY['deploy', 'invoice', 'meeting', 'review', 'groceries', 'report'])[1 + floor(r1 * 6)::int]
       || ' task ' || g, 'notes for item ' || (g % 997), status,
       (ARRAY['low', 'medium', 'high', 'urgent'])[1 + floor(r2 * 4)::int]::task_priority,
       CASE WHEN r3 < 0.3 THEN NULL ELSE now() + (r3 * 200 - 100) * interval '1 day' END,
       CASE floor(r4 * 4)::int WHEN 0 THEN '{}'::text[] WHEN 1 THEN '{work}' WHEN 2 THEN '{home}'
                               ELSE '{work,urgent}' END,
       created_at, created_at + interval '1 hour', CASE WHEN status = 'done' THEN created_at + interval '2 hours' END
FROM (SELECT g, (SELECT min(id) FROM users) + g % 100 AS owner_id, random() AS r1, random() AS r2, random() AS r3,
             random() AS r4,
             (ARRAY['todo', 'in_progress', 'done'])[1 + floor(random() * 3)::int]::task_status AS status,
             now() - random() * interval '365 days' AS created_at
      FROM generate_series(1, 100000) AS g) AS x
"""
NOW = datetime.now(timezone.utc)
T0 = NOW - timedelta(days=30)
LIST_CASES = [(f"sort={s}", F(), s, None) for s in tasks.SORTS] + [
    (f"sort={s}, page 2", F(), s, ("high" if "priority" in s else T0, 50_000)) for s in tasks.SORTS] + [
    ("sort=due_at, page 2 among undated", F(), "due_at", (None, 50_000)),
    ("status=todo&status=done", F(status=("todo", "done")), "-created_at", None),
    ("priority=urgent", F(priority=("urgent",)), "-created_at", None),
    ("priority=urgent&sort=-priority", F(priority=("urgent",)), "-priority", None),
    ("tag=work", F(tag="work"), "-created_at", None),
    ("tag=rare", F(tag="rare"), "-created_at", None),
    ("q=invoice", F(q="invoice"), "-created_at", None),
    ("q=invoice item 42", F(q="invoice item 42"), "-created_at", None),
    ("q=zebra (no match)", F(q="zebra"), "-created_at", None),
    ("q=a (too short for trigrams)", F(q="a"), "-created_at", None),
    ("due_before", F(due_before=NOW), "due_at", None),
    ("due_after&due_before", F(due_after=NOW, due_before=NOW + timedelta(days=7)), "due_at", None),
    ("due_after, sort=-created_at", F(due_after=NOW + timedelta(days=90)), "-created_at", None),
    ("overdue=true", F(overdue=True), "-created_at", None),
    ("overdue=true&sort=due_at", F(overdue=True), "due_at", None),
    ("overdue=false", F(overdue=False), "-updated_at", None),
    ("every filter", F(status=("todo",), priority=("high", "urgent"), tag="work", q="deploy",
                       due_after=NOW - timedelta(days=300), overdue=False), "-due_at", None),
]
# Index/Recheck condition on project_id: the scan itself is limited to the member's projects' rows.
PROJECT_SCAN = re.compile(r"(Index Cond|Recheck Cond): \(+project_id = ")


def _plan(rows):
    return "\n".join(row[0] for row in rows)


@pytest.fixture
async def seeded(db):
    transaction = db.transaction()
    await transaction.start()
    try:
        await db.execute(SEED_USERS)
        await db.execute(SEED_TASKS)
        await db.execute("ANALYZE all_tasks, project_members, projects")
        yield await db.fetchval("SELECT min(id) + 41 FROM users")
    finally:
        await transaction.rollback()


async def test_task_queries_only_scan_the_owners_rows_through_indexes(db, seeded):
    """One test, one 100k-row seed (about 6 s)."""
    owner = seeded
    plans = {}
    for name, filters, sort, after in LIST_CASES:
        sql, args = tasks.page_query(owner, filters, sort, 21, after)
        plans[name] = _plan(await db.fetch("EXPLAIN " + sql, *args))
    plans["stats"] = _plan(await db.fetch("EXPLAIN " + tasks.SELECT_STATS, owner))
    plans["get one"] = _plan(await db.fetch("EXPLAIN " + tasks.SELECT_TASK_FOR_USER, 4242, owner, False))
    for name, plan in plans.items():
        # (a 100-row project_members fits in a page or two: reading it whole is the planner's right call)
        # (the table is all_tasks: `tasks` is its view without the trash, folded into each plan)
        assert "Seq Scan on all_tasks" not in plan and "Seq Scan on tasks" not in plan, f"{name}:\n{plan}"
        if name != "get one":  # the primary key finds the one row; the membership join decides
            assert PROJECT_SCAN.search(plan), f"{name}:\n{plan}"
    # Unfiltered pages in every order come straight off a btree (forwards or backwards), each project's
    # first rows only: the one Sort merges those (at most projects x page size rows), never the whole project.
    for name in (f"sort={s}" for s in tasks.SORTS):
        for plan in (plans[name], plans[f"{name}, page 2"]):
            assert plan.count("Sort Key") == 1 and "Index Scan" in plan and "Limit" in plan.split("Sort Key")[1], \
                f"{name}:\n{plan}"
    # And the queries behind the plans return what they promise.
    sql, args = tasks.page_query(owner, F(tag="work", overdue=True), "due_at", 101, None)
    rows = await db.fetch(sql, *args)
    assert 0 < len(rows) <= 101 and [r["k"] for r in rows] == sorted(r["k"] for r in rows)
