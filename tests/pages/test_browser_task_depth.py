"""In real Chromium: subtasks with progress, a repeat chosen by name with its next occurrences, a file
uploaded with the progress bar (JavaScript) and without JavaScript, and a task deleted and restored from
the Trash page; axe on the task and trash pages."""
from __future__ import annotations

import re

import pytest
from browser_helpers import check_a11y, shot
from playwright.async_api import expect

from tests.pages.test_browser_pages import make_user, sign_in

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_subtasks_repeat_files_and_the_trash(new_page, live, tmp_path):
    await make_user(live, "ada@example.com", name="Ada")
    page = await new_page()
    await sign_in(page, "ada@example.com")
    await page.get_by_label("Title", exact=True).first.fill("Water the garden")
    await page.get_by_role("button", name="Create task").click()
    await page.get_by_role("link", name="Water the garden").click()
    await expect(page.get_by_role("heading", name="Water the garden", level=1)).to_be_visible()

    for title in ("Fill the can", "Check the hose"):
        await page.get_by_label("New subtask").fill(title)
        await page.get_by_role("button", name="Add subtask").click()
        await expect(page.get_by_role("link", name=title)).to_be_visible()
    await expect(page.get_by_text("0 of 2 done")).to_be_visible()

    await page.get_by_label("Due", exact=True).fill("2030-01-07T09:00")
    await page.get_by_label("Repeats").select_option("weekdays")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("list", name="Next occurrences").get_by_role("listitem")).to_have_count(5)

    file = tmp_path / "plan.txt"
    file.write_bytes(b"north bed first\n" * 20000)
    await page.get_by_label("Attach a file").set_input_files(str(file))
    await page.get_by_role("button", name="Upload").click()
    await expect(page.get_by_role("link", name="plan.txt")).to_be_visible()
    await check_a11y(page, "task-depth")
    task_url = page.url.split("#")[0]

    no_js = await new_page(java_script_enabled=False)
    await sign_in(no_js, "ada@example.com")
    await no_js.goto(task_url)
    await no_js.get_by_label("Attach a file").set_input_files(str(file))
    await no_js.get_by_role("button", name="Upload").click()
    await expect(no_js.get_by_role("status")).to_contain_text("File attached")
    await expect(no_js.get_by_role("link", name="plan.txt")).to_have_count(2)

    await page.goto(task_url)
    await page.get_by_role("link", name="Delete…").click()
    await page.get_by_role("button", name="Delete task").click()
    await page.get_by_role("link", name="Trash", exact=True).click()
    await expect(page.get_by_text("with 2 subtasks")).to_be_visible()
    await check_a11y(page, "trash")
    await shot(page, "trash")
    await page.get_by_role("button", name=re.compile("Restore")).click()
    await expect(page.get_by_role("heading", name="Water the garden", level=1)).to_be_visible()
    await expect(page.get_by_text("0 of 2 done")).to_be_visible()
