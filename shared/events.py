"""The change feed: the one way a change records its event, and the one way events are read back.

``record(conn, ...)`` inserts the event on the connection of the change, inside its transaction: the
event commits or rolls back with the change. A single-statement write (the task INSERT, the hot path)
appends ``cte(...)`` to its own statement instead, which inserts the same row from the same columns.

Reading (``changes``) walks the feed in (transaction id, id) order and never past the oldest
transaction still running; docs/changes.md has the argument why a cursor never skips or repeats.
A cursor is signed for one user, so another user's, a forged or a garbled one is a 422.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import asyncpg

from shared import rights
from shared.db.pagination import decode_cursor, encode_cursor
from shared.errors import Gone, ValidationFailed

TYPES = ("task.created", "task.updated", "task.completed", "task.deleted", "task.restored",
         "comment.created", "comment.updated", "comment.deleted", "attachment.created", "attachment.deleted",
         "project.created", "project.updated", "project.deleted", "member.added", "member.updated",
         "member.removed")
COLUMNS = "type, project_id, task_id, actor_id, data, also"
# `$5::text`: the data arrives as JSON text (the pools' jsonb codec would encode it a second time).
INSERT = f"INSERT INTO events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::bigint[])"
DOORBELL_CHANNEL = "events:doorbell"
# A cursor we make is about 60 characters; the limit keeps a percent-encoded one far below the request line limit.
MAX_CURSOR = 200

# The feed position below which every transaction has ended (committed or aborted): see docs/changes.md.
HORIZON = "pg_snapshot_xmin(pg_current_snapshot())"
EVENT_COLUMNS = ("e.id, e.xid::text::bigint AS xid, e.type, e.project_id, e.task_id, e.actor_id, "
                 "COALESCE(NULLIF(u.name, ''), u.email) AS actor_name, e.data::text AS data, e.at")
# One page of a user's feed after ($2 xid, $3 id), below the horizon: each of the user's projects walked
# through its index (the rights fragment as a FROM item), plus the events naming the user in `also`.
# $1 user, $4 rows.
SELECT_CHANGES = f"""
WITH h AS (SELECT {HORIZON} AS horizon),
hits AS (
    SELECT f.* FROM {rights.MEMBER_PROJECTS.format("$1")}, h, LATERAL (
        SELECT e.id, e.xid FROM events AS e
        WHERE e.project_id = m.project_id AND (e.xid, e.id) > ($2::text::xid8, $3::bigint) AND e.xid < h.horizon
        ORDER BY e.xid, e.id LIMIT $4) AS f
    UNION
    SELECT e.id, e.xid FROM events AS e, h
    WHERE e.also @> ARRAY[$1::bigint] AND e.also <> '{{}}'
      AND (e.xid, e.id) > ($2::text::xid8, $3::bigint) AND e.xid < h.horizon
), page AS (SELECT * FROM hits ORDER BY xid, id LIMIT $4)
SELECT {EVENT_COLUMNS}, (SELECT horizon::text::bigint FROM h) AS horizon
FROM (SELECT 1) AS one
LEFT JOIN (page JOIN events AS e ON e.id = page.id LEFT JOIN users AS u ON u.id = e.actor_id) ON true
ORDER BY e.xid, e.id
"""
SELECT_HORIZON = f"SELECT {HORIZON}::text::bigint"
SELECT_RETAINED = ("SELECT COALESCE(max(xid::text::bigint), 0) AS xid, COALESCE(max(id), 0) AS id "
                   "FROM events_retention")
# Retention: the oldest rows first, a bounded batch per statement; the watermark keeps the highest deleted.
DELETE_OLD = """
WITH gone AS (
    DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < $1 ORDER BY at LIMIT $2)
    RETURNING xid, id
), top AS (SELECT xid, id FROM gone ORDER BY xid DESC, id DESC LIMIT 1),
mark AS (
    INSERT INTO events_retention AS r (xid, id) SELECT xid, id FROM top
    ON CONFLICT (only_row) DO UPDATE SET xid = excluded.xid, id = excluded.id
    WHERE (excluded.xid, excluded.id) > (r.xid, r.id)
)
SELECT count(*) FROM gone
"""
COUNT_OLD = "SELECT count(*) FROM (SELECT 1 FROM events WHERE at < $1 LIMIT $2) AS old"
INVALID = {"since": ["Invalid cursor; use a next_cursor or event id you were sent"]}


def cte(type_: str, *, source: str, project: str, task: str, actor: str, data: str) -> str:
    """The same insert as ``record``, as a data-modifying CTE of a single-statement write.

    Each argument is an SQL expression over ``source`` (the CTE holding the changed row).
    """
    return (f"INSERT INTO events ({COLUMNS}) SELECT '{type_}', {project}, {task}, {actor}, ({data})::jsonb, "
            f"'{{}}'::bigint[] FROM {source}")


async def record(conn: asyncpg.Connection, type_: str, *, project_id: int, actor_id: int | None,
                 data: Any, task_id: int | None = None, also: Iterable[int] = ()) -> None:
    """Record one event inside the caller's transaction (the change and its event commit together).

    :param data: the object after the change as its own endpoint returns it: a dict, or JSON text
        already rendered by PostgreSQL.
    """
    assert type_ in TYPES, type_
    assert conn.is_in_transaction(), "an event is written in the transaction of its change"
    text = data if isinstance(data, str) else json.dumps(data, default=_default)
    await conn.execute(INSERT, type_, project_id, task_id, actor_id, text, list(also))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def rfc3339(value: datetime) -> str:
    """As the API writes timestamps (web.request.rfc3339): UTC, a trailing Z, a fraction only when there is one."""
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


@dataclass(frozen=True)
class Position:
    """A place in the feed: after the event (xid, id)."""

    xid: int
    id: int


def scope(user_id: int) -> str:
    return f"changes:{user_id}"


def encode(secret: str, user_id: int, position: Position) -> str:
    return encode_cursor(secret, scope(user_id), [position.xid, position.id])


def decode(secret: str, user_id: int, cursor: str) -> Position:
    """A cursor or event id the user was sent; anything else (another user's, forged, garbled) is a 422."""
    if len(cursor) > MAX_CURSOR:
        raise ValidationFailed(INVALID)
    try:
        values = decode_cursor(secret, scope(user_id), cursor)
    except ValidationFailed:
        raise ValidationFailed(INVALID) from None
    if len(values) != 2 or not all(type(v) is int and 0 <= v < 2**63 for v in values):
        raise ValidationFailed(INVALID)
    return Position(values[0], values[1])


def event_out(secret: str, user_id: int, row: asyncpg.Record) -> dict[str, Any]:
    """An event as the API shows it to ``user_id``: its id is that user's cursor of its position."""
    return {"id": encode(secret, user_id, Position(row["xid"], row["id"])), "type": row["type"],
            "project_id": row["project_id"], "task_id": row["task_id"],
            "actor": None if row["actor_id"] is None else {"id": row["actor_id"], "name": row["actor_name"]},
            "at": rfc3339(row["at"]), "data": json.loads(row["data"])}


def event_json(secret: str, user_id: int, row: asyncpg.Record) -> tuple[str, str]:
    """(id, JSON text) of ``event_out``'s event, built around the stored JSON of ``data`` without parsing it
    (the hot part of a page of 500)."""
    event_id = encode(secret, user_id, Position(row["xid"], row["id"]))
    actor = "null" if row["actor_id"] is None else json.dumps({"id": row["actor_id"], "name": row["actor_name"]})
    head = json.dumps({"id": event_id, "type": row["type"], "project_id": row["project_id"],
                       "task_id": row["task_id"]}, separators=(",", ":"))
    return event_id, f'{head[:-1]},"actor":{actor},"at":"{rfc3339(row["at"])}","data":{row["data"]}}}'


async def horizon(conn: asyncpg.Connection) -> Position:
    """The position of now: no event of a transaction still running sorts before it."""
    return Position(await conn.fetchval(SELECT_HORIZON), 0)


async def start(conn: asyncpg.Connection, *, secret: str, user_id: int, since: str | None) -> Position:
    """Where a reader of ``user_id`` starts: after ``since``, or now without one.

    :raises ValidationFailed: a cursor not made for this user; Gone: retention deleted events after it.
    """
    if since is None:
        return await horizon(conn)
    after = decode(secret, user_id, since)
    retained = await conn.fetchrow(SELECT_RETAINED)
    if (after.xid, after.id) < (retained["xid"], retained["id"]):
        raise Gone("This cursor is older than the change feed keeps; reload everything and start again")
    return after


async def read(conn: asyncpg.Connection, *, user_id: int, after: Position,
               limit: int) -> tuple[list[asyncpg.Record], Position]:
    """Up to ``limit`` of the user's event rows after ``after``, oldest first, and where to continue.

    Must run on the primary: the argument in docs/changes.md is made for the snapshots of one server.
    """
    rows = await conn.fetch(SELECT_CHANGES, user_id, str(after.xid), after.id, limit)
    top = rows[0]["horizon"]
    items = [row for row in rows if row["id"] is not None]
    last = Position(items[-1]["xid"], items[-1]["id"]) if items else after
    if len(items) < limit and (top, 0) > (last.xid, last.id):
        last = Position(top, 0)  # every event of the user below the horizon was read: continue from it
    return items, last


async def changes(conn: asyncpg.Connection, *, secret: str, user_id: int, since: str | None,
                  limit: int) -> tuple[list[str], str]:
    """The user's events after ``since`` as JSON text, oldest first, and the cursor to continue from."""
    after = await start(conn, secret=secret, user_id=user_id, since=since)
    if since is None:
        return [], encode(secret, user_id, after)
    rows, last = await read(conn, user_id=user_id, after=after, limit=limit)
    return [event_json(secret, user_id, row)[1] for row in rows], encode(secret, user_id, last)


async def delete_expired(conn: asyncpg.Connection, *, older_than: datetime, batch: int) -> int:
    """Delete one bounded batch of events older than ``older_than``; returns how many went."""
    async with conn.transaction():
        deleted = await conn.fetchval(DELETE_OLD, older_than, batch)
    return int(deleted or 0)
