"""The directory storage backend: files appear whole or not at all."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from shared.config import ConfigError, Settings
from shared.storage import PARTIAL_SUFFIX, DirectoryStorage, storage_from_settings


def files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


async def test_a_file_appears_under_its_key_only_when_complete(tmp_path: Path) -> None:
    storage = DirectoryStorage(tmp_path)
    async with storage.create("jobs/1/out.csv") as pending:
        await pending.write(b"id,title\r\n")
        pending.file.write(b"1,milk\r\n")  # a thread may write the file object directly
        [partial] = files(tmp_path)
        assert partial.startswith("jobs/1/.out.csv.") and partial.endswith(PARTIAL_SUFFIX)
        assert await storage.size("jobs/1/out.csv") is None

    assert files(tmp_path) == ["jobs/1/out.csv"]
    assert pending.size == await storage.size("jobs/1/out.csv") == 18
    assert b"".join([chunk async for chunk in storage.chunks("jobs/1/out.csv")]) == b"id,title\r\n1,milk\r\n"


async def test_a_failed_write_leaves_nothing_and_the_old_file_intact(tmp_path: Path) -> None:
    storage = DirectoryStorage(tmp_path)
    async with storage.create("jobs/2/out.csv") as pending:
        await pending.write(b"first")
    with pytest.raises(RuntimeError):
        async with storage.create("jobs/2/out.csv") as pending:
            await pending.write(b"second, half")
            raise RuntimeError("worker crashed")

    assert files(tmp_path) == ["jobs/2/out.csv"]
    assert (tmp_path / "jobs/2/out.csv").read_bytes() == b"first"
    await storage.delete("jobs/2/out.csv")
    await storage.delete("jobs/2/out.csv")  # twice is fine
    assert files(tmp_path) == []


async def test_discard_partials_respects_age_and_prefix(tmp_path: Path) -> None:
    storage = DirectoryStorage(tmp_path)
    for name in ("jobs/3/.a.csv.x.part", "jobs/4/.b.csv.y.part", "jobs/4/b.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - 3600
    os.utime(tmp_path / "jobs/3/.a.csv.x.part", (old, old))

    assert await storage.discard_partials("jobs/", older_than=600) == 1
    assert await storage.discard_partials("jobs/4/") == 1
    assert await storage.discard_partials("jobs/5/") == 0
    assert files(tmp_path) == ["jobs/4/b.csv"]


@pytest.mark.parametrize("key", ["../escape", "/abs", "jobs/../../x", "", "a//b", "jobs/.hidden"])
async def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        DirectoryStorage(tmp_path).local_path(key)


def test_backend_from_settings(settings: Settings) -> None:
    assert isinstance(storage_from_settings(settings), DirectoryStorage)


def test_s3_storage_is_refused_at_start_not_at_run_time() -> None:
    env = {"DATABASE_URL": "postgresql://h/d", "REDIS_URL": "redis://h", "SECRET_KEY": "k" * 40,
           "EXPORT_STORAGE": "s3://bucket/prefix"}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.problems[0].startswith("EXPORT_STORAGE") and "not implemented" in info.value.problems[0]
