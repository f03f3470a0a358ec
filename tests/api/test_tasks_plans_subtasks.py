"""Query plans of the subtask filters and the trash on 100,000 tasks (the seed of test_tasks_plans.py):
`parent_id=none` and `parent_id=<id>` read through indexes led by project_id or parent_id, never a scan
of the table; the trash page reads only trashed rows."""
from __future__ import annotations

from shared import tasks, trash
from shared.tasks import TaskFilters as F
from tests.api.test_tasks_plans import PROJECT_SCAN, _plan, seeded  # noqa: F401 - the fixture

CASES = [
    ("parent_id=none", F(parent_id="none"), "-created_at"),
    ("parent_id=none&sort=due_at", F(parent_id="none"), "due_at"),
    ("parent_id=none&status=todo", F(parent_id="none", status=("todo",)), "-created_at"),
]


async def test_subtask_filters_and_the_trash_use_indexes(db, seeded):  # noqa: F811 - the fixture
    owner = seeded
    # A tenth of the tasks become subtasks of the task before them, a few go to the trash.
    await db.execute("UPDATE all_tasks AS t SET parent_id = t.id - 1 WHERE t.id % 10 = 0 AND EXISTS "
                     "(SELECT 1 FROM all_tasks AS p WHERE p.id = t.id - 1 AND p.project_id = t.project_id "
                     "AND p.parent_id IS NULL)")
    await db.execute("UPDATE all_tasks SET trashed_at = now(), trash_root = id WHERE id % 97 = 0 AND parent_id IS NULL")
    await db.execute("ANALYZE all_tasks")
    parent = await db.fetchval("SELECT t.parent_id FROM tasks AS t JOIN project_members AS m ON "
                               "m.project_id = t.project_id AND m.user_id = $1 WHERE t.parent_id IS NOT NULL LIMIT 1",
                               owner)
    for name, filters, sort in [*CASES, ("parent_id=<a parent>", F(parent_id=parent), "-created_at")]:
        sql, args = tasks.page_query(owner, filters, sort, 21, None)
        plan = _plan(await db.fetch("EXPLAIN " + sql, *args))
        assert "Seq Scan on all_tasks" not in plan, f"{name}:\n{plan}"
        assert PROJECT_SCAN.search(plan) or "parent_id = " in plan, f"{name}:\n{plan}"
        if filters.parent_id == "none" and sort == "-created_at":
            assert "tasks_project_top_created_idx" in plan, f"{name}:\n{plan}"
        rows = await db.fetch(sql, *args)
        assert rows, name
    trash_sql = trash.SELECT_TRASH_PAGE.format(task_json=tasks.TASK_JSON)
    plan = _plan(await db.fetch("EXPLAIN " + trash_sql, owner, None, 21))
    assert "Seq Scan on all_tasks" not in plan, plan
