"""Fixtures for the job tests, loaded by each of them with ``pytest_plugins = ("job_fixtures",)``."""
from __future__ import annotations

from typing import AsyncIterator

import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from shared.config import Settings
from shared.db import Database


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The worker's pools, for calling job functions directly."""
    database = await Database.connect(settings)
    yield database
    await database.close()


@pytest.fixture
async def arq_redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    yield redis
    await redis.aclose()
