"""Tasks: business rules and SQL, shared by the JSON API and the HTML views.

Rows come back with the task already rendered as JSON text by PostgreSQL (``body``): the API sends
it as is, so the hot path builds no per-row Python objects. ``TASK_JSON`` is the one definition of
the output fields; ``web.api.tasks.TaskOutSchema`` documents them and a test keeps the two equal.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

import asyncpg

from shared.errors import Forbidden, NotFound, PreconditionFailed, ValidationFailed
from shared.db.pagination import decode_cursor, page

logger = logging.getLogger("app.tasks")

STATUSES = ("todo", "in_progress", "done")
PRIORITIES = ("low", "medium", "high", "urgent")  # the enum's order, which is the sort order
SORTS = ("created_at", "-created_at", "due_at", "-due_at", "priority", "-priority", "updated_at", "-updated_at")
TASK_FIELDS = ("id", "owner_id", "title", "description", "status", "priority", "due_at", "tags",
               "created_at", "updated_at", "completed_at")
MAX_ID = 2**63 - 1  # bigint: a larger path id cannot exist, and asyncpg would refuse to send it
MAX_SEARCH_WORDS = 10


def _utc(column: str) -> str:
    # RFC 3339 UTC with a trailing Z, whole seconds (the contract's own example format).
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


TASK_JSON = (
    "json_build_object('id', t.id, 'owner_id', t.owner_id, 'title', t.title, 'description', t.description, "
    "'status', t.status, 'priority', t.priority, 'due_at', " + _utc("t.due_at") + ", 'tags', t.tags, "
    "'created_at', " + _utc("t.created_at") + ", 'updated_at', " + _utc("t.updated_at") + ", "
    "'completed_at', " + _utc("t.completed_at") + ")::text"
)
RETURNING = f"t.id, t.owner_id, t.version, {TASK_JSON} AS body"

INSERT_TASK = f"""
INSERT INTO tasks AS t (owner_id, title, description, status, priority, due_at, tags, completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $4::task_status = 'done' THEN now() END)
RETURNING {RETURNING}
"""
# The single owner check: someone else's task looks exactly like a missing one (404, never 403).
SELECT_TASK_FOR_USER = f"SELECT {RETURNING} FROM tasks AS t WHERE t.id = $1 AND (t.owner_id = $2 OR $3)"
SELECT_TASK_FOR_USER_LOCKED = SELECT_TASK_FOR_USER + " FOR UPDATE"
# One fixed statement for every PATCH: NULL means "not sent" ($6 says whether due_at was sent, since
# null is a legal due_at). completed_at keeps its first value while the task stays done.
UPDATE_TASK = f"""
UPDATE tasks AS t SET
    title = COALESCE($2, t.title),
    description = COALESCE($3, t.description),
    status = COALESCE($4::task_status, t.status),
    priority = COALESCE($5::task_priority, t.priority),
    due_at = CASE WHEN $6 THEN $7 ELSE t.due_at END,
    tags = COALESCE($8, t.tags),
    completed_at = CASE WHEN COALESCE($4::task_status, t.status) <> 'done' THEN NULL
                        WHEN t.status = 'done' THEN t.completed_at ELSE now() END,
    updated_at = now(),
    version = t.version + 1
WHERE t.id = $1
RETURNING {RETURNING}
"""
DELETE_TASK = "DELETE FROM tasks WHERE id = $1"
# One pass over the owner's rows; each FILTER is one counter.
SELECT_STATS = """
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
FROM tasks AS t
WHERE t.owner_id = $1
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
WHERE_OWNER = "t.owner_id = {}"
WHERE_STATUS = "t.status = ANY({}::task_status[])"
WHERE_PRIORITY = "t.priority = ANY({}::task_priority[])"
WHERE_TAG = "t.tags @> ARRAY[{}::text]"
WHERE_WORD = SEARCH_TEXT + " ILIKE {}"
WHERE_DUE_BEFORE = DUE_KEY + " < {}"
WHERE_DUE_AFTER = DUE_KEY + " > {} AND t.due_at IS NOT NULL"  # DUE_KEY, so the due index can range-scan
WHERE_OVERDUE = DUE_KEY + " < now() AND t.status <> 'done'"
WHERE_NOT_OVERDUE = "NOT (" + WHERE_OVERDUE + ")"
WHERE_AFTER = "({}, t.id) {} ({}, {})"  # keyset: (key, id) strictly past the cursor's row
SELECT_PAGE = ("SELECT t.id, {} AS k, " + TASK_JSON +
               " AS body FROM tasks AS t WHERE {} ORDER BY {} {}, t.id {} LIMIT {}")


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

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "TaskFilters":
        """Filters from loaded query (or export) data; other keys are ignored."""
        return cls(status=tuple(data.get("status", ())), priority=tuple(data.get("priority", ())),
                   tag=data.get("tag"), q=data.get("q"), due_before=data.get("due_before"),
                   due_after=data.get("due_after"), overdue=data.get("overdue"))

    @property
    def words(self) -> list[str]:
        return (self.q or "").split()

    def scope(self, owner_id: int, sort: str) -> str:
        """Everything that defines the listing: a cursor is valid only for the listing that made it."""
        due = [d.isoformat() if d else None for d in (self.due_before, self.due_after)]
        return json.dumps([owner_id, sort, sorted(set(self.status)), sorted(set(self.priority)), self.tag,
                           self.words, *due, self.overdue], separators=(",", ":"))


