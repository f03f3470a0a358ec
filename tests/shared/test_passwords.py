"""Passwords of 8..128 characters of anything, a versioned hash format, upgrades on login."""
from __future__ import annotations

import bcrypt
import pytest

from shared import security
from tests.helpers import assert_problem, login, register

EMAIL = "ada@example.com"


@pytest.mark.parametrize("password", [
    "😀" * 128,              # 128 characters, 512 bytes: far beyond bcrypt's 72
    "é" * 40 + "x" * 88,     # 128 characters, 168 bytes
    "a" * 72 + "b" * 56,     # differs from the next one only after byte 72
    "\u00a0 \t" * 40 + "end!!!!!",
])
async def test_any_password_of_8_to_128_characters_registers_and_logs_in(client, password):
    await register(client, EMAIL, password)
    assert (await login(client, EMAIL, password))["access_token"]


async def test_passwords_differing_after_72_bytes_are_different(client):
    await register(client, EMAIL, "a" * 72 + "b" * 56)
    wrong = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": "a" * 72 + "c" * 56})
    await assert_problem(wrong, 401)
    wrong_emoji = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": "😀" * 127 + "😁"})
    await assert_problem(wrong_emoji, 401)


async def test_129_characters_is_422_and_7_is_422(client):
    for password in ("😀" * 129, "x" * 7):
        response = await client.post("/api/v1/auth/register", json={"email": EMAIL, "password": password})
        await assert_problem(response, 422, "password")


async def test_stored_hash_is_versioned_and_peppered(client, db, settings):
    await register(client, EMAIL, "correct horse battery")
    stored = await db.fetchval("SELECT password_hash FROM users")
    assert stored.startswith(security.HASH_PREFIX + "$2b$04$")
    inner = stored[len(security.HASH_PREFIX):].encode()
    assert not bcrypt.checkpw(b"correct horse battery", inner)  # not bcrypt of the raw password
    # The pre-hash is keyed: the same hash does not verify under another SECRET_KEY.
    other = settings.with_(secret_key="another-secret-key-that-is-long-enough-0123456789")
    assert await security.verify_password("correct horse battery", stored, settings)
    assert not await security.verify_password("correct horse battery", stored, other)


async def test_a_legacy_bcrypt_hash_still_verifies_and_is_upgraded_on_login(client, db, make_user):
    user = await make_user(EMAIL, password="legacy password")
    legacy = bcrypt.hashpw(b"legacy password", bcrypt.gensalt(4)).decode()
    await db.execute("UPDATE users SET password_hash = $1 WHERE id = $2", legacy, user.id)
    wrong = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": "legacy passworD"})
    await assert_problem(wrong, 401)
    assert await db.fetchval("SELECT password_hash FROM users") == legacy  # a failed login changes nothing
    assert (await login(client, EMAIL, "legacy password"))["access_token"]
    upgraded = await db.fetchval("SELECT password_hash FROM users")
    assert upgraded.startswith(security.HASH_PREFIX) and upgraded != legacy
    assert (await login(client, EMAIL, "legacy password"))["access_token"]
    assert await db.fetchval("SELECT password_hash FROM users") == upgraded  # current: left alone


async def test_changed_bcrypt_rounds_rehash_on_login(aiohttp_client, settings, db, make_user):
    from web.app import create_app

    await make_user(EMAIL, password="correct horse battery")
    assert "$2b$04$" in await db.fetchval("SELECT password_hash FROM users")
    client = await aiohttp_client(create_app(settings.with_(bcrypt_rounds=5)))
    assert (await login(client, EMAIL, "correct horse battery"))["access_token"]
    assert (await db.fetchval("SELECT password_hash FROM users")).startswith(security.HASH_PREFIX + "$2b$05$")


async def test_a_corrupt_stored_hash_is_a_401_not_a_500(client, db, make_user):
    await make_user(EMAIL, password="correct horse battery")
    for broken in ("td2$garbage", "$2b$04$short", "plain-text"):
        await db.execute("UPDATE users SET password_hash = $1", broken)
        response = await client.post("/api/v1/auth/login", json={"email": EMAIL, "password": "correct horse battery"})
        await assert_problem(response, 401)


def test_needs_rehash(settings):
    current = security.HASH_PREFIX + bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode()
    assert not security.needs_rehash(current, settings)
    assert security.needs_rehash(current, settings.with_(bcrypt_rounds=12))
    assert security.needs_rehash(current[len(security.HASH_PREFIX):], settings)
