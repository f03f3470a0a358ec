"""Mail rendering (Jinja2, text + HTML) and sending (aiosmtplib).

A mail named ``verify_email`` is three templates in ``templates/email/``: ``verify_email.subject.txt``
(one line), ``verify_email.txt`` and ``verify_email.html`` (autoescaped). Rendering is pure; only
``send()`` does I/O.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import aiosmtplib
import jinja2

from shared.config import Settings, SmtpConfig

EMAIL_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"
# Per SMTP command (connect, EHLO, DATA...), not in total; the arq job timeout bounds the whole send.
SMTP_TIMEOUT = 30.0
# RFC 8314 implicit TLS port: SmtpConfig keeps no scheme, so smtps:// is recognised by its port.
# Template names come from a database row: never let one walk out of templates/email/.
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]+$")


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@functools.cache
def environment() -> jinja2.Environment:
    """The process-wide Jinja2 environment, built on first use (never at import)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(EMAIL_TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        # A context key missing from the outbox row is a bug: fail the mail instead of sending "Hi ,".
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template: str, context: Mapping[str, Any]) -> RenderedMail:
    """Render one mail.

    :param template: the mail's name, e.g. ``verify_email``
    :raises jinja2.TemplateError: unknown template or missing context key (permanent: retrying cannot help)
    """
    if not _TEMPLATE_NAME.match(template):
        raise jinja2.TemplateNotFound(template)
    env = environment()
    subject = env.get_template(f"{template}.subject.txt").render(context)
    return RenderedMail(
        subject=" ".join(subject.split()),  # one header line, whatever the template's whitespace
        text=env.get_template(f"{template}.txt").render(context),
        html=env.get_template(f"{template}.html").render(context),
    )


def message_domain(settings: Settings) -> str:
    """The right-hand side of our Message-IDs: the public host, else the sender's domain."""
    host = urlsplit(settings.public_url).hostname
    if host:
        return host
    return parseaddr(settings.mail_from)[1].rpartition("@")[2] or "taskdeck.localhost"


def message_id(outbox_id: int, settings: Settings) -> str:
    """Stable per outbox row, so a re-send after a crash is recognisably the same mail."""
    return f"<outbox-{outbox_id}@{message_domain(settings)}>"


def build_message(*, outbox_id: int, to: str, template: str, context: Mapping[str, Any],
                  settings: Settings) -> EmailMessage:
    """Render ``template`` into a multipart/alternative mail from ``settings.mail_from`` to ``to``."""
    rendered = render(template, context)
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = settings.mail_from
    message["To"] = to
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(outbox_id, settings)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


async def send(message: EmailMessage, smtp: SmtpConfig, *, timeout: float = SMTP_TIMEOUT) -> None:
    """Hand ``message`` to the SMTP server; the envelope comes from its From/To headers.

    :raises aiosmtplib.SMTPException: refused, disconnected, timed out (see worker.jobs.email for which retry)
    """
    implicit_tls = smtp.tls
    await aiosmtplib.send(
        message,
        hostname=smtp.host,
        port=smtp.port,
        username=smtp.username,
        password=smtp.password,
        use_tls=implicit_tls,
        # Explicit, never opportunistic: do what SMTP_URL says rather than guess from the server's EHLO.
        start_tls=smtp.starttls and not implicit_tls,
        timeout=timeout,
    )
