"""First-admin bootstrap, shared by `taskdeck create-admin` and `taskdeck dev`."""
from __future__ import annotations

import asyncpg
from marshmallow import ValidationError, fields

from shared.config import Settings
from shared.security import PASSWORD_MAX, PASSWORD_MIN, hash_password

UPSERT_ADMIN = """
INSERT INTO users (email, password_hash, role, email_verified)
VALUES ($1, $2, 'admin', true)
ON CONFLICT (email) DO UPDATE SET role = 'admin', is_active = true, updated_at = now()
RETURNING (xmax = 0) AS created
"""


def check_credentials(email: str, password: str) -> str:
    """The normalised email; ValueError with a readable reason if either is unacceptable."""
    try:
        email = fields.Email().deserialize(email.strip()).lower()
    except ValidationError:
        raise ValueError(f"not a valid email address: {email!r}") from None
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise ValueError(f"the password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return email


async def create_admin(settings: Settings, *, email: str, password: str) -> bool:
    """Create the admin, or promote (and reactivate) an existing user keeping their password.

    :return: True when a new account was created.
    """
    email = check_credentials(email, password)
    password_hash = await hash_password(password, settings)
    conn = await asyncpg.connect(settings.database_url)
    try:
        return bool(await conn.fetchval(UPSERT_ADMIN, email, password_hash))
    finally:
        await conn.close()
