"""The live streams' doorbell: one Redis pub/sub subscription per web process, and the ring after a write.

Redis pub/sub is at-most-once, so it carries nothing but "something changed": a ring wakes every open
stream of this process, and each stream then reads its user's events from the feed (shared.events). A
lost ring costs latency (streams also look at the feed every ``POLL_SECONDS``), never an event.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.config import Settings
from shared.events import DOORBELL_CHANNEL
from shared.observability.metrics import DOORBELL_ERRORS, EVENT_STREAMS_OPEN
from web.keys import AUTH, REDIS, SETTINGS

logger = logging.getLogger("app.live")
T = TypeVar("T")
POLL_SECONDS = 5.0  # the longest a stream waits without a ring
RECONNECT_SECONDS = 1.0
LISTEN_SECONDS = 1.0
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Hub:
    """This process's open streams, each with the event that wakes it, and their shared feed reads."""

    def __init__(self) -> None:
        self.wakers: set[asyncio.Event] = set()
        self.closing = False
        self.generation = 0  # rings seen so far
        self._ringing: asyncio.Task[None] | None = None
        self._reads: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    async def shared_read(self, key: tuple[Any, ...], generation: int, read: Callable[[], Awaitable[T]]) -> T:
        """Streams of one user at one position, woken by the same ring, make one feed read between them.

        A read is joined only by streams whose ``generation`` (taken when they were woken, before reading)
        is not newer than the read's own: its snapshot was taken after the ring that woke them, so it has
        every commit they were woken for. One user's 1,000 open tabs then cost one query per ring, not 1,000.
        """
        flight_key = (*key, generation)
        flight = self._reads.get(flight_key)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._reads[flight_key] = flight
        try:
            result = await read()
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: a lone reader's failure is raised below, not logged as unhandled
            raise
        finally:
            self._reads.pop(flight_key, None)
        flight.set_result(result)
        return result

    def open(self) -> asyncio.Event:
        waker = asyncio.Event()
        self.wakers.add(waker)
        EVENT_STREAMS_OPEN.inc()
        return waker

    def close(self, waker: asyncio.Event) -> None:
        if waker in self.wakers:
            self.wakers.discard(waker)
            EVENT_STREAMS_OPEN.dec()

    def wake_all(self) -> None:
        self.generation += 1
        for waker in self.wakers:
            waker.set()

    def shut_down(self) -> None:
        """SIGTERM: every stream ends now with a retry hint, so draining does not wait for them."""
        self.closing = True
        self.wake_all()

    async def listen(self, settings: Settings) -> None:
        """Ring the local streams on every doorbell message; resubscribe after a Redis failure."""
        while True:
            # REDIS_URL directly, not shared.redis_client: a subscription through its pool was still open when
            # the test loop closed (not yet understood), so under Sentinel the doorbell follows REDIS_URL only.
            # A lost doorbell costs latency (streams poll every POLL_SECONDS), never an event.
            client = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(DOORBELL_CHANNEL)
                    self.wake_all()  # rings may have been missed while (re)subscribing
                    while True:
                        # Shorter than the client's socket timeout: an idle channel is not a dead one.
                        message = await pubsub.get_message(timeout=LISTEN_SECONDS)
                        if message is not None:
                            self.wake_all()
            except (RedisError, OSError):
                DOORBELL_ERRORS.inc()
                logger.warning("doorbell subscription lost; streams poll the feed until it is back", exc_info=True)
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                # The pool is the client's own (redis_client.client builds one per call): close it too, or its
                # connections outlive the loop.
                await client.aclose()

    def ring_later(self, redis: Redis) -> None:
        """Publish one ring after a write, without delaying its response; rings coalesce while one is in flight
        (the streams read everything new anyway)."""
        if self._ringing is not None and not self._ringing.done():
            return
        self._ringing = asyncio.create_task(_publish(redis))


async def _publish(redis: Redis) -> None:
    try:
        await redis.publish(DOORBELL_CHANNEL, b"")
    except (RedisError, OSError):
        DOORBELL_ERRORS.inc()
        logger.warning("could not ring the doorbell; streams see the change within %s s", POLL_SECONDS)


HUB = web.AppKey("live_hub", Hub)


async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB] = Hub()
    listener = asyncio.create_task(hub.listen(app[SETTINGS]), name="doorbell")
    yield
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)


async def on_shutdown(app: web.Application) -> None:
    app[HUB].shut_down()


@web.middleware
async def doorbell_middleware(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
    """After a successful write by a signed-in caller, ring: its event (if any) has committed by now."""
    response = await handler(request)
    if request.method in UNSAFE_METHODS and response.status < 400 and request.get(AUTH) is not None:
        request.app[HUB].ring_later(request.app[REDIS])
    return response


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(on_shutdown)
