"""This process's memory of verified access tokens and of sessions the primary said were live (web.auth)."""
from __future__ import annotations

import time
from typing import Any

from shared.config import Settings
from shared.errors import Unauthorized
from shared.security import AccessClaims, decode_access_token


class SessionCache:
    """This process's memory of verified tokens and of sessions the primary said were live.

    A session entry is used only while the user's auth version in Redis is the one read *before* the
    primary was asked (so a revocation racing the fill wins), and for at most ``seconds`` (the bound
    for the one case no version can cover: a revocation made while its process could not reach Redis).
    """

    MAX_ENTRIES = 10_000

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self._tokens: dict[str, AccessClaims] = {}
        self._sessions: dict[str, tuple[bytes, float, dict[str, Any]]] = {}

    def claims(self, settings: Settings, token: str) -> AccessClaims:
        """The token's claims; the signature is checked once per token string, the expiry every time."""
        claims = self._tokens.get(token)
        if claims is None:
            claims = decode_access_token(settings, token)
            self._remember(self._tokens, token, claims)
        elif claims.expires_at <= time.time():
            del self._tokens[token]
            raise Unauthorized("The access token has expired")
        return claims

    def user(self, claims: AccessClaims, version: bytes) -> dict[str, Any] | None:
        entry = self._sessions.get(claims.session_id)
        if entry is None:
            return None
        seen_version, until, user = entry
        if seen_version != version or until < time.monotonic() or user["id"] != claims.user_id:
            del self._sessions[claims.session_id]
            return None
        return user

    def remember(self, claims: AccessClaims, version: bytes, user: dict[str, Any]) -> None:
        if self.seconds > 0:
            self._remember(self._sessions, claims.session_id, (version, time.monotonic() + self.seconds, user))

    def forget_sessions(self) -> None:
        self._sessions.clear()

    def _remember(self, table: dict[str, Any], key: str, value: Any) -> None:
        if len(table) >= self.MAX_ENTRIES:
            del table[next(iter(table))]  # the oldest insertion; good enough, and O(1)
        table[key] = value
