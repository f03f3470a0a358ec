"""arq worker: what it runs, and how `taskdeck worker` and the tests start it.

Nothing here reads settings or opens connections at import: the Settings object arrives in
``ctx["settings"]`` and the database pools are made in ``startup``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

from arq import Worker, cron, func
from redis.asyncio import Redis

from shared import jobs, redis_client
from shared.db import failover
from shared.observability import heartbeats, metrics, samplers
from shared.config import Settings
from shared.db.database import Database
from shared.observability.logs import configure_logging
from shared.storage import storage_from_settings
from worker.jobs import accounts as account_jobs
from worker.metrics_server import serve_metrics
from worker.jobs import cleanup, housekeeping, reminders, trash, webhooks
from worker.jobs import exports as export_jobs
from worker.jobs import reports as report_jobs
from worker.jobs.email import MAX_ATTEMPTS, send_email
from worker.jobs.outbox import RETENTION_JOB_NAME, SWEEP_JOB_NAME, outbox_retention, sweep_outbox
from worker.resilient import ResilientWorker

logger = logging.getLogger("app.worker")

# How long a stopping worker (SIGTERM) lets running jobs finish before handing them back (runner
# releases the claim, arq re-queues the entry): inside Kubernetes' default 30 s grace period.
SHUTDOWN_GRACE = 20
# Shorter than worker.jobs.email.LEASE, so a job that is still running can never lose its claim.
EMAIL_JOB_TIMEOUT = 120


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    store = storage_from_settings(settings)
    try:
        await store.check()  # a missing bucket or refused credentials: a clear StorageError now, not failed jobs later
    except BaseException:
        await store.close()
        raise
    ctx["storage"] = store
    ctx["db"] = await Database.connect(settings)
    ctx["sampler"] = samplers.start(ctx["db"], ctx["redis"], worker=True)
    ctx["primary_watch"] = samplers.Periodic(1.0, failover.PrimaryWatch(ctx["db"].write).check).start()
    try:  # the reconciler, at start: whatever the queue lost while no worker ran is enqueued again now
        await cleanup.sweep_jobs(ctx)
    except Exception:  # noqa: BLE001 - the schedule runs it again within seconds
        logger.warning("reconciling jobs at start failed; the next sweep retries", exc_info=True)
    if settings.worker_metrics_port:
        ctx["metrics_runner"] = await serve_metrics(settings.worker_metrics_port, token=settings.metrics_token)
    logger.info("worker started (environment=%s, smtp=%s)", settings.environment,
                "configured" if settings.smtp else "NOT configured: mails stay queued")


async def shutdown(ctx: dict[str, Any]) -> None:
    sampler, runner = ctx.pop("sampler", None), ctx.pop("metrics_runner", None)
    for periodic in (sampler, ctx.pop("primary_watch", None)):
        if periodic is not None:
            await periodic.stop()
    if runner is not None:
        await runner.cleanup()
    metrics.process_exited(os.getpid())
    db = ctx.pop("db", None)
    if db is not None:  # startup may have failed before the pools existed
        await db.close()
    store = ctx.pop("storage", None)
    if store is not None:
        await store.close()


class WorkerSettings:
    """Static arq configuration; the per-deployment parts (Redis, ctx) are added by build_worker()."""

    functions = [
        # Retries are decided by the outbox row's `attempts` (BACKOFF / MAX_ATTEMPTS), not by arq's counter,
        # so arq's limit only needs to be out of the way.
        func(send_email, name=jobs.SEND_EMAIL, timeout=EMAIL_JOB_TIMEOUT, max_tries=MAX_ATTEMPTS + 1),
        *export_jobs.FUNCTIONS,
        *report_jobs.FUNCTIONS,
        *account_jobs.FUNCTIONS,
    ]
    cron_jobs = [
        # Every minute at :00; unique=True: one run per tick however many workers there are.
        cron(sweep_outbox, name=SWEEP_JOB_NAME, second=0, unique=True, timeout=60),
        # No live token stays at rest; finished mails are purged after retention.
        cron(outbox_retention, name=RETENTION_JOB_NAME, minute=set(range(0, 60, 5)), second=40, unique=True,
             timeout=300),
        *housekeeping.CRON_JOBS,
        *cleanup.CRON_JOBS,
        *reminders.CRON_JOBS,
        *trash.CRON_JOBS,
        *webhooks.CRON_JOBS,
    ]
    on_startup = startup
    on_shutdown = shutdown
    job_timeout = 300
    max_tries = 5
    max_jobs = 10
    keep_result = 3600
    health_check_interval = heartbeats.HEARTBEAT_INTERVAL
    job_completion_wait = SHUTDOWN_GRACE


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """A worker for ``settings``; ``overrides`` are arq Worker arguments (tests: ``burst=True``).

    Call it inside a running event loop, then ``await worker.async_run()`` and ``await worker.close()``.
    Signal handling is off by default (a test process owns its signals); the CLI turns it on.
    """
    options: dict[str, Any] = {
        name: value for name, value in vars(WorkerSettings).items() if not name.startswith("_")
    }
    options.update(redis_settings=redis_client.arq_settings(settings), ctx={"settings": settings},
                   handle_signals=False)
    options.update(overrides)
    return ResilientWorker(**options)


def run_worker_process(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM (the `taskdeck worker` command)."""
    # Before the worker exists, so arq's own start-up lines carry our format and request ids too.
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    worker = build_worker(settings, handle_signals=True)
    try:
        # SIGTERM: stop picking jobs, let running ones finish for SHUTDOWN_GRACE, then cancel the rest (the
        # runner hands each back: status 'queued', and arq re-queues its entry), cancel the main task: exit 0.
        with contextlib.suppress(asyncio.CancelledError):
            await worker.async_run()
    finally:
        await worker.close()


async def worker_heartbeat(redis: Redis) -> dict[str, str]:
    """Each live worker's id and latest health line; empty when none is running."""
    return await heartbeats.live_workers(redis)
