"""Browser fixtures (tests/pages/test_browser_*.py): Chromium through Playwright, the app and a worker on a real port."""
from __future__ import annotations

import os
from typing import Any, AsyncIterator

import pytest_asyncio

from shared.config import Settings

# One Chromium per session, the app on a real port.
# They run in the session's event loop (pytestmark asyncio(loop_scope="session")), as the browser does.

@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright, expect

    from tests.pages.browser_helpers import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does)"
    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def live(settings: Settings) -> AsyncIterator[Any]:
    """The real app and a real arq worker serving on a free port (public_url points at it)."""
    from tests.pages.browser_helpers import LiveApp, live_settings

    app = LiveApp(live_settings(settings))
    await app.start()
    yield app
    await app.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser: Any, live: Any) -> AsyncIterator[Any]:
    """await new_page(**context_options) -> a page in a fresh browser context (own cookies) on the live app."""
    from tests.pages.browser_helpers import TIMEOUT_MS

    contexts = []

    async def make(**options: Any) -> Any:
        context = await browser.new_context(base_url=live.url, accept_downloads=True, **options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return await context.new_page()

    yield make
    for context in contexts:
        await context.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the browser tests left their screenshots (one PNG per page visited)."""
    from tests.pages.browser_helpers import SCREENSHOTS

    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.glob("*.png")):
        terminalreporter.write_line(f"browser screenshots: {SCREENSHOTS}")
