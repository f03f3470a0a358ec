"""In Chromium, what a task-manager user expects: "Forgot password?", overdue marks, a done checkbox with finished
tasks apart, dark mode, keyboard shortcuts, the new-task form first, reports in the layout, the favicon, expiry
shown as a file finishes, a confirmation before deactivating someone, and a plain message for an empty title.

Every page goes through axe in the light and the dark scheme (``check_a11y``); screenshots: ``var/screenshots``.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from tests.pages.browser_helpers import check_a11y, mail_link, shot
from playwright.async_api import expect
from tests.pages.test_browser_pages import make_user, sign_in

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def add_task(live, owner_id: int, title: str, status: str = "todo", due_days: float | None = None) -> int:
    due = datetime.now(timezone.utc) + timedelta(days=due_days) if due_days is not None else None
    rows = await live.sql("INSERT INTO tasks (owner_id, title, status, due_at, completed_at) VALUES "
                          "($1, $2, $3::task_status, $4, CASE WHEN $3::task_status = 'done' THEN now() END) "
                          "RETURNING id", owner_id, title, status, due)
    return int(rows[0]["id"])


async def status_of(live, task_id: int) -> str:
    return str((await live.sql("SELECT status::text AS s FROM tasks WHERE id = $1", task_id))[0]["s"])


async def test_forgot_password_from_the_login_page(new_page, live, stack):
    await make_user(live, "forgetful@example.com")
    page = await new_page()
    await page.goto("/login")
    await page.get_by_label("Email", exact=True).fill("forgetful@example.com")
    await page.get_by_role("link", name="Forgot password?").click()
    await expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    await page.get_by_role("button", name="Send me a reset link").click()  # nothing typed on this page yet
    await expect(page.locator("#email-error")).to_be_visible()
    await check_a11y(page, "forgot-password-error")
    await page.get_by_label("Email", exact=True).fill("forgetful@example.com")
    await page.get_by_role("button", name="Send me a reset link").click()
    await expect(page.get_by_role("status")).to_contain_text("a link to choose a new password is on its way")
    await expect(page.get_by_label("Email", exact=True)).to_have_value("forgetful@example.com")  # back on login
    link = await mail_link(stack.smtp, "forgetful@example.com", "/reset-password")
    await page.goto(link)
    await page.get_by_label("New password", exact=True).fill("a fresh new password")
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_role("status")).to_contain_text("Your password has been changed")
    await sign_in(page, "forgetful@example.com", "a fresh new password")
    # The reset page without a token (an old bookmark) is the request form, not a dead end.
    fresh = await new_page()
    await fresh.goto("/reset-password")
    await expect(fresh.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    await check_a11y(fresh, "forgot-password")


async def test_done_checkbox_overdue_mark_and_finished_tasks_apart(new_page, live):
    user_id = await make_user(live, "doer@example.com")
    late = await add_task(live, user_id, "Pay the rent", due_days=-2)
    soon = await add_task(live, user_id, "Book the train", due_days=3)
    await add_task(live, user_id, "Old chore", status="done")
    page = await new_page()
    await sign_in(page, "doer@example.com")
    open_list, done_list = page.locator(".js-open-list"), page.locator(".js-done-list")
    late_item = page.locator(f"#task-{late}")
    await expect(late_item.get_by_text("Overdue")).to_be_visible()  # a word, not a colour alone
    await expect(page.locator(f"#task-{soon}").get_by_text("Overdue")).to_have_count(0)
    await expect(done_list).to_contain_text("Old chore")
    await expect(open_list).not_to_contain_text("Old chore")
    # The new-task form comes before the list.
    form_box = await page.locator("#new-task").bounding_box()
    list_box = await open_list.bounding_box()
    assert form_box["y"] + form_box["height"] <= list_box["y"]
    await check_a11y(page, "tasks-overdue-and-done")

    box = page.get_by_role("checkbox", name="Done: Pay the rent")
    await expect(box).to_have_attribute("aria-checked", "false")
    await page.evaluate("window.__sameDocument = true")
    await box.click()
    await expect(done_list.locator(f"#task-{late}")).to_be_visible()  # moved to "Done", no reload
    await expect(box).to_have_attribute("aria-checked", "true")
    await expect(late_item.get_by_text("Overdue")).to_be_hidden()
    await expect(page.locator("#live")).to_contain_text("“Pay the rent” is done.")
    assert await page.evaluate("window.__sameDocument") is True
    assert await status_of(live, late) == "done"
    await shot(page, "tasks-checked-done")
    await box.click()  # and back
    await expect(open_list.locator(f"#task-{late}")).to_be_visible()
    await expect(late_item.get_by_text("Overdue")).to_be_visible()
    assert await status_of(live, late) == "todo"
    # The status shows once per task: one select, no badge beside it.
    await expect(late_item.locator("select[name=status]")).to_have_count(1)
    await expect(late_item.locator(".js-status-badge")).to_have_count(0)


async def test_done_checkbox_without_javascript(new_page, live):
    user_id = await make_user(live, "plain@example.com")
    task_id = await add_task(live, user_id, "Water the plants", due_days=-1)
    page = await new_page(java_script_enabled=False)
    await sign_in(page, "plain@example.com")
    await page.get_by_role("checkbox", name="Done: Water the plants").click()  # a form's submit button
    await expect(page.get_by_role("status")).to_contain_text("“Water the plants” is now done.")
    await expect(page.locator(".js-done-list").locator(f"#task-{task_id}")).to_be_visible()
    assert await status_of(live, task_id) == "done"
    await shot(page, "nojs-tasks-done")
    await page.get_by_role("checkbox", name="Done: Water the plants").click()
    await expect(page.locator(".js-open-list").locator(f"#task-{task_id}")).to_be_visible()
    assert await status_of(live, task_id) == "todo"


async def test_dark_colour_scheme(new_page, live):
    user_id = await make_user(live, "night@example.com", role="admin")
    await add_task(live, user_id, "Late at night", due_days=-1)
    await add_task(live, user_id, "Finished at dawn", status="done")
    page = await new_page(color_scheme="dark")
    await page.goto("/login")
    light_text = "rgb(29, 36, 48)"
    body = page.locator("body")
    assert await body.evaluate("b => getComputedStyle(b).color") != light_text
    background = await body.evaluate("b => getComputedStyle(b).backgroundColor")
    assert sum(map(int, re.findall(r"\d+", background)[:3])) < 3 * 60, background  # a dark page
    await sign_in(page, "night@example.com")
    for path, name in (("/tasks", "tasks"), ("/exports", "exports"), ("/admin", "admin"), ("/account", "account")):
        await page.goto(path)
        await check_a11y(page, f"scheme-{name}")  # dark first (the context's), then light
    await page.emulate_media(color_scheme="light")
    await page.goto("/tasks")
    assert await body.evaluate("b => getComputedStyle(b).color") == light_text


async def test_keyboard_shortcuts(new_page, live):
    await make_user(live, "keys2@example.com")
    page = await new_page()
    await sign_in(page, "keys2@example.com")
    await page.locator("h1").click()  # focus on the page, not in a field
    await page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(dialog).to_be_visible()
    for key, what in (("n", "New task"), ("/", "Search"), ("?", "Show this list")):
        await expect(dialog.locator("dt", has_text=key).first).to_be_visible()
        await expect(dialog).to_contain_text(what)
    await check_a11y(page, "shortcuts")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()

    await page.keyboard.press("n")
    title = page.get_by_label("Title", exact=True)
    await expect(title).to_be_focused()
    await page.keyboard.type("n/? are letters here")  # typing in a field: no shortcut fires
    await expect(title).to_have_value("n/? are letters here")
    await expect(dialog).to_be_hidden()
    await page.keyboard.press("Escape")
    await page.locator("h1").click()
    await page.keyboard.press("/")
    search = page.get_by_label("Search title and description", exact=True)
    await expect(search).to_be_focused()  # the filter panel opened for it
    await page.keyboard.type("?")
    await expect(search).to_have_value("?")
    await expect(dialog).to_be_hidden()
    # From another page, "n" goes to the task list's form.
    await page.goto("/exports")
    await page.locator("h1").click()
    await page.keyboard.press("n")
    await expect(page).to_have_url(re.compile(r"/tasks#new-task$"))
    await expect(page.get_by_label("Title", exact=True)).to_be_focused()
    # The footer button opens the same list, for those who do not know the key.
    await page.get_by_role("button", name="Keyboard shortcuts").click()
    await expect(dialog).to_be_visible()
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_be_hidden()


async def test_empty_title_says_a_title_is_needed(new_page, live):
    await make_user(live, "blank@example.com")
    page = await new_page()
    await sign_in(page, "blank@example.com")
    await page.get_by_role("button", name="Create task").click()
    await expect(page.locator("#title-error")).to_have_text("A title is needed.")
    await check_a11y(page, "tasks-title-needed")


async def test_reports_in_the_layout_and_the_favicon(new_page, live):
    await make_user(live, "boss@example.com", role="admin")
    page = await new_page()
    await sign_in(page, "boss@example.com")
    for path, back, name in (("/reports/summary", "← Exports and reports", "report-summary-layout"),
                             ("/reports/admin-activity", "← Users", "report-admin-activity-layout")):
        await page.goto(path)
        await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
        link = page.get_by_role("link", name=back)
        await expect(link).to_be_visible()
        colour = await link.evaluate("a => getComputedStyle(a).color")
        assert colour != "rgb(0, 0, 238)", colour  # the app's link colour, not the browser's default blue
        await check_a11y(page, name)
    response = await page.request.get("/favicon.ico")
    assert response.ok and (await response.body())[:4] == b"\x00\x00\x01\x00"
    await page.goto("/favicon.ico")  # what the browser shows for it
    await shot(page, "favicon")


async def test_export_expiry_appears_when_the_file_is_ready(new_page, live):
    user_id = await make_user(live, "files@example.com")
    await add_task(live, user_id, "Something to export")
    page = await new_page()
    await sign_in(page, "files@example.com")
    await page.goto("/exports")
    await page.get_by_role("button", name="Request export").click()
    job = page.locator("li.job").first
    await page.evaluate("window.__sameDocument = true")
    await expect(job.locator(".js-job-status")).to_have_text("succeeded")  # app.js polled it
    detail = job.locator(".js-job-detail")
    await expect(detail).to_contain_text("until")
    expires = (await live.sql("SELECT expires_at FROM jobs"))[0]["expires_at"]
    stamp = expires.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    await expect(detail.locator("time")).to_have_attribute("datetime", re.compile("^" + re.escape(stamp[:-1])))
    assert await page.evaluate("window.__sameDocument") is True  # no reload
    await check_a11y(page, "exports-expiry")


async def test_admin_deactivation_asks_first_and_not_for_oneself(new_page, live):
    await make_user(live, "chief@example.com", role="admin")
    target = await make_user(live, "leaving@example.com")
    for javascript in (True, False):
        await live.sql("UPDATE users SET is_active = true WHERE id = $1", target)
        page = await new_page(java_script_enabled=javascript)
        await sign_in(page, "chief@example.com")
        await page.goto("/admin")
        row = page.locator(f"#user-{target}")
        confirm = row.get_by_role("button", name="Yes, deactivate leaving@example.com")
        await expect(confirm).to_be_hidden()  # one click does not deactivate
        own = page.locator("tr", has_text="chief@example.com")
        await expect(own.get_by_text("Deactivate")).to_have_count(0)
        await expect(own).to_contain_text("(you)")
        await row.get_by_text("Deactivate…").click()
        await expect(confirm).to_be_visible()
        assert (await live.sql("SELECT is_active FROM users WHERE id = $1", target))[0]["is_active"] is True
        if javascript:
            await check_a11y(page, "admin-confirm")
        await confirm.click()
        await expect(page.get_by_role("status")).to_contain_text("leaving@example.com is now user, deactivated")
        assert (await live.sql("SELECT is_active FROM users WHERE id = $1", target))[0]["is_active"] is False
