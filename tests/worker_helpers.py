"""Helpers for worker tests: real burst workers, real SMTP servers that refuse, rows in given states."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import asyncpg
from arq import Worker

from shared.config import Settings, SmtpConfig
from shared.db.database import Database
from launcher.devstack import free_port
from shared.mail.outbox import queue_email
from worker.settings import build_worker


ROOT = Path(__file__).resolve().parent.parent


def start_worker_process(stack: Any, settings: Settings, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """A real worker process (tests/worker_process.py) on ``settings``' Redis and storage, logging to ``log``."""
    from tests.conftest import TEST_SECRET

    full_env = {**os.environ, "TASKDECK_ENV": "test", "DATABASE_URL": stack.dsn, "REDIS_URL": settings.redis_url,
                "SECRET_KEY": TEST_SECRET, "SMTP_URL": stack.smtp.url, "PUBLIC_URL": settings.public_url,
                "EXPORT_STORAGE": settings.export_storage, "DB_POOL_MIN": "1", "EXPORT_BATCH_ROWS": "100", **env}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "tests" / "worker_process.py")], cwd=ROOT,
                                env=full_env, stdout=out, stderr=subprocess.STDOUT)


def job_ctx(settings: Settings, db: Database, **extra: Any) -> dict[str, Any]:
    """The ctx a worker would pass to a job, for calling job functions directly."""
    return {"settings": settings, "db": db, "job_try": 1, **extra}


async def run_burst(settings: Settings, **overrides: Any) -> Worker:
    """Run a worker until the queue is empty, then close it (pools, health-check key).

    Cron is off unless asked for: a run that straddles a minute would add a sweep_outbox job.
    """
    options: dict[str, Any] = {"burst": True, "poll_delay": 0.05, "cron_jobs": None, **overrides}
    worker = build_worker(settings, **options)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker


async def queue_mail(db: Database, *, to: str = "ada@example.com", template: str = "verify_email",
                     context: dict[str, Any] | None = None) -> int:
    """Write an outbox row through the real shared.outbox.queue_email, as the web tier does."""
    if context is None:
        context = {"name": "Ada", "link": "http://taskdeck.test/verify-email?token=tok-123", "token": "tok-123"}
    async with db.write.acquire() as conn, conn.transaction():
        outbox_id = await queue_email(conn, to=to, template=template, context=context)
    assert outbox_id is not None
    return outbox_id


async def outbox_row(conn: asyncpg.Connection, outbox_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM email_outbox WHERE id = $1", outbox_id)
    assert row is not None
    return row


def closed_smtp() -> SmtpConfig:
    """An SMTP address nothing listens on: connection refused."""
    return SmtpConfig(host="127.0.0.1", port=free_port())


class _RefuseRecipients:
    def __init__(self, reply: str) -> None:
        self.reply = reply

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802 - aiosmtpd hook
                          rcpt_options: list[str]) -> str:
        return self.reply


@contextmanager
def refusing_smtp(reply: str = "550 5.1.1 No such user here") -> Iterator[SmtpConfig]:
    """A real SMTP server that answers every RCPT TO with ``reply``."""
    from aiosmtpd.controller import Controller

    controller = Controller(_RefuseRecipients(reply), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpConfig(host="127.0.0.1", port=controller.port)
    finally:
        controller.stop()
