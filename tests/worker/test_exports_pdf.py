"""PDF exports: the same rows as a readable table, header on every page, page numbers; the row cap."""
from __future__ import annotations

import io
import re
from typing import Any

import asyncpg
import pytest
from pypdf import PdfReader

from shared.documents.pdf import Wrapper, fonts
from worker.jobs.exports import MAX_PDF_ROWS

from tests.export_helpers import create_job, download, fetch_job, job_app, job_row, run_jobs, seed_many, seed_tasks


@pytest.fixture
async def client(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(job_app(settings))


async def export_pdf(client: Any, user: Any, settings: Any, **filters: Any) -> tuple[dict[str, Any], PdfReader]:
    job = await create_job(client, user, format="pdf", filters=filters)
    await run_jobs(settings)
    done = await fetch_job(client, user, job)
    assert done["status"] == "succeeded", done
    response = await client.get(done["download_url"], headers=user.headers)
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"].endswith(f'-{job["id"]}.pdf"')
    return done, PdfReader(io.BytesIO(await response.read()))


def page_texts(reader: PdfReader) -> list[str]:
    return [page.extract_text() for page in reader.pages]


async def test_pdf_has_title_rows_and_wrapped_text(client: Any, make_user: Any, db: asyncpg.Connection,
                                                   settings: Any) -> None:
    user = await make_user()
    long_title = "Prepare the quarterly report for the board meeting with every number checked twice"
    await seed_tasks(db, user.id, [
        {"title": long_title, "description": "Short note", "priority": "urgent", "tags": ["work"]},
        {"title": "Buy milk", "status": "in_progress", "tags": ["home", "errands"]},
        {"title": "Not this one", "status": "done"},
    ])

    done, reader = await export_pdf(client, user, settings, status=["todo", "in_progress"])

    assert done["row_count"] == 2
    text = page_texts(reader)[0]
    assert "Taskdeck tasks" in text and re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert "2 tasks" in text and "status: todo, in_progress" in text
    for expected in ("ID", "Title", "Status", "Priority", "Due (UTC)", "Tags", "Description", "Buy milk",
                     "in progress", "home, errands", "urgent", "Short note"):
        assert expected in text
    assert "Not this one" not in text
    # The long title wraps inside its column: its words are all there, but not on one line.
    assert long_title not in text and "Prepare the quarterly report" in text and "checked twice" in text
    assert reader.metadata is not None and reader.metadata.title == "Taskdeck tasks"


async def test_header_and_page_numbers_on_every_page(client: Any, make_user: Any, db: asyncpg.Connection,
                                                     settings: Any) -> None:
    user = await make_user()
    await seed_many(db, user.id, 600, description="A description long enough to wrap over two lines " * 2)

    done, reader = await export_pdf(client, user, settings, sort="created_at")

    texts = page_texts(reader)
    assert len(texts) > 3 and done["row_count"] == 600
    for number, text in enumerate(texts, start=1):
        assert "Description" in text and "Due (UTC)" in text, f"no header on page {number}"
        assert f"Page {number} of {len(texts)}" in text
    ids = [int(n) for text in texts for n in re.findall(r"^Task number (\d+)$", text, re.M)]
    assert sorted(ids) == list(range(1, 601))  # every row exactly once, none lost at a page break


async def test_no_matching_tasks_still_gives_a_pdf(client: Any, make_user: Any, settings: Any) -> None:
    user = await make_user()
    done, reader = await export_pdf(client, user, settings, tag="nothing")
    assert done["row_count"] == 0 and "No tasks match these filters." in page_texts(reader)[0]


async def test_too_many_rows_fails_with_a_readable_error(client: Any, make_user: Any, db: asyncpg.Connection,
                                                         settings: Any, stack: Any) -> None:
    user = await make_user()
    await seed_many(db, user.id, MAX_PDF_ROWS + 1)
    job = await create_job(client, user, format="pdf")
    await run_jobs(settings)

    done = await fetch_job(client, user, job)
    assert done["status"] == "failed" and done["download_url"] is None
    assert done["error"] == ("A PDF export holds at most 20,000 tasks and 20,001 match; narrow the filters "
                             "or export CSV.")
    assert done["finished_at"] is not None
    row = await job_row(db, job["id"])
    assert row["attempts"] == 1  # permanent: not retried
    response = await client.get(f"/api/v1/exports/{job['id']}/download", headers=user.headers)
    assert response.status == 409 and "failed" in (await response.json())["detail"]
    assert stack.smtp.messages() == []
    csv_job = await create_job(client, user, format="csv")  # the suggested way out works
    await run_jobs(settings)
    assert len((await download(client, user, await fetch_job(client, user, csv_job))).splitlines()) == 20_002


def test_wrapper_fits_columns_and_cuts_long_words() -> None:
    wrapper = Wrapper(fonts()[0], 8)
    text = "word " * 40 + "https://example.com/" + "x" * 200
    lines = wrapper.wrap(text, 120).split("\n")
    assert all(wrapper.width(line) <= 120 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert wrapper.wrap("a" * 500, 100, max_chars=10) == "aaaaaaaaaa…"
    assert wrapper.wrap("first\nsecond", 500) == "first\nsecond"
