"""Report jobs: gather the numbers (shared.reports), render the PDF with charts in a thread, store it."""
from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from arq import func

from shared import exports, reports
from shared.documents.report_pdf import render_report
from worker.jobs import runner
from worker.jobs.runner import ARQ_MAX_TRIES, JOB_TIMEOUT, JobRun, Output

GATHERED = 0.4  # of the progress bar, once the numbers are in


async def run_report(ctx: dict[str, Any], job_id: int) -> str:
    """arq entry point: run report job ``job_id`` (a no-op if it is finished or running elsewhere)."""
    return await runner.execute(ctx, job_id, build_report)


async def build_report(ctx: dict[str, Any], run: JobRun) -> Output:
    job = run.job
    start, end = reports.period_from_params(job["params"])

    async def gather(conn: asyncpg.Connection) -> Any:
        # One snapshot, so the charts and the tables agree.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if job["kind"] == "summary":
                return await reports.summary(conn, owner_id=job["owner_id"], start=start, end=end)
            return await reports.admin_activity(conn, start=start, end=end)

    # As the requester: a replica only if it has everything they wrote before asking.
    data = await ctx["db"].read_as(job["owner_id"], gather)
    await run.report(GATHERED)
    store, key = runner.storage(ctx), exports.storage_key(job)
    await store.discard_partials(f"jobs/{job['id']}/")
    async with store.create(key) as out:
        await asyncio.to_thread(render_report, out.file, data)
    assert out.size is not None
    return Output(key, None, out.size)


FUNCTIONS = [func(run_report, name=exports.RUN_REPORT, timeout=JOB_TIMEOUT, max_tries=ARQ_MAX_TRIES)]
