"""Job names shared by the enqueuing web tier and the worker (a rename cannot drift between them)."""
from __future__ import annotations

SEND_EMAIL = "send_email"
PASSWORD_RESET = "password_reset"


class Private(str):
    """A job argument arq must not print: its job log line shows ``'***'`` (an email address, say).

    Still a str: pickled into the queue and back like one (the class lives here, importable by both tiers).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"
