"""Send one outbox mail: claim the row, render, hand it to SMTP, record the outcome.

At-least-once, made as close to exactly-once as SMTP allows:

- The claim is a single conditional UPDATE, so of two jobs for the same row (a duplicate enqueue, the
  sweeper, arq re-running a job after a worker died) exactly one gets it; the others are no-ops.
- The one window that cannot be closed: the SMTP server accepted the mail (250 after DATA) and the
  worker dies before the UPDATE to 'sent' commits. SMTP has no two-phase commit, so the row stays
  'sending'; once LEASE has passed, the claim (or the sweeper) takes it again and the mail goes out a
  second time. It carries the same Message-ID (``<outbox-{id}@host>``), so mail stores and clients that
  de-duplicate by Message-ID show it once, and MAX_ATTEMPTS bounds how often it can happen.
"""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from typing import Any

import aiosmtplib
import asyncpg
import jinja2
from arq import Retry

from shared.config import Settings
from shared.mail import smtp
from shared.mail.outbox import SECRET_KEYS
from shared.observability import metrics
from shared.observability.logs import request_id_var

logger = logging.getLogger("app.worker.email")

# Longer than the send_email job timeout (worker.settings), so a live job is never taken over.
LEASE = timedelta(minutes=5)
# Seconds to wait after the 1st, 2nd... transient failure; after the last one the mail is 'failed'.
BACKOFF = (10, 60, 5 * 60, 15 * 60, 60 * 60)
MAX_ATTEMPTS = len(BACKOFF) + 1
ERROR_MAX_CHARS = 1000

CLAIM_EMAIL = """
UPDATE email_outbox
SET status = 'sending', claimed_at = now(), attempts = attempts + 1
WHERE id = $1
  AND (status = 'pending' OR (status = 'sending' AND claimed_at < now() - $2::interval))
RETURNING id, user_id, to_address, template, context, attempts, request_id
"""
# Unconditional on status: once SMTP accepted the mail it *is* sent, even if our lease ran out meanwhile.
# The same statement drops the credential from the context: a sent row never holds a usable token.
MARK_SENT = """
UPDATE email_outbox SET status = 'sent', sent_at = now(), last_error = NULL, context = context - $2::text[]
WHERE id = $1
"""
# Both guarded by attempts: only the holder of this claim may release or fail it.
RELEASE_EMAIL = """
UPDATE email_outbox SET status = 'pending', last_error = $3
WHERE id = $1 AND status = 'sending' AND attempts = $2
"""
FAIL_EMAIL = """
UPDATE email_outbox SET status = 'failed', last_error = $3, context = context - $4::text[]
WHERE id = $1 AND status = 'sending' AND attempts = $2
"""
# SMTP errors quote the recipient; logs and last_error name the user id instead.
_ADDRESS = re.compile(r"[^\s@'\"<>(),:;]+@[^\s@'\"<>(),:;]+")


async def send_email(ctx: dict[str, Any], outbox_id: int) -> str:
    """Send outbox row ``outbox_id`` unless it is sent, failed, or being sent by another job.

    :return: 'sent', 'failed', 'skipped' (nothing to claim) or 'no-smtp'
    :raises arq.Retry: on a transient failure, with the row back to 'pending'
    """
    settings: Settings = ctx["settings"]
    if settings.smtp is None:
        # Not claimed and no Retry: the row waits, untouched, until SMTP_URL is configured.
        logger.warning("SMTP_URL is not set: email %s stays in the outbox", outbox_id)
        return "no-smtp"
    pool: asyncpg.Pool = ctx["db"].write
    row = await pool.fetchrow(CLAIM_EMAIL, outbox_id, LEASE)
    if row is None:
        logger.info("email %s: nothing to send (already sent, failed, unknown, or claimed elsewhere)", outbox_id)
        return "skipped"
    token = request_id_var.set(row["request_id"] or "-")
    try:
        return await _deliver(pool, settings, row)
    finally:
        request_id_var.reset(token)


async def _deliver(pool: asyncpg.Pool, settings: Settings, row: asyncpg.Record) -> str:
    if row["attempts"] > MAX_ATTEMPTS:  # re-claimed after crashes in the window above: stop re-sending
        return await _fail(pool, row, f"gave up after {MAX_ATTEMPTS} attempts")
    assert settings.smtp is not None  # send_email checked it before claiming
    try:
        message = smtp.build_message(outbox_id=row["id"], to=row["to_address"], template=row["template"],
                                     context={"public_url": settings.public_url, **row["context"]},
                                     settings=settings)
        await smtp.send(message, settings.smtp)
    except Exception as exc:  # noqa: BLE001 - every outcome is recorded on the row
        error = _describe(exc)
        final = not is_transient(exc) or row["attempts"] >= MAX_ATTEMPTS
        metrics.EMAILS_FAILED.labels(row["template"], "true" if final else "false").inc()
        if not is_transient(exc):
            # A traceback helps with a broken template; an SMTP refusal's would only repeat the address.
            logger.error("email %s (%s) failed permanently: %s", row["id"], row["template"], error,
                         exc_info=not isinstance(exc, aiosmtplib.SMTPException))
            return await _fail(pool, row, error)
        if row["attempts"] >= MAX_ATTEMPTS:
            return await _fail(pool, row, f"gave up after {row['attempts']} attempts: {error}")
        await pool.execute(RELEASE_EMAIL, row["id"], row["attempts"], error)
        delay = BACKOFF[min(row["attempts"], len(BACKOFF)) - 1]
        logger.warning("email %s: attempt %s failed (%s), retrying in %ss", row["id"], row["attempts"], error, delay)
        raise Retry(defer=delay) from exc
    await pool.execute(MARK_SENT, row["id"], SECRET_KEYS)
    metrics.EMAILS_SENT.labels(row["template"]).inc()
    logger.info("email %s (%s) sent to user %s", row["id"], row["template"], row["user_id"])
    return "sent"


async def _fail(pool: asyncpg.Pool, row: asyncpg.Record, error: str) -> str:
    await pool.execute(FAIL_EMAIL, row["id"], row["attempts"], error[:ERROR_MAX_CHARS], SECRET_KEYS)
    logger.error("email %s (%s) marked failed: %s", row["id"], row["template"], error)
    return "failed"


def is_transient(exc: BaseException) -> bool:
    """True when trying the same mail again later can succeed (server down or busy, network, config)."""
    if isinstance(exc, jinja2.TemplateError):
        return False  # checked first: TemplateNotFound is also an OSError
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return any(refusal.code < 500 for refusal in exc.recipients)
    if isinstance(exc, (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPAuthenticationError)):
        return True  # includes a 5xx greeting or bad credentials: the server or our config, not this mail
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code < 500  # 4xx: "try again later"; 5xx: this mail will never be accepted
    return isinstance(exc, (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError))


def _describe(exc: BaseException) -> str:
    return _ADDRESS.sub("<recipient>", f"{type(exc).__name__}: {exc}")[:ERROR_MAX_CHARS]
