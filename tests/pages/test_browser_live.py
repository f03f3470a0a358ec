"""Two members' pages in real Chromium show each other's changes live (EventSource), without a reload and
without JavaScript errors; without JavaScript the same pages are plain pages with their activity."""
from __future__ import annotations

import pytest
from browser_helpers import check_a11y
from playwright.async_api import expect

from tests.pages.test_browser_pages import make_user, sign_in

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _page_with_errors(new_page, **options):
    page = await new_page(**options)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return page, errors


async def test_two_members_see_each_others_changes_live(new_page, live):
    ada_id = await make_user(live, "ada@example.com", name="Ada")
    bea_id = await make_user(live, "bea@example.com", name="Bea")
    rows = await live.sql("INSERT INTO projects (name, owner_id) VALUES ('Garden', $1) RETURNING id", ada_id)
    project_id = rows[0]["id"]
    await live.sql("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'owner'), "
                   "($1, $3, 'editor')", project_id, ada_id, bea_id)
    ada, ada_errors = await _page_with_errors(new_page)
    bea, bea_errors = await _page_with_errors(new_page)
    await sign_in(ada, "ada@example.com")
    await sign_in(bea, "bea@example.com")
    await ada.goto(f"/projects/{project_id}")
    await bea.goto(f"/projects/{project_id}")
    await expect(bea.get_by_role("heading", name="Garden", level=1)).to_be_visible()
    await bea.wait_for_timeout(300)  # the stream is open
    await ada.get_by_label("New task", exact=True).fill("Plant roses")
    await ada.get_by_role("button", name="Add task").click()
    await expect(bea.get_by_role("link", name="Plant roses")).to_be_visible()  # no reload on Bea's side
    await expect(bea.get_by_role("list", name="Recent activity")).to_contain_text("Ada created “Plant roses”")
    await bea.get_by_role("link", name="Plant roses").click()
    await expect(bea.get_by_role("heading", name="Plant roses", level=1)).to_be_visible()
    await ada.get_by_role("link", name="Plant roses").click()
    await ada.get_by_label("Add a comment").fill("Use compost")
    await ada.get_by_role("button", name="Comment").click()
    await expect(bea.locator("#comments")).to_contain_text("Use compost")
    await expect(bea.get_by_role("list", name="Recent activity")).to_contain_text("Ada commented")
    await check_a11y(bea, "task-live")
    await ada.goto(f"/projects/{project_id}")
    await check_a11y(ada, "project-activity")
    await ada.goto("/webhooks")
    await check_a11y(ada, "webhooks")
    assert ada_errors == [] and bea_errors == []


async def test_without_javascript_the_pages_are_plain(new_page, live):
    await make_user(live, "cy@example.com", name="Cy")
    page = await new_page(java_script_enabled=False)
    await sign_in(page, "cy@example.com")
    await page.goto("/projects")
    await page.get_by_label("Name", exact=True).fill("Solo")
    await page.get_by_role("button", name="Create project").click()
    await expect(page.get_by_role("list", name="Recent activity")).to_contain_text("Cy created the project")
