"""Export jobs: every task matching the filters, as CSV (streamed) or as a PDF table.

The rows come from a server-side cursor inside one REPEATABLE READ, read-only transaction (a replica
is fine): the count used for progress and the rows agree, and memory stays constant for CSV however
many tasks there are. PDF needs all rows for layout, so it is capped at MAX_PDF_ROWS.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, BinaryIO, Sequence

import asyncpg
from arq import func

from shared import exports
from shared.documents.pdf import generated_line, render_task_table
from shared.storage import Storage
from shared.task_export import csv_header, csv_lines, export_queries, params_to_filters
from worker.jobs import runner
from worker.jobs.runner import ARQ_MAX_TRIES, JOB_TIMEOUT, JobFailed, JobRun, Output

logger = logging.getLogger("app.worker.exports")

BATCH_ROWS = 5000  # rows per cursor round trip: large enough to amortise it, small enough for constant memory
PROGRESS_EVERY = 5000  # rows between progress writes (one UPDATE each)
MAX_PDF_ROWS = 20_000  # ~10 s of rendering; larger exports belong in CSV
PDF_FETCH_SHARE = 0.2  # of the progress bar, for reading rows before the PDF layout starts


async def run_export(ctx: dict[str, Any], job_id: int) -> str:
    """arq entry point: run export job ``job_id`` (a no-op if it is finished or running elsewhere)."""
    return await runner.execute(ctx, job_id, export_tasks)


async def export_tasks(ctx: dict[str, Any], run: JobRun) -> Output:
    job = run.job
    filters, sort = params_to_filters(job["params"])
    select_sql, count_sql, args = export_queries(job["owner_id"], filters, sort, csv=job["format"] == "csv")
    store, key = runner.storage(ctx), exports.storage_key(job)
    # A killed earlier attempt may have left a half-written temp file: this job has exactly one file.
    await store.discard_partials(f"jobs/{job['id']}/")

    async def read(conn: asyncpg.Connection) -> Output | list[tuple[Any, ...]]:
        # Safe to run twice (a replica that fails midway, then the primary): the file is rewritten whole.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            total = await conn.fetchval(count_sql, *args)
            cursor = await conn.cursor(select_sql, *args)
            if job["format"] == "csv":
                return await _write_csv(cursor, total, store, key, run)
            return await _read_for_pdf(cursor, total, run)

    # As the owner: a replica only if it already has every task they wrote before asking for the export.
    result = await ctx["db"].read_as(job["owner_id"], read)
    if isinstance(result, Output):
        return result
    rows = result
    subtitle = " · ".join([generated_line(), f"{len(rows):,} tasks", describe_filters(job["params"])])
    return await _write_pdf(rows, store, key, run, subtitle)


async def _write_csv(cursor: asyncpg.cursor.Cursor, total: int, store: Storage, key: str, run: JobRun) -> Output:
    written = reported = 0
    async with store.create(key) as out:
        await out.write(csv_header())
        while batch := await cursor.fetch(BATCH_ROWS):
            # Join + write in a thread: the loop keeps serving the heartbeat and other jobs.
            await asyncio.to_thread(_append_lines, out.file, batch)
            written += len(batch)
            if written - reported >= PROGRESS_EVERY:
                await run.report(written / total)
                reported = written
    assert out.size is not None
    return Output(key, written, out.size)


def _append_lines(file: BinaryIO, batch: Sequence[asyncpg.Record]) -> None:
    file.write(csv_lines(batch))


async def _read_for_pdf(cursor: asyncpg.cursor.Cursor, total: int, run: JobRun) -> list[tuple[Any, ...]]:
    if total > MAX_PDF_ROWS:
        raise JobFailed(f"A PDF export holds at most {MAX_PDF_ROWS:,} tasks and {total:,} match; "
                        "narrow the filters or export CSV.")
    rows: list[tuple[Any, ...]] = []
    while batch := await cursor.fetch(BATCH_ROWS):
        rows.extend(tuple(record) for record in batch)
        await run.report(PDF_FETCH_SHARE * len(rows) / total)
    return rows


async def _write_pdf(rows: list[tuple[Any, ...]], store: Storage, key: str, run: JobRun, subtitle: str) -> Output:
    def progress(fraction: float) -> None:
        # Called from the rendering thread; the heartbeat writes it out.
        run.progress = PDF_FETCH_SHARE + (1 - PDF_FETCH_SHARE) * fraction

    async with store.create(key) as out:
        await asyncio.to_thread(render_task_table, out.file, rows, title="Taskdeck tasks", subtitle=subtitle,
                                on_progress=progress)
    assert out.size is not None
    return Output(key, len(rows), out.size)


def describe_filters(params: dict[str, Any]) -> str:
    """The export's filters in one line for the PDF header, e.g. 'status: todo, done · tag: home'."""
    parts = []
    for name, value in params.items():
        if name == "sort":
            continue
        if isinstance(value, list):
            value = ", ".join(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        parts.append(f"{name.replace('_', ' ')}: {value}")
    return " · ".join(parts) if parts else "all tasks"


FUNCTIONS = [func(run_export, name=exports.RUN_EXPORT, timeout=JOB_TIMEOUT, max_tries=ARQ_MAX_TRIES)]
