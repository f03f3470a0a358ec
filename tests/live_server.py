"""The real app on a real port, for synchronous HTTP clients (schemathesis, a generated client).

It runs in a thread with its own event loop, so a plain (non-async) test can call it over HTTP while
the app talks to the session's PostgreSQL and Redis as in production.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

from aiohttp import web

from shared import accounts
from shared.config import Settings
from shared.security import create_access_token, hash_password
from web.app import create_app
from web.keys import DB

T = TypeVar("T")
START_TIMEOUT = 60.0
INSERT_SESSION = "INSERT INTO sessions (user_id) VALUES ($1) RETURNING id"


class LiveServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-server", daemon=True)
        self._runner = web.AppRunner(self.app)
        self.url = ""

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *_: Any) -> None:
        self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(START_TIMEOUT)
        self.loop.close()

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop (its pools live there) and wait for the result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT)

    def create_user(self, email: str, password: str, role: str = "user") -> int:
        async def create() -> int:
            password_hash = await hash_password(password, self.settings)
            async with self.app[DB].write.acquire() as conn:
                user = await accounts.create_user(conn, email=email, password_hash=password_hash, role=role,
                                                  email_verified=True)
            return int(user["id"])
        return self.run(create())

    def bearer(self, user_id: int) -> dict[str, str]:
        """A fresh login session for ``user_id``: a fuzzer that logs out only ends its own session."""
        async def token() -> str:
            async with self.app[DB].write.acquire() as conn:
                session_id = str(await conn.fetchval(INSERT_SESSION, user_id))
            return create_access_token(self.settings, user_id=user_id, session_id=session_id)[0]
        return {"Authorization": f"Bearer {self.run(token())}"}
