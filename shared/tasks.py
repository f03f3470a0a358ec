"""Tasks: business rules and SQL, shared by the JSON API and the HTML views.

Rows come back with the task already rendered as JSON text by PostgreSQL (``body``): the API sends
it as is, so the hot path builds no per-row Python objects. ``TASK_JSON`` is the one definition of
the output fields; ``web.api.tasks.TaskOutSchema`` documents them and a test keeps the two equal.
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

import asyncpg

from shared import events, notify, recurrence, rights, trash
from shared.db.pagination import decode_cursor, page
from shared.errors import Forbidden, NotFound, PreconditionFailed, ValidationFailed, field_error

logger = logging.getLogger("app.tasks")

STATUSES = ("todo", "in_progress", "done")
PRIORITIES = ("low", "medium", "high", "urgent")  # the enum's order, which is the sort order
SORTS = ("created_at", "-created_at", "due_at", "-due_at", "priority", "-priority", "updated_at", "-updated_at")
TASK_FIELDS = ("id", "owner_id", "project_id", "assignee_id", "parent_id", "title", "description", "status",
               "priority", "due_at", "recurrence", "tags", "comment_count", "attachment_count", "created_at",
               "updated_at", "completed_at")
MAX_ID = 2**63 - 1  # bigint: a larger path id cannot exist, and asyncpg would refuse to send it
MAX_SEARCH_WORDS = 10


def utc(column: str) -> str:
    # RFC 3339 UTC with a trailing Z, whole seconds (the contract's own example format).
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


TASK_JSON = (
    "json_build_object('id', t.id, 'owner_id', t.owner_id, 'project_id', t.project_id, "
    "'assignee_id', t.assignee_id, 'parent_id', t.parent_id, 'title', t.title, "
    "'description', t.description, 'status', t.status, 'priority', t.priority, 'due_at', " + utc("t.due_at") + ", "
    "'recurrence', t.recurrence, 'tags', t.tags, 'comment_count', t.comment_count, "
    "'attachment_count', t.attachment_count, "
    "'created_at', " + utc("t.created_at") + ", 'updated_at', " + utc("t.updated_at") + ", "
    "'completed_at', " + utc("t.completed_at") + ")::text"
)
RETURNING = (f"t.id, t.owner_id, t.project_id, t.assignee_id, t.parent_id, t.due_at, t.recurrence, t.title, t.version, "
             f"{TASK_JSON} AS body")
# Everyone whose cached views show the project's tasks: a write invalidates each of them (shared/cache.py).
AUDIENCE = "(SELECT array_agg(a.user_id) FROM project_members AS a WHERE a.project_id = {}) AS audience"
IS_MEMBER = "EXISTS (SELECT 1 FROM project_members AS a WHERE a.project_id = {} AND a.user_id = {})"

# One task for one caller: $1 task, $2 user, $3 site admin. A non-member's row never leaves the database.
_JOIN, _ROLE, _VISIBLE = rights.access("t.project_id", "$2", "$3")
SELECT_TASK_FOR_USER = f"SELECT {RETURNING}, {_ROLE} AS role FROM tasks AS t {_JOIN} WHERE t.id = $1 AND {_VISIBLE}"
SELECT_TASK_FOR_WRITE = (f"SELECT {RETURNING}, {_ROLE} AS role, {AUDIENCE.format('t.project_id')} "
                         f"FROM tasks AS t {_JOIN} WHERE t.id = $1 AND {_VISIBLE} FOR UPDATE OF t")
# A project as the target of a create or a move: $1 project, $2 user, $3 site admin.
_PJOIN, _PROLE, _PVISIBLE = rights.access("p.id", "$2", "$3")
SELECT_TARGET_PROJECT = (f"SELECT p.id, {_PROLE} AS role, {AUDIENCE.format('p.id')} "
                         f"FROM projects AS p {_PJOIN} WHERE p.id = $1 AND {_PVISIBLE}")
SELECT_INBOX = "SELECT p.id FROM projects AS p WHERE p.owner_id = $1 AND p.is_inbox"
SELECT_IS_MEMBER = "SELECT " + IS_MEMBER.format("$1", "$2")
# The rights check, the assignee check and the insert in one statement (the hot path: one round trip).
# $1 creator, $8 assignee, $9 project (NULL: the creator's Inbox), $10 site admin.
_CJOIN, _CROLE, _CVISIBLE = rights.access("p.id", "$1", "$10")
INSERT_TASK = f"""
WITH target AS (
    SELECT p.id, {_CROLE} AS role, ($8::bigint IS NULL OR {IS_MEMBER.format("p.id", "$8")}) AS assignee_ok,
           {AUDIENCE.format("p.id")}
    FROM projects AS p {_CJOIN}
    WHERE p.id = COALESCE($9::bigint, ({SELECT_INBOX.replace("$1", "$1::bigint")})) AND {_CVISIBLE}
), created AS (
    INSERT INTO tasks AS t (owner_id, project_id, assignee_id, title, description, status, priority, due_at, tags,
                            completed_at, parent_id, recurrence)
    SELECT $1, target.id, $8, $2::text, $3::text, $4::task_status, $5::task_priority, $6::timestamptz, $7::text[],
           CASE WHEN $4::task_status = 'done' THEN now() END, $11::bigint, $12::text
    FROM target WHERE target.role >= 'editor' AND target.assignee_ok
    RETURNING {RETURNING}
), event AS (
    {events.cte("task.created", source="created", project="created.project_id", task="created.id", actor="$1",
                data="created.body")}
)
SELECT target.role, target.assignee_ok, target.audience, created.* FROM target LEFT JOIN created ON true
"""
# One fixed statement for every PATCH: NULL means "not sent" ($6 says whether due_at was sent, since
# null is a legal due_at; $10 whether assignee_id was). completed_at keeps its first value while the task
# stays done. The assignee is kept only while a member of the (possibly new) project: a move clears one
# who is not a member there; one named in the request was checked before (422).
UPDATE_TASK = f"""
UPDATE tasks AS t SET
    title = COALESCE($2, t.title),
    description = COALESCE($3, t.description),
    status = COALESCE($4::task_status, t.status),
    priority = COALESCE($5::task_priority, t.priority),
    due_at = CASE WHEN $6 THEN $7 ELSE t.due_at END,
    tags = COALESCE($8, t.tags),
    project_id = COALESCE($9, t.project_id),
    -- A task moved to another project leaves its parent behind unless the request names a new one.
    parent_id = CASE WHEN $12 THEN $13 WHEN COALESCE($9, t.project_id) <> t.project_id THEN NULL
                     ELSE t.parent_id END,
    recurrence = CASE WHEN $14 THEN $15 ELSE t.recurrence END,
    assignee_id = CASE WHEN {IS_MEMBER.format("COALESCE($9, t.project_id)",
                                              "CASE WHEN $10 THEN $11 ELSE t.assignee_id END")}
                       THEN CASE WHEN $10 THEN $11 ELSE t.assignee_id END END,
    completed_at = CASE WHEN COALESCE($4::task_status, t.status) <> 'done' THEN NULL
                        WHEN t.status = 'done' THEN t.completed_at ELSE now() END,
    updated_at = now(),
    version = t.version + 1
