"""Real PostgreSQL, Redis and SMTP sink, started once per session by the same launcher as `taskdeck dev`."""
from __future__ import annotations

import asyncio
import faulthandler
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import asyncpg
import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import Redis

from shared import eventloop
from shared.config import S3Config, Settings, SmtpConfig
from shared.db.database import Database
from launcher.devstack import PostgresServer, RedisServer, S3Server, SmtpSink
from shared.db.migrate import migrate
from tests.replica_helpers import set_apply_delay, wait_caught_up
from web.app import create_app

TEST_SECRET = "test-secret-key-that-is-long-enough-for-hs256-0123456789"
TEST_DB = "taskdeck_test"


TEST_HANG_SECONDS = 600


def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
    """Every async test runs on the loop production runs on (shared/eventloop.py)."""
    return {"uvloop": eventloop.new_event_loop}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: Any, nextitem: Any) -> Iterator[None]:
    """A hung test ends the run with every thread's traceback instead of stalling CI. (uvloop's loop.close()
    waits forever for a transport a test leaked, e.g. an asyncpg pool it never closed: asyncio's would warn.)"""
    faulthandler.dump_traceback_later(TEST_HANG_SECONDS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@dataclass
class Stack:
    postgres: PostgresServer
    redis: RedisServer
    smtp: SmtpSink
    base: Path

    @property
    def dsn(self) -> str:
        return self.postgres.dsn(TEST_DB)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    base = Path(tempfile.mkdtemp(prefix="taskdeck-test-"))
    os.chmod(base, 0o755)  # postgres runs as `nobody` when we are root and must reach its data dir
    postgres, redis, smtp = PostgresServer(base / "pg"), RedisServer(base / "redis"), SmtpSink(base / "mail")
    started: list[Any] = []
    try:
        for server in (postgres, redis, smtp):
            server.start()
            started.append(server)
        postgres.create_database(TEST_DB)
        asyncio.run(migrate(postgres.dsn(TEST_DB)))
        yield Stack(postgres, redis, smtp, base)
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def settings(stack: Stack, tmp_path: Path) -> Settings:
    host, port = stack.smtp.url.removeprefix("smtp://").split(":")
    return Settings(
        environment="test",
        database_url=stack.dsn,
        redis_url=stack.redis.url,
        secret_key=TEST_SECRET,
        smtp=SmtpConfig(host=host, port=int(port)),
        public_url="http://taskdeck.test",
        export_storage=str(tmp_path / "exports"),
        bcrypt_rounds=4,
        db_pool_min=1,
        db_pool_max=5,
        # Many tests log in and call the API in bursts; the rate-limit tests switch limits on themselves.
        rate_limits=False,
        max_active_jobs=1000,
    )


@pytest.fixture(scope="session")
def s3_server(stack: Stack) -> Iterator[S3Server]:
    """A real S3 HTTP endpoint (moto's server mode), started on first use by the tests that need one."""
    server = S3Server(stack.base / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_settings(settings: Settings, s3_server: S3Server) -> Settings:
    """``settings`` with EXPORT_STORAGE=s3://<a fresh bucket>/exports on the session's S3 endpoint."""
    bucket = f"test-{os.urandom(6).hex()}"
    s3_server.create_bucket(bucket)
    return settings.with_(export_storage=f"s3://{bucket}/exports", s3=S3Config(
        bucket=bucket, prefix="exports", endpoint_url=s3_server.url, access_key_id="test",
        secret_access_key="test"))


@pytest.fixture(autouse=True)
async def clean_state(stack: Stack) -> None:
    """Every test starts from empty tables, an empty Redis and an empty mailbox."""
    conn = await asyncpg.connect(stack.dsn)
    try:
        tables = await conn.fetchval(
            "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
        if tables:
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    redis = Redis.from_url(stack.redis.url)
    await redis.flushdb()
    await redis.aclose()
    stack.smtp.clear()


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection for arranging and inspecting rows."""
    conn = await asyncpg.connect(stack.dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The pools web and worker use, for calling service and job functions directly."""
    database = await Database.connect(settings)
    yield database
    await database.close()


@pytest.fixture
async def arq_redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    yield redis
    await redis.aclose()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> Any:
    return await aiohttp_client(create_app(settings))


@dataclass
class TestUser:
    id: int
    email: str
    password: str
    token: str
    session_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def make_user(db: asyncpg.Connection, settings: Settings) -> Any:
    """Insert a user with a live session; ``user.headers`` authenticates as them."""
    from shared.security import create_access_token, hash_password

    counter = iter(range(1, 1_000_000))

    async def make(email: str | None = None, *, password: str = "correct horse battery", role: str = "user",
                   name: str = "", verified: bool = True, active: bool = True) -> TestUser:
        email = email or f"user{next(counter)}@example.com"
        password_hash = await hash_password(password, settings)
        user_id = await db.fetchval(
            "INSERT INTO users (email, name, password_hash, role, email_verified, is_active) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id", email.lower(), name, password_hash, role, verified, active)
        session_id = str(await db.fetchval("INSERT INTO sessions (user_id) VALUES ($1) RETURNING id", user_id))
        token, _ = create_access_token(settings, user_id=user_id, session_id=session_id)
        return TestUser(user_id, email.lower(), password, token, session_id)

    return make


# --- a streaming replica of the test PostgreSQL, for replica routing --------------------------------
@pytest.fixture(scope="session")
def replica_server(stack: Stack) -> Iterator[PostgresServer]:
    server = PostgresServer(stack.base / "replica", primary=stack.postgres)  # pg_basebackup on first start
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def replica(replica_server: PostgresServer, stack: Stack) -> AsyncIterator[PostgresServer]:
    """The replica, running, without apply delay and caught up with the primary when the test starts."""
    if not (replica_server.data_dir / "postmaster.pid").exists():
        replica_server.start()  # a test stopped it
    await set_apply_delay(replica_server, "0")
    await wait_caught_up(replica_server, stack.dsn)
    yield replica_server
    if (replica_server.data_dir / "postmaster.pid").exists():
        await set_apply_delay(replica_server, "0")


@pytest.fixture
def replica_settings(settings: Settings, replica: PostgresServer) -> Settings:
    return settings.with_(database_replica_urls=(replica.dsn(TEST_DB),))
