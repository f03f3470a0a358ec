"""The email job and the outbox sweeper against real PostgreSQL, Redis, arq workers and SMTP servers."""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from arq import Retry
from arq.connections import ArqRedis

from shared import jobs
from shared.config import Settings
from shared.db.database import Database
from shared.observability.logs import RequestIdFilter, request_id_var
from shared.mail.outbox import dispatch
from worker.jobs.email import BACKOFF, MAX_ATTEMPTS, send_email
from worker.jobs.outbox import sweep_outbox
from worker.settings import build_worker, worker_heartbeat

from tests.worker_helpers import closed_smtp, job_ctx, outbox_row, queue_mail, refusing_smtp, run_burst

LINK = "http://taskdeck.test/verify-email?token=tok-123"


def bodies(message: Any) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text, html


async def test_queued_mail_is_sent_once_by_a_burst_worker(
        stack: Any, settings: Settings, db: asyncpg.Connection, database: Database, arq_redis: ArqRedis
) -> None:
    outbox_id = await queue_mail(database)
    await dispatch(arq_redis, [outbox_id])

    await run_burst(settings)

    [message] = stack.smtp.messages()
    assert message["To"] == "ada@example.com"
    assert message["From"] == settings.mail_from
    assert message["Subject"] == "Confirm your email address for Taskdeck"
    assert message["Message-ID"] == f"<outbox-{outbox_id}@taskdeck.test>"
    text, html = bodies(message)
    assert LINK in text and "Hi Ada," in text
    assert f'href="{LINK}"' in html
    row = await outbox_row(db, outbox_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)
    assert row["sent_at"] is not None


async def test_password_reset_renders_its_context_and_escapes_html(
        stack: Any, settings: Settings, database: Database
) -> None:
    link = "http://taskdeck.test/reset-password?token=r1&x=1"
    outbox_id = await queue_mail(database, template="password_reset", context={
        "name": "<b>Bob</b>", "link": link, "token": "r1", "expires_hours": 2})

    assert await send_email(job_ctx(settings, database), outbox_id) == "sent"

    [message] = stack.smtp.messages()
    assert message["Subject"] == "Reset your Taskdeck password"
    text, html = bodies(message)
    assert "Hi <b>Bob</b>," in text and link in text and "within 2 hours" in text
    assert "&lt;b&gt;Bob&lt;/b&gt;" in html and "<b>Bob</b>" not in html
    assert 'href="http://taskdeck.test/reset-password?token=r1&amp;x=1"' in html


async def test_duplicate_jobs_send_exactly_one_mail(
        stack: Any, settings: Settings, db: asyncpg.Connection, database: Database, arq_redis: ArqRedis
) -> None:
    outbox_id = await queue_mail(database)
    await dispatch(arq_redis, [outbox_id, outbox_id])  # same job id: arq keeps one
    await arq_redis.enqueue_job(jobs.SEND_EMAIL, outbox_id, _job_id=f"email:{outbox_id}:0")  # a distinct job

    worker = await run_burst(settings)

    assert worker.jobs_complete == 2
    assert len(stack.smtp.messages()) == 1
    assert (await outbox_row(db, outbox_id))["attempts"] == 1


async def test_calling_the_job_twice_sends_once(stack: Any, settings: Settings, database: Database) -> None:
    outbox_id = await queue_mail(database)
    ctx = job_ctx(settings, database)

    results = [await send_email(ctx, outbox_id), await send_email(ctx, outbox_id)]

    assert results == ["sent", "skipped"]
    assert len(stack.smtp.messages()) == 1


async def test_concurrent_jobs_send_once(stack: Any, settings: Settings, database: Database) -> None:
    outbox_id = await queue_mail(database)
    ctx = job_ctx(settings, database)

    results = await asyncio.gather(*(send_email(ctx, outbox_id) for _ in range(5)))

    assert sorted(results) == ["sent"] + ["skipped"] * 4
    assert len(stack.smtp.messages()) == 1