WHERE t.id = $1
RETURNING {RETURNING}
"""
# Its subtasks go along with a moved task (to every level; the tree trigger checks the result).
MOVE_SUBTASKS = f"""
WITH RECURSIVE sub AS (
    SELECT t.id FROM tasks AS t WHERE t.parent_id = $1
    UNION ALL
    SELECT t.id FROM tasks AS t JOIN sub ON t.parent_id = sub.id
)
UPDATE tasks AS t SET project_id = $2,
    assignee_id = CASE WHEN {IS_MEMBER.format("$2", "t.assignee_id")} THEN t.assignee_id END,
    updated_at = now(), version = t.version + 1
WHERE t.id IN (SELECT id FROM sub)
"""
# One pass over the rows of every project the user is a member of; each FILTER is one counter.
SELECT_STATS = f"""
SELECT count(*) FILTER (WHERE t.status = 'todo') AS status_todo,
       count(*) FILTER (WHERE t.status = 'in_progress') AS status_in_progress,
       count(*) FILTER (WHERE t.status = 'done') AS status_done,
       count(*) FILTER (WHERE t.priority = 'low') AS priority_low,
       count(*) FILTER (WHERE t.priority = 'medium') AS priority_medium,
       count(*) FILTER (WHERE t.priority = 'high') AS priority_high,
       count(*) FILTER (WHERE t.priority = 'urgent') AS priority_urgent,
       count(*) FILTER (WHERE t.due_at < now() AND t.status <> 'done') AS overdue,
       count(*) FILTER (WHERE t.completed_at >= now() - INTERVAL '7 days') AS completed_last_7_days,
       -- Seconds until the clock alone changes these counts (a task falls due, a completion ages out).
       EXTRACT(EPOCH FROM LEAST(
           min(t.due_at) FILTER (WHERE t.due_at >= now() AND t.status <> 'done'),
           min(t.completed_at) FILTER (WHERE t.completed_at >= now() - INTERVAL '7 days') + INTERVAL '7 days'
       ) - now())::float8 AS changes_in
