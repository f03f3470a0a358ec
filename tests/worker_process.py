"""A real worker process for the kill-mid-export test: `python tests/worker_process.py`, configured by the
same environment variables as `taskdeck worker` and the same WorkerSettings, with cron off.

EXPORT_BATCH_ROWS shrinks the cursor batches so an export of a few thousand rows takes long enough to be
killed in the middle; nothing else about the job changes. WORKER_CRON=1 turns the cron jobs (the job
sweeper) on; WORKER_SHUTDOWN_GRACE sets how long SIGTERM lets running jobs finish.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from shared.config import Settings  # noqa: E402
from shared.observability.logs import configure_logging  # noqa: E402
from worker.jobs import exports as export_jobs  # noqa: E402
from worker.settings import build_worker  # noqa: E402


async def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    batch = int(os.environ.get("EXPORT_BATCH_ROWS", export_jobs.BATCH_ROWS))
    export_jobs.BATCH_ROWS = export_jobs.PROGRESS_EVERY = batch
    options = {} if os.environ.get("WORKER_CRON") == "1" else {"cron_jobs": None}
    if "WORKER_SHUTDOWN_GRACE" in os.environ:
        options["job_completion_wait"] = int(os.environ["WORKER_SHUTDOWN_GRACE"])
    worker = build_worker(settings, poll_delay=0.05, handle_signals=True, **options)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await worker.async_run()
    finally:
        await worker.close()


if __name__ == "__main__":
    asyncio.run(main())
