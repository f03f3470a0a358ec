"""Account mails that the web tier hands over without looking anything up: the password reset.

The request only enqueues ``password_reset(email)``; this job looks the address up and queues the mail
(or does nothing), so the web answer is the same work, and the same time, for every address.
"""
from __future__ import annotations

import logging
from typing import Any

from arq import func

from shared import accounts, jobs
from shared.mail import outbox
from shared.observability.logs import request_id_var

logger = logging.getLogger("app.worker.accounts")


async def password_reset(ctx: dict[str, Any], email: str, request_id: str | None = None) -> str:
    """Queue a reset mail if an active account has ``email``.

    :return: 'queued' or 'nothing' (no such active account, or this job's mail is already queued)
    """
    token = request_id_var.set(request_id or "-")
    try:
        mail_id = await accounts.queue_password_reset(ctx["db"], ctx["settings"], email=str(email),
                                                      dedup_key=f"password_reset:{ctx['job_id']}")
        if mail_id is None:
            return "nothing"
        await outbox.dispatch(ctx["redis"], [mail_id])
        return "queued"
    finally:
        request_id_var.reset(token)


FUNCTIONS = [func(password_reset, name=jobs.PASSWORD_RESET, timeout=60)]