FROM tasks AS t {rights.member("t.project_id", "$1")}
"""
SELECT_COUNTS_BY_STATUS = "SELECT t.status, count(*) AS n FROM tasks AS t GROUP BY t.status"

# List query pieces: fixed fragments; only the $n numbers are generated. `{}` marks a parameter.
DUE_KEY = "COALESCE(t.due_at, 'infinity'::timestamptz)"  # the expression of tasks_owner_due_idx
SEARCH_TEXT = "(t.title || ' ' || t.description)"  # the expression of tasks_owner_search_idx
# sort key -> (ORDER BY expression, the cursor value as the same expression, the column the cursor keeps)
SORT_KEYS = {
    "created_at": ("t.created_at", "{}::timestamptz", "t.created_at"),
    "updated_at": ("t.updated_at", "{}::timestamptz", "t.updated_at"),
    "due_at": (DUE_KEY, "COALESCE({}::timestamptz, 'infinity'::timestamptz)", "t.due_at"),
    "priority": ("t.priority", "{}::task_priority", "t.priority"),
}
WHERE_PROJECT = "t.project_id = {}"
WHERE_ASSIGNEE = "t.assignee_id = {}"
WHERE_PARENT = "t.parent_id = {}"
WHERE_TOP_LEVEL = "t.parent_id IS NULL"  # the predicate of tasks_project_top_created_idx
WHERE_STATUS = "t.status = ANY({}::task_status[])"
WHERE_PRIORITY = "t.priority = ANY({}::task_priority[])"
WHERE_TAG = "t.tags @> ARRAY[{}::text]"
WHERE_WORD = SEARCH_TEXT + " ILIKE {}"
WHERE_DUE_BEFORE = DUE_KEY + " < {}"
WHERE_DUE_AFTER = DUE_KEY + " > {} AND t.due_at IS NOT NULL"  # DUE_KEY, so the due index can range-scan
WHERE_OVERDUE = DUE_KEY + " < now() AND t.status <> 'done'"
WHERE_NOT_OVERDUE = "NOT (" + WHERE_OVERDUE + ")"
WHERE_AFTER = "({}, t.id) {} ({}, {})"  # keyset: (key, id) strictly past the cursor's row
# A page: each of the user's projects gives its own first rows straight off a btree (LATERAL, LIMIT), and
# only those are merged and cut to the page. A plain join would read and sort every task of every project
# before the LIMIT; this reads at most (projects x page size) index entries. The membership side is the
# rights join itself (shared/rights.py), written as its FROM item.
SELECT_PAGE = ("SELECT t.id, {} AS k, " + TASK_JSON + " AS body FROM " + rights.MEMBER_PROJECTS +
               " CROSS JOIN LATERAL (SELECT t.* FROM tasks AS t WHERE t.project_id = m.project_id AND {} "
               "ORDER BY {} {}, t.id {} LIMIT {}) AS t ORDER BY {} {}, t.id {} LIMIT {}")


@dataclass(frozen=True)
class TaskFilters:
    """The list filters, named as in the query string (exports reuse them)."""

    status: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    tag: str | None = None
    q: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    overdue: bool | None = None
    project_id: int | None = None
    assignee_id: int | str | None = None  # a user id, or "me": the user whose listing it is
    parent_id: int | str | None = None  # a task id (its direct subtasks), or "none" (top-level tasks)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "TaskFilters":
        """Filters from loaded query (or export) data; other keys are ignored."""
        return cls(status=tuple(data.get("status", ())), priority=tuple(data.get("priority", ())),
                   tag=data.get("tag"), q=data.get("q"), due_before=data.get("due_before"),
                   due_after=data.get("due_after"), overdue=data.get("overdue"),
                   project_id=data.get("project_id"), assignee_id=data.get("assignee_id"),
                   parent_id=data.get("parent_id"))

    @property
    def words(self) -> list[str]:
        return (self.q or "").split()

    def scope(self, owner_id: int, sort: str) -> str:
        """Everything that defines the listing: a cursor is valid only for the listing that made it."""
        due = [d.isoformat() if d else None for d in (self.due_before, self.due_after)]
        return json.dumps([owner_id, sort, sorted(set(self.status)), sorted(set(self.priority)), self.tag,
                           self.words, *due, self.overdue, self.project_id, self.assignee_id, self.parent_id],
                          separators=(",", ":"))


def resolve_owner(*, user_id: int, is_admin: bool, requested: int | None) -> int:
    """Whose view a listing shows: the tasks of your projects; an admin may name anyone with ``owner_id``
    (then the tasks of that user's projects)."""
    if requested is None or requested == user_id:
        return user_id
    if not is_admin:
        raise Forbidden("Only admins may see another user's tasks")
    return requested


def etag(task: asyncpg.Record) -> str:
    return f'"{task["id"]}-{task["version"]}"'


def etag_matches(header: str, current: str, *, weak: bool) -> bool:
    """RFC 9110 list matching: strong comparison for If-Match, weak for If-None-Match."""
    for candidate in (part.strip() for part in header.split(",")):
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            if not weak:
                continue
            candidate = candidate[2:]
        if candidate == current:
            return True
    return False


@dataclass(frozen=True)
class Written:
    """A write's result: the task row as the API returns it, and who must see the change at once."""

    task: asyncpg.Record
    audience: frozenset[int]
    mails: tuple[int | None, ...] = ()  # outbox rows to dispatch after the commit (shared.mail.outbox.dispatch)


def _audience(*rows: asyncpg.Record | None) -> frozenset[int]:
    return frozenset(user for row in rows if row is not None for user in (row["audience"] or ()))


async def create_task(conn: asyncpg.Connection, *, owner_id: int, data: dict[str, Any],
                      is_admin: bool = False) -> Written:
    """Insert a task from validated input; ``completed_at`` is set when it starts as done.

    Needs ``editor`` on the project (``project_id``, default the creator's Inbox). The returned row
    An assignee other than the creator is emailed (outbox): the caller runs this in a transaction when
    ``assignee_id`` is set.

    :param data: title, and optionally description, status, priority, due_at (UTC), tags, project_id
        and assignee_id.
    :raises NotFound: no such project, or not a member; Forbidden: below editor; ValidationFailed: an
        assignee who is not a member of the project.
    """
    project_id = data.get("project_id")
    if project_id is not None and not 1 <= project_id <= MAX_ID:
        raise NotFound("No such project")
    rule = data.get("recurrence")
    if rule is not None:
        rule = recurrence.normalise(rule, data.get("due_at"))
    with tree_errors():
        row = await conn.fetchrow(INSERT_TASK, owner_id, data["title"], data.get("description", ""),
                                  data.get("status", "todo"), data.get("priority", "medium"), data.get("due_at"),
                                  data.get("tags", []), data.get("assignee_id"), project_id, is_admin,
                                  data.get("parent_id"), rule)
    rights.require(row["role"] if row else None, rights.EDITOR)
    if not row["assignee_ok"]:
        raise field_error("assignee_id", "Must be a member of the task's project")
    mails = ()
    if row["assignee_id"] is not None:
        mails = (await notify.task_assigned(conn, task=row, actor_id=owner_id),)
    return Written(row, _audience(row), mails)


async def get_task_for_user(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool,
                            for_update: bool = False, needed: str = rights.VIEWER) -> asyncpg.Record:
    """The task if the user may see it (a member of its project, or a site admin); else NotFound.

    :param for_update: lock the row until the caller's transaction ends (read-modify-write); the row
        then has ``audience`` too.
    :param needed: the role the action needs (Forbidden below it).
    """
    if not 1 <= task_id <= MAX_ID:
        raise NotFound("No such task")
    row = await conn.fetchrow(SELECT_TASK_FOR_WRITE if for_update else SELECT_TASK_FOR_USER,
                              task_id, user_id, is_admin)
    rights.require(row["role"] if row else None, needed, "task")
    assert row is not None
    return row


# The database's answers about the tree and recurrence rules, as the field errors the API promises.
TREE_ERRORS = {"tasks_parent_id_fkey": "The parent task does not exist",
               "tasks_recurrence_due_check": "A recurring task needs a due date"}


@contextlib.contextmanager
def tree_errors():  # type: ignore[no-untyped-def]
    """Map the tree trigger (sql/migrations/0018) and the parent/recurrence constraints to 422s."""
    try:
        yield
    except (asyncpg.CheckViolationError, asyncpg.ForeignKeyViolationError) as exc:
        name = exc.constraint_name or ""
        if name.startswith("tasks_parent_") or name in TREE_ERRORS:
            field = "due_at" if name == "tasks_recurrence_due_check" else "parent_id"
            raise field_error(field, TREE_ERRORS.get(name, exc.args[0] if exc.args else "Invalid parent")) from None
        raise


def _completion(task: asyncpg.Record, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes to store: a recurring task completed moves to its next due date and stays open; a
    rule or due date that is sent is checked against the other (a recurring task needs a due date)."""
    changes = dict(changes)
    rule = changes["recurrence"] if "recurrence" in changes else task["recurrence"]
    due_at = changes["due_at"] if "due_at" in changes else task["due_at"]
    if rule is not None and ("recurrence" in changes or "due_at" in changes):
        rule = recurrence.normalise(rule, due_at)
        if "recurrence" in changes:
            changes["recurrence"] = rule
    if rule is not None and changes.get("status") == "done" and due_at is not None:
        following = recurrence.next_due(rule, due_at)
        if following is not None:
            changes["status"], (changes["due_at"], changes["recurrence"]) = "todo", following
    return changes


def _check_precondition(task: asyncpg.Record, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, etag(task), weak=False):
        raise PreconditionFailed(f"The task has changed; its current ETag is {etag(task)}",
                                 headers={"ETag": etag(task)})


async def update_task(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool,
                      changes: dict[str, Any], if_match: str | None = None) -> Written:
    """Apply a partial update atomically (row lock, rights, precondition, update); bumps version.

    Needs ``editor`` on the task's project, and on the target too when ``project_id`` moves it.

    :param changes: validated fields to change; an empty dict changes nothing and bumps nothing.
    :param if_match: an If-Match header value; when it does not match the current ETag: PreconditionFailed.
    """
    async with conn.transaction():
        task = await get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin,
                                       for_update=True, needed=rights.EDITOR)
        _check_precondition(task, if_match)
        if not changes:
            return Written(task, frozenset())
        target = None
        project_id = changes.get("project_id")
        if project_id is not None and project_id != task["project_id"]:
            if not 1 <= project_id <= MAX_ID:
                raise NotFound("No such project")
            target = await conn.fetchrow(SELECT_TARGET_PROJECT, project_id, user_id, is_admin)
            rights.require(target["role"] if target else None, rights.EDITOR)
        assignee_id = changes.get("assignee_id")
        if assignee_id is not None and not await conn.fetchval(
                SELECT_IS_MEMBER, project_id or task["project_id"], assignee_id):
            raise field_error("assignee_id", "Must be a member of the task's project")
        # A recurring task's completion moves its due date instead (shared/recurrence.py): still a completion.
        completed = changes.get("status") == "done" and json.loads(task["body"])["status"] != "done"
        changes = _completion(task, changes)
        with tree_errors():
            row = await conn.fetchrow(UPDATE_TASK, task_id, changes.get("title"), changes.get("description"),
                                      changes.get("status"), changes.get("priority"), "due_at" in changes,
                                      changes.get("due_at"), changes.get("tags"), project_id,
                                      "assignee_id" in changes, assignee_id, "parent_id" in changes,
                                      changes.get("parent_id"), "recurrence" in changes, changes.get("recurrence"))
            if target is not None:
                await conn.execute(MOVE_SUBTASKS, task_id, project_id)
        kind = "task.completed" if completed else "task.updated"
        await events.record(conn, kind, project_id=row["project_id"], task_id=task_id, actor_id=user_id,
                            data=row["body"])
        if target is not None:  # the old project's members see it leave
            await events.record(conn, kind, project_id=task["project_id"], task_id=task_id, actor_id=user_id,
                                data=row["body"])
        mails = ()
        if row["assignee_id"] not in (None, task["assignee_id"]):
            mails = (await notify.task_assigned(conn, task=row, actor_id=user_id),)
    return Written(row, _audience(task, target), mails)


async def delete_task(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool,
                      if_match: str | None = None) -> Written:
    """Move the task and its subtasks to the trash (needs editor; NotFound if invisible; PreconditionFailed
    if ``if_match`` is stale)."""
    async with conn.transaction():
        task = await get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin,
                                       for_update=True, needed=rights.EDITOR)
        _check_precondition(task, if_match)
        await trash.trash_task(conn, task_id=task_id, project_id=task["project_id"])
        await events.record(conn, "task.deleted", project_id=task["project_id"], task_id=task_id, actor_id=user_id,
                            data={"id": task_id})
    return Written(task, _audience(task))


async def list_tasks(conn: asyncpg.Connection, *, owner_id: int, filters: TaskFilters, sort: str, limit: int,
                     cursor: str | None, secret: str) -> tuple[list[str], str | None]:
    """One keyset page of the tasks of every project ``owner_id`` is a member of: (JSON text of each task,
    next cursor or None at the end).

    :param sort: one of SORTS; ties (and missing due dates) are ordered by id in the same direction.
    :param cursor: a next_cursor of this same listing; anything else is a ValidationFailed.
    """
    scope = filters.scope(owner_id, sort)
    after = _cursor_position(decode_cursor(secret, scope, cursor), sort) if cursor else None
    sql, args = page_query(owner_id, filters, sort, limit + 1, after)
    rows = await conn.fetch(sql, *args)  # one extra row says whether another page exists
    items, next_cursor = page(rows, limit, lambda row: [_cursor_value(row["k"]), row["id"]], secret, scope)
    return [row["body"] for row in items], next_cursor


class Params:
    """Collects arguments and hands out their $n placeholders."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def filter_clause(user_id: int, filters: TaskFilters, param: Callable[[Any], str]) -> str:
    """The WHERE condition of tasks matching ``filters`` (the list's, and the exports'). Which projects
    are the user's is the caller's join (shared/rights.py); ``user_id`` here only resolves "me"."""
    where = ["true"]
    if filters.project_id is not None:
        where.append(WHERE_PROJECT.format(param(filters.project_id)))
    if filters.assignee_id is not None:
        assignee = user_id if filters.assignee_id == "me" else filters.assignee_id
        where.append(WHERE_ASSIGNEE.format(param(assignee)))
    if filters.parent_id == "none":
        where.append(WHERE_TOP_LEVEL)
    elif filters.parent_id is not None:
        where.append(WHERE_PARENT.format(param(filters.parent_id)))
    if filters.status:
        where.append(WHERE_STATUS.format(param(list(filters.status))))
    if filters.priority:
        where.append(WHERE_PRIORITY.format(param(list(filters.priority))))
    if filters.tag is not None:
        where.append(WHERE_TAG.format(param(filters.tag)))
    for word in filters.words:
        where.append(WHERE_WORD.format(param(f"%{_escape_like(word)}%")))
    if filters.due_before is not None:
        where.append(WHERE_DUE_BEFORE.format(param(filters.due_before)))
    if filters.due_after is not None:
        where.append(WHERE_DUE_AFTER.format(param(filters.due_after)))
    if filters.overdue is not None:
        where.append(WHERE_OVERDUE if filters.overdue else WHERE_NOT_OVERDUE)
    return " AND ".join(where[1:] or where)


def page_query(owner_id: int, filters: TaskFilters, sort: str, fetch: int,
               after: tuple[Any, int] | None) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page of ``owner_id``'s projects' tasks (also used by the EXPLAIN test
    and bench/tasks.py explain)."""
    param = Params()
    user = param(owner_id)
    where = filter_clause(owner_id, filters, param)
    descending = sort.startswith("-")
    order_expr, cursor_expr, cursor_column = SORT_KEYS[sort.lstrip("-")]
    if after is not None:
        key = cursor_expr.format(param(after[0]))
        where += " AND " + WHERE_AFTER.format(order_expr, "<" if descending else ">", key, param(after[1]))
    direction = "DESC" if descending else "ASC"
    fetch_param = param(fetch)
    sql = SELECT_PAGE.format(cursor_column, user, where, order_expr, direction, direction, fetch_param,
                             order_expr, direction, direction, fetch_param)
    return sql, param.args


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _cursor_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _cursor_position(values: list[Any], sort: str) -> tuple[Any, int]:
    """The (key, id) a signed cursor points after, type-checked: a valid MAC does not excuse bad data."""
    invalid = ValidationFailed({"cursor": ["Invalid cursor; use the next_cursor of a previous page"]})
    if len(values) != 2 or type(values[1]) is not int:
        raise invalid
    key, task_id = values
    field = sort.lstrip("-")
    if field == "priority":
        if key not in PRIORITIES:
            raise invalid
        return key, task_id
    if key is None and field == "due_at":
        return None, task_id
    try:
        moment = datetime.fromisoformat(key)
    except (TypeError, ValueError):
        raise invalid from None
    if moment.tzinfo is None:
        raise invalid
    return moment, task_id


async def task_stats(conn: asyncpg.Connection, *, owner_id: int) -> tuple[dict[str, Any], float | None]:
    """Counts by status and priority, overdue (due in the past, not done) and completed in the last 7 days.

    :return: the counts, and the seconds until time alone changes them (None: not without a write)
    """
    row = await conn.fetchrow(SELECT_STATS, owner_id)
    return {
        "by_status": {status: row[f"status_{status}"] for status in STATUSES},
        "by_priority": {priority: row[f"priority_{priority}"] for priority in PRIORITIES},
        "overdue": row["overdue"],
        "completed_last_7_days": row["completed_last_7_days"],
    }, row["changes_in"]


async def task_counts_by_status(conn: asyncpg.Connection) -> dict[str, int]:
    """Every user's tasks counted by status, zeros included (for the admin stats)."""
    counts = {status: 0 for status in STATUSES}
    for row in await conn.fetch(SELECT_COUNTS_BY_STATUS):
        counts[row["status"]] = row["n"]
    return counts