def resolve_owner(*, user_id: int, is_admin: bool, requested: int | None) -> int:
    """Whose tasks a listing shows: your own; an admin may name anyone with ``owner_id``."""
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


async def create_task(conn: asyncpg.Connection, *, owner_id: int, data: dict[str, Any]) -> asyncpg.Record:
    """Insert a task from validated input; ``completed_at`` is set when it starts as done.

    :param data: title, and optionally description, status, priority, due_at (UTC) and tags.
    """
    return await conn.fetchrow(INSERT_TASK, owner_id, data["title"], data.get("description", ""),
                               data.get("status", "todo"), data.get("priority", "medium"), data.get("due_at"),
                               data.get("tags", []))


async def get_task_for_user(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool,
                            for_update: bool = False) -> asyncpg.Record:
    """The task if the user owns it or is an admin; otherwise NotFound (never revealing that it exists).

    :param for_update: lock the row until the caller's transaction ends (read-modify-write).
    """
    if not 1 <= task_id <= MAX_ID:
        raise NotFound("No such task")
    row = await conn.fetchrow(SELECT_TASK_FOR_USER_LOCKED if for_update else SELECT_TASK_FOR_USER,
                              task_id, user_id, is_admin)
    if row is None:
        raise NotFound("No such task")
    return row


def _check_precondition(task: asyncpg.Record, if_match: str | None) -> None:
    if if_match is not None and not etag_matches(if_match, etag(task), weak=False):
        raise PreconditionFailed(f"The task has changed; its current ETag is {etag(task)}",
                                 headers={"ETag": etag(task)})


async def update_task(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool,
                      changes: dict[str, Any], if_match: str | None = None) -> asyncpg.Record:
    """Apply a partial update atomically (row lock, precondition, update); bumps version and updated_at.

    :param changes: validated fields to change; an empty dict changes nothing and bumps nothing.
    :param if_match: an If-Match header value; when it does not match the current ETag: PreconditionFailed.
    """
    async with conn.transaction():
        task = await get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin,
                                       for_update=True)
        _check_precondition(task, if_match)
        if not changes:
            return task
        return await conn.fetchrow(UPDATE_TASK, task_id, changes.get("title"), changes.get("description"),
                                   changes.get("status"), changes.get("priority"), "due_at" in changes,
                                   changes.get("due_at"), changes.get("tags"))


async def delete_task(conn: asyncpg.Connection, *, task_id: int, user_id: int, is_admin: bool,
                      if_match: str | None = None) -> int:
    """Delete the task (NotFound if it is not the user's; PreconditionFailed if ``if_match`` is stale).

    :return: the deleted task's owner (an admin may delete anyone's)
    """
    async with conn.transaction():
        task = await get_task_for_user(conn, task_id=task_id, user_id=user_id, is_admin=is_admin,
                                       for_update=True)
        _check_precondition(task, if_match)
        await conn.execute(DELETE_TASK, task_id)
    return int(task["owner_id"])


async def list_tasks(conn: asyncpg.Connection, *, owner_id: int, filters: TaskFilters, sort: str, limit: int,
                     cursor: str | None, secret: str) -> tuple[list[str], str | None]:
    """One keyset page of the owner's tasks: (JSON text of each task, next cursor or None at the end).

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


def filter_clause(owner_id: int, filters: TaskFilters, param: Callable[[Any], str]) -> str:
    """The WHERE condition of the owner's tasks matching ``filters`` (the list's, and the exports')."""
    where = [WHERE_OWNER.format(param(owner_id))]
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
    return " AND ".join(where)


def page_query(owner_id: int, filters: TaskFilters, sort: str, fetch: int,
               after: tuple[Any, int] | None) -> tuple[str, list[Any]]:
    """The SQL and arguments of one page (also used by the EXPLAIN test and bench/tasks.py explain)."""
    param = Params()
    where = filter_clause(owner_id, filters, param)
    descending = sort.startswith("-")
    order_expr, cursor_expr, cursor_column = SORT_KEYS[sort.lstrip("-")]
    if after is not None:
        key = cursor_expr.format(param(after[0]))
        where += " AND " + WHERE_AFTER.format(order_expr, "<" if descending else ">", key, param(after[1]))
    direction = "DESC" if descending else "ASC"
    sql = SELECT_PAGE.format(cursor_column, where, order_expr, direction, direction, param(fetch))
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
