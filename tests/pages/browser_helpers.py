"""A real browser against the real app: Debian Chromium driven by Playwright, the app on a real port.

Async Playwright, the app and an arq worker share the session's event loop (the browser tests run with
``loop_scope="session"``, so one browser serves the whole session); each test gets fresh contexts.
Screenshots of every page go to ``var/screenshots/`` (or ``$TASKDECK_SCREENSHOTS``).
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from shared.config import Settings
from launcher.devstack import free_port
from web.app import create_app
from web.keys import DB
from worker.settings import build_worker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]
SCREENSHOTS = Path(os.environ.get("TASKDECK_SCREENSHOTS")
                   or Path(__file__).resolve().parents[2] / "var" / "screenshots")
PASSWORD = "correct horse battery"
TIMEOUT_MS = 30_000  # a loaded CI machine; every wait polls, none sleeps


@dataclass
class LiveApp:
    """The app and a real arq worker, serving on 127.0.0.1:<port> inside the test's event loop."""

    settings: Settings
    app: web.Application | None = None
    _runner: web.AppRunner | None = None
    _worker: Any = None
    _worker_task: asyncio.Task[Any] | None = None

    @property
    def url(self) -> str:
        return self.settings.public_url

    async def start(self) -> None:
        port = int(self.settings.public_url.rsplit(":", 1)[1])
        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._worker = build_worker(self.settings, cron_jobs=None, poll_delay=0.05)
        self._worker_task = asyncio.create_task(self._worker.async_run())

    async def sql(self, query: str, *args: Any) -> Any:
        """Rows of a query on the app's own pool (arranging data, checking what the pages did)."""
        assert self.app is not None
        async with self.app[DB].write.acquire() as conn:
            return await conn.fetch(query, *args)

    async def stop(self) -> None:
        if self._worker is not None:
            # As arq's graceful stop: pick nothing new, let running jobs record their results.
            self._worker.allow_pick_jobs = False
            await asyncio.gather(*list(self._worker.tasks.values()), return_exceptions=True)
            await asyncio.sleep(0.2)
            assert self._worker_task is not None
            self._worker_task.cancel()
            await asyncio.gather(self._worker_task, return_exceptions=True)
            await self._worker.close()
        if self._runner is not None:
            await self._runner.cleanup()


def live_settings(settings: Settings) -> Settings:
    return settings.with_(public_url=f"http://127.0.0.1:{free_port()}")


async def mail_link(smtp: Any, to: str, path: str, timeout: float = 30.0) -> str:
    """The link to ``path`` in the newest mail the sink received for ``to`` (waits for the worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(smtp.messages()):
            if to in str(message["To"]):
                body = message.get_body(preferencelist=("plain",)).get_content()
                match = re.search(r"https?://\S+" + re.escape(path) + r"\S*", body)
                if match:
                    return match.group(0)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail to {to} with a link to {path}")


async def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


_AXE: Any = None


async def check_a11y(page: Any, name: str) -> None:
    """axe-core in the page, in the light and in the dark colour scheme: no serious or critical violation in
    either; a full-page screenshot of each (``name.png``, ``name-dark.png``). The page keeps its scheme."""
    dark_first = await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    schemes = ("dark", "light") if dark_first else ("light", "dark")
    for scheme in schemes:
        await page.emulate_media(color_scheme=scheme)
        await _axe(page, name if scheme == "light" else f"{name}-dark")
    await page.emulate_media(color_scheme=schemes[0])


async def _axe(page: Any, name: str) -> None:
    global _AXE
    from axe_playwright_python.async_playwright import Axe

    _AXE = _AXE or Axe()
    results = await _AXE.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    summary = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in bad]
    await shot(page, name)
    assert not bad, f"{name}: accessibility violations {summary}"
