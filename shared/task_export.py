"""Which tasks an export contains, and how they look as CSV.

The filters are the task list's: ``shared.tasks.TaskFilters`` and its ``filter_clause``, the very
WHERE condition of ``GET /api/v1/tasks``, so a filter means the same thing in both places. The order
is the list's too (``shared.tasks.SORT_KEYS``), ending in the id so the row order is total.

CSV lines are built by PostgreSQL, as the task API has PostgreSQL build its JSON: Python's csv
module manages about 30 MB/s on task text (1.2 s of the 3 s budget for 100,000 tasks); the same
quoting in SQL costs the database much less and leaves Python only joining lines.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Sequence

from shared import rights, tasks
from shared.tasks import TaskFilters

DEFAULT_SORT = "-created_at"
CSV_COLUMNS = ("id", "title", "description", "status", "priority", "due_at", "tags",
               "created_at", "updated_at", "completed_at", "project_id", "assignee_id", "parent_id")
# Spreadsheets run a cell starting with one of these as a formula (CSV/formula injection, OWASP):
# = + - @ tab carriage-return. Such a cell gets a leading apostrophe (see CSV_TEXT_CELL).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
TAG_SEPARATOR = ", "
LINE_END = "\r\n"  # RFC 4180

# RFC 3339 UTC, as the API prints timestamps.
UTC_TEXT = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
# A free-text cell: neutralised, then always quoted with inner quotes doubled (RFC 4180), so commas,
# quotes and line breaks in task text are safe. `{0}` is the column expression.
CSV_TEXT_CELL = (
    "('\"' || replace(CASE WHEN left({0}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') "
    "THEN '''' || {0} ELSE {0} END, '\"', '\"\"') || '\"')"
)
TAGS_TEXT = f"array_to_string(t.tags, '{TAG_SEPARATOR}')"

# The rows as columns (the PDF lays them out), in CSV_COLUMNS order. The `{}` slots left after this
# module's own formatting take WHERE/ORDER fragments built only from constants and $n placeholders.
SELECT_EXPORT_ROWS = (
    "SELECT t.id, t.title, t.description, t.status::text AS status, t.priority::text AS priority, "
    f"{UTC_TEXT.format('t.due_at')} AS due_at, {TAGS_TEXT} AS tags, "
    f"{UTC_TEXT.format('t.created_at')} AS created_at, {UTC_TEXT.format('t.updated_at')} AS updated_at, "
    f"{UTC_TEXT.format('t.completed_at')} AS completed_at, t.project_id, t.assignee_id, t.parent_id "
    "FROM tasks AS t {} WHERE {} ORDER BY {} {}, t.id {}"
)
# The same rows as finished CSV lines. Ids, enums and timestamps never need quoting or neutralising;
# a missing timestamp is an empty cell.
_CSV_CELLS = (
    "t.id::text", CSV_TEXT_CELL.format("t.title"), CSV_TEXT_CELL.format("t.description"), "t.status::text",
    "t.priority::text", f"COALESCE({UTC_TEXT.format('t.due_at')}, '')", CSV_TEXT_CELL.format(TAGS_TEXT),
    UTC_TEXT.format("t.created_at"), UTC_TEXT.format("t.updated_at"),
    f"COALESCE({UTC_TEXT.format('t.completed_at')}, '')", "t.project_id::text", "COALESCE(t.assignee_id::text, '')",
    "COALESCE(t.parent_id::text, '')",
)
SELECT_CSV_LINES = ("SELECT " + " || ',' || ".join(_CSV_CELLS).replace("{", "{{").replace("}", "}}")
                    + " AS line FROM tasks AS t {} WHERE {} ORDER BY {} {}, t.id {}")
COUNT_EXPORT_ROWS = "SELECT count(*) FROM tasks AS t {} WHERE {}"


def export_queries(owner_id: int, filters: TaskFilters, sort: str, *,
                   csv: bool = False) -> tuple[str, str, list[Any]]:
    """(rows SQL, count SQL, their shared arguments) for every task matching ``filters`` in the projects
    ``owner_id`` is a member of (the rights join, as the list's), in ``sort`` order.

    :param csv: rows as finished CSV lines (one ``line`` column) instead of columns.
    """
    param = tasks.Params()
    member = rights.member("t.project_id", param(owner_id))
    where = tasks.filter_clause(owner_id, filters, param)
    order_expr = tasks.SORT_KEYS[sort.lstrip("-")][0]
    direction = "DESC" if sort.startswith("-") else "ASC"
    select = SELECT_CSV_LINES if csv else SELECT_EXPORT_ROWS
    return (select.format(member, where, order_expr, direction, direction), COUNT_EXPORT_ROWS.format(member, where),
            param.args)


def filters_to_params(data: dict[str, Any]) -> dict[str, Any]:
    """Validated export filters (``TaskFilterSchema`` + sort) as JSON for the job row."""
    params: dict[str, Any] = {}
    for name, value in data.items():
        if value is None or value == []:
            continue
        params[name] = value.isoformat() if isinstance(value, datetime) else value
    return params


def params_to_filters(params: dict[str, Any]) -> tuple[TaskFilters, str]:
    """The job row's filters back as ``TaskFilters`` and the sort key."""
    data = dict(params)
    for name in ("due_before", "due_after"):
        if data.get(name):
            data[name] = datetime.fromisoformat(data[name])
    return TaskFilters.from_mapping(data), data.get("sort") or DEFAULT_SORT


def csv_header() -> bytes:
    return (",".join(CSV_COLUMNS) + LINE_END).encode()


def csv_lines(rows: Iterable[Sequence[str]]) -> bytes:
    """A batch of SELECT_CSV_LINES rows as UTF-8 bytes."""
    return "".join([row[0] + LINE_END for row in rows]).encode("utf-8")