async def test_smtp_down_retries_with_backoff_then_sends_once(
        stack: Any, settings: Settings, db: asyncpg.Connection, database: Database
) -> None:
    outbox_id = await queue_mail(database)

    with pytest.raises(Retry) as retry:
        await send_email(job_ctx(settings.with_(smtp=closed_smtp()), database), outbox_id)

    assert retry.value.defer_score == BACKOFF[0] * 1000
    row = await outbox_row(db, outbox_id)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "SMTPConnectError" in row["last_error"]
    assert stack.smtp.messages() == []

    assert await send_email(job_ctx(settings, database), outbox_id) == "sent"
    assert await send_email(job_ctx(settings, database), outbox_id) == "skipped"
    assert len(stack.smtp.messages()) == 1
    row = await outbox_row(db, outbox_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


async def test_transient_failures_give_up_after_max_attempts(
        settings: Settings, db: asyncpg.Connection, database: Database
) -> None:
    outbox_id = await queue_mail(database)
    await db.execute("UPDATE email_outbox SET attempts = $2 WHERE id = $1", outbox_id, MAX_ATTEMPTS - 1)

    assert await send_email(job_ctx(settings.with_(smtp=closed_smtp()), database), outbox_id) == "failed"

    row = await outbox_row(db, outbox_id)
    assert (row["status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert row["last_error"].startswith(f"gave up after {MAX_ATTEMPTS} attempts")


@pytest.mark.parametrize(("reply", "transient"), [("550 5.1.1 No such user here", False),
                                                  ("450 4.2.1 Mailbox busy, try later", True)])
async def test_recipient_refusal_5xx_fails_4xx_retries(
        settings: Settings, db: asyncpg.Connection, database: Database, reply: str, transient: bool
) -> None:
    outbox_id = await queue_mail(database)

    with refusing_smtp(reply) as smtp:
        ctx = job_ctx(settings.with_(smtp=smtp), database)
        if transient:
            with pytest.raises(Retry):
                await send_email(ctx, outbox_id)
        else:
            assert await send_email(ctx, outbox_id) == "failed"

    row = await outbox_row(db, outbox_id)
    assert row["status"] == ("pending" if transient else "failed")
    assert reply.split()[0] in row["last_error"]


@pytest.mark.parametrize(("template", "context", "error"), [
    ("no_such_mail", {}, "TemplateNotFound"),
    ("../errors/404", {}, "TemplateNotFound"),
    ("verify_email", {"name": "Ada"}, "UndefinedError"),  # no link: never send "open this link: "
])
async def test_bad_template_or_context_fails_permanently(
        stack: Any, settings: Settings, db: asyncpg.Connection, database: Database, template: str,
        context: dict[str, str], error: str,
) -> None:
    outbox_id = await queue_mail(database, template=template, context=context)

    assert await send_email(job_ctx(settings, database), outbox_id) == "failed"

    row = await outbox_row(db, outbox_id)
    assert row["status"] == "failed" and error in row["last_error"]
    assert stack.smtp.messages() == []
    assert await send_email(job_ctx(settings, database), outbox_id) == "skipped"


async def test_unknown_outbox_id_is_a_no_op(
        stack: Any, settings: Settings, database: Database, arq_redis: ArqRedis
) -> None:
    assert await send_email(job_ctx(settings, database), 424242) == "skipped"
    await dispatch(arq_redis, [424243])

    worker = await run_burst(settings)

    assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
    assert stack.smtp.messages() == []


async def test_a_claim_is_taken_over_only_after_the_lease(
        stack: Any, settings: Settings, db: asyncpg.Connection, database: Database
) -> None:
    outbox_id = await queue_mail(database)
    ctx = job_ctx(settings, database)
    claim = "UPDATE email_outbox SET status = 'sending', attempts = 1, claimed_at = now() - $2::interval WHERE id = $1"

    await db.execute(claim, outbox_id, timedelta(minutes=1))  # a live worker is sending it
    assert await send_email(ctx, outbox_id) == "skipped"
    await db.execute(claim, outbox_id, timedelta(minutes=10))  # that worker died mid-send
    assert await send_email(ctx, outbox_id) == "sent"

    [message] = stack.smtp.messages()
    assert message["Message-ID"] == f"<outbox-{outbox_id}@taskdeck.test>"  # the same id as the lost attempt's
    assert (await outbox_row(db, outbox_id))["attempts"] == 2


async def test_no_smtp_configured_leaves_the_row_pending(
        stack: Any, settings: Settings, db: asyncpg.Connection, database: Database, arq_redis: ArqRedis
) -> None:
    outbox_id = await queue_mail(database)
    await db.execute("UPDATE email_outbox SET created_at = now() - interval '5 minutes' WHERE id = $1", outbox_id)
    no_smtp = settings.with_(smtp=None)

    assert await send_email(job_ctx(no_smtp, database), outbox_id) == "no-smtp"
    assert await sweep_outbox(job_ctx(no_smtp, database, redis=arq_redis)) == 0

    row = await outbox_row(db, outbox_id)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert await arq_redis.zcard("arq:queue") == 0


async def test_sweeper_reenqueues_stuck_rows_and_each_is_sent_once(
        stack: Any, settings: Settings, db: asyncpg.Connection, database: Database, arq_redis: ArqRedis
) -> None:
    lost = await queue_mail(database, to="lost@example.com")  # Redis was down at enqueue time
    died = await queue_mail(database, to="died@example.com")  # its worker died holding the claim
    fresh = await queue_mail(database, to="fresh@example.com")  # its first job is still on its way
    backing_off = await queue_mail(database, to="later@example.com")  # a Retry is scheduled for it
    await db.execute("UPDATE email_outbox SET created_at = now() - interval '20 minutes' WHERE id <> $1", fresh)
    await db.execute("UPDATE email_outbox SET status = 'sending', attempts = 1, "
                     "claimed_at = now() - interval '10 minutes' WHERE id = $1", died)
    await db.execute("UPDATE email_outbox SET attempts = 2, claimed_at = now() - interval '30 seconds' "
                     "WHERE id = $1", backing_off)
    ctx = job_ctx(settings, database, redis=arq_redis)

    assert await sweep_outbox(ctx) == 2
    assert await sweep_outbox(ctx) == 0  # the same rows again: their jobs are already queued
    await run_burst(settings)

    sent_to = sorted(message["To"] for message in stack.smtp.messages())
    assert sent_to == ["died@example.com", "lost@example.com"]
    statuses = {row["id"]: row["status"] for row in await db.fetch("SELECT id, status FROM email_outbox")}
    assert statuses == {lost: "sent", died: "sent", fresh: "pending", backing_off: "pending"}


async def test_job_logs_carry_the_request_id_of_the_outbox_row(
        settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    token = request_id_var.set("req-abc123")
    try:
        outbox_id = await queue_mail(database)
    finally:
        request_id_var.reset(token)
    caplog.handler.addFilter(RequestIdFilter())

    with caplog.at_level(logging.INFO, logger="app.worker.email"):
        await send_email(job_ctx(settings, database), outbox_id)

    [sent] = [record for record in caplog.records if "sent to" in record.getMessage()]
    assert getattr(sent, "request_id") == "req-abc123"
    assert request_id_var.get() == "-"  # reset after the job


async def test_a_running_worker_keeps_a_heartbeat_in_redis(settings: Settings, arq_redis: ArqRedis) -> None:
    worker = build_worker(settings, poll_delay=0.05)
    task = asyncio.create_task(worker.async_run())
    try:
        for _ in range(100):
            if await worker_heartbeat(arq_redis):
                break
            await asyncio.sleep(0.05)
        [(worker_id, heartbeat)] = (await worker_heartbeat(arq_redis)).items()
        assert worker_id == worker.worker_id and "j_complete=" in heartbeat
        assert 0 < await arq_redis.pttl(f"taskdeck:worker:{worker_id}") <= 11_000
    finally:
        await worker.close()
        await asyncio.gather(task, return_exceptions=True)

    assert await worker_heartbeat(arq_redis) == {}  # a clean stop says "down" at once
