"""/api/v1/events: the change feed as a live Server-Sent Events stream (aiohttp-sse).

Each stream reads its user's events from the feed (shared.events, on the primary, like /changes) after its
own position, whenever the process's doorbell rings (web.live) and at least every POLL_SECONDS. Nothing is
queued per stream beyond the page being written: a client that cannot take a write within SEND_TIMEOUT is
disconnected by aiohttp-sse and resumes with Last-Event-ID. A user holds at most EVENTS_MAX_STREAMS open
streams across every process (a Redis sorted set of live streams, refreshed while each one lives).
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response
from marshmallow import Schema, validate
from redis.exceptions import RedisError

from shared import events
from shared.errors import RateLimited, Unauthorized
from shared.observability.metrics import EVENT_PUSH_LAG, EVENT_STREAM_ENDS, EVENTS_PUSHED
from web.auth import authenticate, recheck
from web.keys import DB, REDIS, SETTINGS
from web.live import HUB, POLL_SECONDS
from web.openapi import api, ok
from web.request import load_query
from web.schemas import Text

logger = logging.getLogger("app.stream")
TAGS = ("changes",)
PAGE = 200
PING_SECONDS = 15.0  # a comment line at least this often (the contract's heartbeat)
SEND_TIMEOUT = 10.0  # a client that cannot take one write in this long is cut off (and resumes)
RECHECK_SECONDS = 5.0  # how soon a revoked session's streams end
RETRY_MS = 2000  # the reconnect delay a closing process asks for
STREAM_STALE = 60  # seconds without a refresh after which a crashed process's stream no longer counts
STREAMS_KEY = "events:streams:{}"
# Count the user's live streams and add this one, atomically across processes: 1 added, 0 over the cap.
_OPEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[4]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


class StreamSlot:
    """This stream's entry among the user's open streams."""

    def __init__(self, request: web.Request, user_id: int) -> None:
        self.redis = request.app[REDIS]
        self.key, self.member = STREAMS_KEY.format(user_id), uuid.uuid4().hex
        self.cap = request.app[SETTINGS].events_max_streams

    async def take(self) -> None:
        try:
            taken = await self.redis.eval(_OPEN, 1, self.key, time.time(), self.member, self.cap, STREAM_STALE)
        except (RedisError, OSError):
            logger.warning("stream cap unavailable (Redis); letting the stream open", exc_info=True)
            return
        if not taken:
            raise RateLimited(f"At most {self.cap} open event streams per user; close one first",
                              headers={"Retry-After": str(STREAM_STALE)})

    async def refresh(self) -> None:
        try:
            await self.redis.zadd(self.key, {self.member: time.time()}, xx=True)
            await self.redis.expire(self.key, STREAM_STALE)
        except (RedisError, OSError):
            pass

    async def give_back(self) -> None:
        try:
            await self.redis.zrem(self.key, self.member)
        except (RedisError, OSError):
            pass  # it goes stale within STREAM_STALE


class StreamQuerySchema(Schema):
    since = Text(load_default=None, validate=validate.Length(max=events.MAX_CURSOR),
                 metadata={"description": "Resume after this event id or cursor (the Last-Event-ID header wins)"})


QUERY = StreamQuerySchema()
STREAM = {"text/event-stream": {"schema": {"type": "string"}}}


@api(tags=TAGS, auth="user", query=StreamQuerySchema, errors=(410,),
     responses={200: ok("Each event with `id:`, `event:` (its type) and `data:` (the event)", content=STREAM)})
async def event_stream(request: web.Request) -> web.StreamResponse:
    """Your projects' events, live. Resumes after `Last-Event-ID` (or `?since=`); a comment line every 15 s."""
    auth = await authenticate(request)
    settings, db, hub = request.app[SETTINGS], request.app[DB], request.app[HUB]
    since = request.headers.get("Last-Event-ID") or load_query(request, QUERY)["since"]
    async with db.write.acquire() as conn:
        position = await events.start(conn, secret=settings.secret_key, user_id=auth.user_id, since=since)
    slot = StreamSlot(request, auth.user_id)
    await slot.take()
    waker = hub.open()
    reason = "client"
    try:
        async with sse_response(request, ping_interval=PING_SECONDS, send_timeout=SEND_TIMEOUT) as response:
            checked = time.monotonic()
            while response.is_connected():
                if hub.closing:
                    await response.send("", retry=RETRY_MS)
                    reason = "shutdown"
                    break
                if time.monotonic() - checked >= RECHECK_SECONDS:
                    try:
                        await recheck(request)
                    except Unauthorized:
                        reason = "revoked"
                        break
                    await slot.refresh()
                    checked = time.monotonic()
                waker.clear()  # before reading: a ring during the read wakes the next round
                generation = hub.generation

                async def read(after: events.Position = position) -> tuple[list[Any], events.Position]:
                    async with db.write.acquire() as conn:
                        return await events.read(conn, user_id=auth.user_id, after=after, limit=PAGE)
                rows, position = await hub.shared_read((auth.user_id, position.xid, position.id), generation, read)
                for row in rows:
                    event_id, text = events.event_json(settings.secret_key, auth.user_id, row)
                    try:
                        await response.send(text, id=event_id, event=row["type"])
                    except TimeoutError:
                        # aiohttp-sse aborted a client that took no write for SEND_TIMEOUT (noted here: the
                        # abort may cancel this handler, and that cancellation replaces this error)
                        reason = "slow"
                        raise
                    EVENT_PUSH_LAG.observe(max(0.0, time.time() - row["at"].timestamp()))
                EVENTS_PUSHED.inc(len(rows))
                if rows:
                    await db.wrote(auth.user_id)  # what was sent reads back through any replica
                if len(rows) == PAGE:
                    continue
                try:
                    await asyncio.wait_for(waker.wait(), min(POLL_SECONDS, RECHECK_SECONDS))
                except TimeoutError:
                    pass
    except (TimeoutError, ConnectionResetError):
        pass  # the client is gone or was cut off; it resumes with Last-Event-ID
    finally:
        hub.close(waker)
        await slot.give_back()
        EVENT_STREAM_ENDS.labels(reason).inc()
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/events", event_stream, name="events-stream")
