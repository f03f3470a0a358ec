"""A new user's whole first visit, in Chromium: register → verify → sign in → tasks → export → report → sign out."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tests.pages.browser_helpers import PASSWORD, check_a11y, mail_link
from playwright.async_api import expect

EMAIL = "ada@example.com"
pytestmark = pytest.mark.asyncio(loop_scope="session")


async def seed_tasks(live, owner_id: int, count: int) -> None:
    await live.sql("INSERT INTO tasks (owner_id, title, priority, created_at) "
             "SELECT $1, 'Seeded task ' || lpad(n::text, 2, '0'), 'low', now() - n * interval '1 hour' "
             "FROM generate_series(1, $2) AS n", owner_id, count)


async def register_and_verify(page, live, stack) -> int:
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login$"))
    await check_a11y(page, "login")
    await page.get_by_role("link", name="Create an account").click()
    await page.get_by_label("Email", exact=True).fill(EMAIL)
    await page.get_by_label("Name (optional)", exact=True).fill("Ada Lovelace")
    await page.get_by_label("Password", exact=True).fill("short")
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#password-error")).to_contain_text("between 8 and 128")  # next to the field
    await expect(page.get_by_label("Email", exact=True)).to_have_value(EMAIL)  # what was typed is kept
    await check_a11y(page, "register-error")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("status")).to_contain_text("We sent a confirmation link")
    await expect(page.get_by_label("Email", exact=True)).to_have_value(EMAIL)

    link = await mail_link(stack.smtp, EMAIL, "/verify-email")
    assert link.startswith(live.url)
    await page.goto(link)
    await check_a11y(page, "verify-email")
    await page.get_by_role("button", name="Confirm my email address").click()
    await expect(page.get_by_role("status")).to_contain_text("confirmed")
    return int((await live.sql("SELECT id FROM users WHERE email = $1", EMAIL))[0]["id"])


async def sign_in(page, email: str = EMAIL, password: str = PASSWORD) -> None:
    await page.goto("/login")
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_new_user_journey(new_page, live, stack):
    page = await new_page(timezone_id="Europe/Berlin")
    user_id = await register_and_verify(page, live, stack)

    await page.goto("/tasks/1")  # a page that needs a session: sign in first, then land there
    await expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)tasks(%2F|/)1$"))
    await page.get_by_label("Email", exact=True).fill(EMAIL)
    await page.get_by_label("Password", exact=True).fill("wrong password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Invalid email or password")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Not Found")).to_be_visible()  # /tasks/1 does not exist yet
    await check_a11y(page, "error-404")

    await page.goto("/tasks")
    await expect(page.get_by_text("No tasks yet — create one.")).to_be_visible()
    await check_a11y(page, "tasks-empty")

    # Create: a validation error first, then a real task with a due date in the browser's zone.
    await page.get_by_role("button", name="Create task").click()
    await expect(page.locator("#title-error")).to_be_visible()
    await page.get_by_label("Title", exact=True).fill("Buy milk")
    await page.get_by_text("More: tags, status, description").click()
    await page.get_by_label("Tags", exact=True).fill("home, errands")
    await page.get_by_label("Priority", exact=True).select_option("high")
    await page.get_by_label("Due", exact=True).fill("2030-05-01T09:30")
    await page.get_by_label("Description", exact=True).fill("Two litres, semi-skimmed.")
    await page.get_by_role("button", name="Create task").click()
    await expect(page.get_by_role("status")).to_contain_text("Task “Buy milk” created.")
    row = (await live.sql("SELECT id, due_at, tags FROM tasks WHERE title = 'Buy milk'"))[0]
    assert row["due_at"] == datetime(2030, 5, 1, 7, 30, tzinfo=timezone.utc)  # 09:30 in Berlin (CEST)
    assert row["tags"] == ["home", "errands"]
    milk = row["id"]
    await expect(page.locator(f"#task-{milk} time")).to_contain_text("9:30")

    # Edit on the task page.
    await page.get_by_role("link", name="Buy milk").click()
    await check_a11y(page, "task-detail")
    await page.get_by_label("Title", exact=True).fill("Buy oat milk")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status")).to_contain_text("Task saved.")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Buy oat milk")

    # Complete it inline: JavaScript sends a PATCH, no reload.
    await seed_tasks(live, user_id, 24)
    await page.goto("/tasks")
    await page.evaluate("window.__sameDocument = true")
    await page.get_by_label("Status of Buy oat milk", exact=True).select_option("done")
    await expect(page.locator(f"#task-{milk}")).to_have_class(re.compile("status-done"))
    await expect(page.locator("#live")).to_contain_text("is now done")
    assert await page.evaluate("window.__sameDocument") is True  # the page was not reloaded
    assert (await live.sql("SELECT status FROM tasks WHERE id = $1", milk))[0]["status"] == "done"
    await check_a11y(page, "tasks-list")

    # Page through: 24 open tasks, 20 per page (the finished one is listed apart, on the first page only).
    await expect(page.locator(f".js-done-list #task-{milk}")).to_be_visible()  # moved there without a reload
    await page.reload()
    await expect(page.locator(".js-open-list li.task")).to_have_count(20)
    await expect(page.locator(".js-done-list li.task")).to_have_count(1)
    await page.get_by_role("link", name="Next page").click()
    await expect(page.locator("li.task")).to_have_count(4)
    await expect(page.get_by_role("link", name="Next page")).to_have_count(0)
    await check_a11y(page, "tasks-page-2")

    # Filter and search.
    await page.goto("/tasks")
    await page.get_by_text("Filter and sort").click()
    await page.locator("#main form[method=get] input[name=status][value=done]").check()
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("li.task")).to_have_count(1)
    await expect(page.locator("li.task")).to_contain_text("Buy oat milk")
    await check_a11y(page, "tasks-filtered")
    await page.locator(f"#task-{milk}").get_by_role("link", name=re.compile("#errands")).click()  # tag filter
    await expect(page.locator("li.task")).to_have_count(1)
    await expect(page.locator("#f-tag")).to_have_value("errands")
    await page.goto("/tasks?q=seeded+07")
    await expect(page.locator("li.task")).to_have_count(1)
    await page.goto("/tasks?q=nothing-like-this")
    await expect(page.get_by_text("No tasks match these filters.")).to_be_visible()
    await page.goto("/tasks?sort=-priority&status=todo&status=done")
    await expect(page.locator("li.task").first).to_contain_text("Buy oat milk")  # high beats the seeded lows
    await page.goto("/tasks?due_from=not-a-date")
    await expect(page.locator("#f-due_from-error")).to_be_visible()

    # Delete with confirmation.
    first_seeded = (await live.sql("SELECT id FROM tasks WHERE title = 'Seeded task 01'"))[0]["id"]
    await page.goto(f"/tasks/{first_seeded}")
    await page.get_by_role("link", name="Delete…").click()
    await check_a11y(page, "task-delete")
    await page.get_by_role("button", name="Delete task").click()
    await expect(page.get_by_role("status")).to_contain_text("Task deleted.")
    assert not await live.sql("SELECT 1 FROM tasks WHERE id = $1", first_seeded)

    # CSV export of the 'low' tasks: progress in place, then the download.
    await page.goto("/exports")
    await expect(page.get_by_text("No exports or reports yet.")).to_be_visible()
    await check_a11y(page, "exports-empty")
    await page.locator("#e-priority, input[name=priority][value=low]").first.check()
    await page.get_by_role("button", name="Request export").click()
    await expect(page.get_by_role("status")).to_contain_text("CSV export is queued")
    job = page.locator("li.job").first
    download_link = job.get_by_role("link", name=re.compile("Download"))
    await expect(download_link).to_be_visible()  # app.js polled the job until it succeeded
    await expect(job.locator(".js-job-status")).to_have_text("succeeded")
    async with page.expect_download() as info:
        await download_link.click()
    path = await (await info.value).path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert len(rows) == 23 and all(r["priority"] == "low" for r in rows)
    assert {r["title"] for r in rows} == {f"Seeded task {n:02d}" for n in range(2, 25)}

    # The "ready" mail links to the page that offers the download.
    link = await mail_link(stack.smtp, EMAIL, "/exports#job-")
    await page.goto(link)
    await expect(page.locator(link[link.index("#"):]).get_by_role("link", name=re.compile("Download"))).to_be_visible()

    # A summary report, then its web page.
    period_from = (datetime.now(timezone.utc) - timedelta(days=7)).strftime("%Y-%m-%d")
    await page.get_by_label("From", exact=True).fill(period_from)
    await page.get_by_role("button", name="Request report").click()
    report = page.locator("li.job").first
    await expect(report).to_contain_text("Summary report")
    await expect(report.get_by_role("link", name=re.compile("Download"))).to_be_visible()
    await check_a11y(page, "exports-done")
    await report.get_by_role("link", name=re.compile("View as a web page")).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("ummary")
    await expect(page.locator(".kpi").first).to_contain_text("24")  # created in the period (25, one deleted)
    await check_a11y(page, "report-summary")

    # Sign out: the session ends, the pages ask for a login again.
    await page.goto("/tasks")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("You are signed out.")
    await page.goto("/tasks")
    await expect(page).to_have_url(re.compile(r"/login"))
    assert (await live.sql("SELECT count(*) AS n FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
                           user_id))[0]["n"] == 0
