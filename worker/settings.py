"""arq worker: what it runs, and how `taskdeck worker` and the tests start it.

Nothing here reads settings or opens connections at import: the Settings object arrives in
``ctx["settings"]`` and the database pools are made in ``startup``.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings
from typing import Any

from arq import Worker, cron, func
from arq.connections import RedisSettings
from arq.constants import default_queue_name, health_check_key_suffix
from redis.asyncio import Redis

from shared import jobs, metrics, observe
from shared.config import Settings
from shared.db import Database
from shared.logs import configure_logging
from worker.jobs import accounts as account_jobs
from worker.metrics_server import serve_metrics
from worker.jobs import cleanup, housekeeping, reminders
from worker.jobs import exports as export_jobs
from worker.jobs import reports as report_jobs
from worker.jobs.email import MAX_ATTEMPTS, send_email
from worker.jobs.outbox import RETENTION_JOB_NAME, SWEEP_JOB_NAME, outbox_retention, sweep_outbox

logger = logging.getLogger("app.worker")

# Written by every live worker each HEALTH_CHECK_INTERVAL with a TTL one second longer, deleted on a
# clean shutdown: its presence is what the web tier's /ready reports as "worker: up".
HEALTH_CHECK_KEY = default_queue_name + health_check_key_suffix  # "arq:queue:health-check"
HEALTH_CHECK_INTERVAL = 10
# Shorter than worker.jobs.email.LEASE, so a job that is still running can never lose its claim.
EMAIL_JOB_TIMEOUT = 120


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["db"] = await Database.connect(settings)
    ctx["sampler"] = observe.start(ctx["db"], ctx["redis"], worker=True)
    if settings.worker_metrics_port:
        ctx["metrics_runner"] = await serve_metrics(settings.worker_metrics_port)
    logger.info("worker started (environment=%s, smtp=%s)", settings.environment,
                "configured" if settings.smtp else "NOT configured: mails stay queued")


async def shutdown(ctx: dict[str, Any]) -> None:
    sampler, runner = ctx.pop("sampler", None), ctx.pop("metrics_runner", None)
    if sampler is not None:
        await sampler.stop()
    if runner is not None:
        await runner.cleanup()
    metrics.process_exited(os.getpid())
    db = ctx.pop("db", None)
    if db is not None:  # startup may have failed before the pools existed
        await db.close()


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
        # Hardening (issue 13): no live token stays at rest; finished mails are purged after retention.
        cron(outbox_retention, name=RETENTION_JOB_NAME, minute=set(range(0, 60, 5)), second=40, unique=True,
             timeout=300),
        *housekeeping.CRON_JOBS,
        *cleanup.CRON_JOBS,
        *reminders.CRON_JOBS,
    ]
    on_startup = startup
    on_shutdown = shutdown
    job_timeout = 300
    max_tries = 5
    max_jobs = 10
    keep_result = 3600
    health_check_interval = HEALTH_CHECK_INTERVAL


class _Worker(Worker):
    async def close(self) -> None:
        # arq 0.28 closes its pool with redis-py 5's deprecated close(); under the tests'
        # filterwarnings=error that warning would abort the close and leak the pool.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Call to deprecated close", category=DeprecationWarning)
            await super().close()


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    """A worker for ``settings``; ``overrides`` are arq Worker arguments (tests: ``burst=True``).

    Call it inside a running event loop, then ``await worker.async_run()`` and ``await worker.close()``.
    Signal handling is off by default (a test process owns its signals); the CLI turns it on.
    """
    options: dict[str, Any] = {
        name: value for name, value in vars(WorkerSettings).items() if not name.startswith("_")
    }
    options.update(redis_settings=RedisSettings.from_dsn(settings.redis_url), ctx={"settings": settings},
                   handle_signals=False)
    options.update(overrides)
    return _Worker(**options)


def run_worker_process(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM (the `taskdeck worker` command)."""
    # Before the worker exists, so arq's own start-up lines carry our format and request ids too.
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(_run(settings))


async def _run(settings: Settings) -> None:
    worker = build_worker(settings, handle_signals=True)
    try:
        # On SIGTERM arq cancels its main task (running jobs are re-run later by arq): a normal stop.
        with contextlib.suppress(asyncio.CancelledError):
            await worker.async_run()
    finally:
        await worker.close()


async def worker_heartbeat(redis: Redis) -> str | None:
    """The latest heartbeat of any live worker (arq's health-check string), or None when none is running."""
    value = await redis.get(HEALTH_CHECK_KEY)
    return value.decode() if isinstance(value, bytes) else value
