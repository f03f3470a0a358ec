"""The directory storage backend: files appear whole or not at all."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from shared.config import ConfigError, S3Config, Settings
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


BASE_ENV = {"DATABASE_URL": "postgresql://h/d", "REDIS_URL": "redis://h", "SECRET_KEY": "k" * 40}


def test_s3_storage_reads_the_aws_variables() -> None:
    settings = Settings.from_env({**BASE_ENV, "EXPORT_STORAGE": "s3://my-bucket/some/prefix/",
                                  "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalr-secret",
                                  "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://minio:9000"})
    assert settings.s3 == S3Config(bucket="my-bucket", prefix="some/prefix", region="eu-west-1",
                                   endpoint_url="http://minio:9000", access_key_id="AKIDEXAMPLE",
                                   secret_access_key="wJalr-secret")
    assert "wJalr-secret" not in repr(settings.s3)
    assert Settings.from_env(BASE_ENV).s3 is None


@pytest.mark.parametrize("env, expected", [
    ({"EXPORT_STORAGE": "s3://AB/x"}, "EXPORT_STORAGE=s3://AB/x is invalid"),
    ({"EXPORT_STORAGE": "gs://bucket/x"}, "EXPORT_STORAGE=gs://bucket/x is invalid"),
    ({"EXPORT_STORAGE": "s3://bucket", "AWS_ACCESS_KEY_ID": "only-the-id"}, "AWS_ACCESS_KEY_ID and"),
    ({"EXPORT_STORAGE": "s3://bucket", "AWS_ENDPOINT_URL": "minio:9000"}, "AWS_ENDPOINT_URL=minio:9000 is invalid"),
])
def test_bad_s3_configuration_is_refused_at_start(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE_ENV, **env})
    assert [p for p in info.value.problems if p.startswith(expected)], info.value.problems
