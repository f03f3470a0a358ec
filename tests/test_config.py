"""Settings validation: every bad value reported at once, one line naming the variable."""
from __future__ import annotations

import subprocess
import sys

import pytest

from shared.config import DEV_SECRET_KEY, ConfigError, Settings

BASE = {"DATABASE_URL": "postgresql://u:p@db:5432/taskdeck", "REDIS_URL": "redis://cache:6379/0",
        "SECRET_KEY": "s" * 48}


def problems(**env: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, **env})
    return info.value.problems


def test_valid_environment():
    settings = Settings.from_env({**BASE, "DATABASE_REPLICA_URLS": "postgresql://r1/t, postgresql://r2/t",
                                  "SMTP_URL": "smtp://user:pw@mail:587?starttls=1", "LOG_LEVEL": "debug",
                                  "LOG_FORMAT": "json", "PUBLIC_URL": "https://tasks.example.com/"})
    assert settings.database_replica_urls == ("postgresql://r1/t", "postgresql://r2/t")
    assert settings.smtp and settings.smtp.starttls and settings.smtp.username == "user"
    assert settings.smtp.port == 587 and settings.log_level == "DEBUG"
    assert settings.public_url == "https://tasks.example.com"
    assert settings.environment == "production" and settings.export_storage == "./var/exports"
    assert not settings.smtp.tls
    assert Settings.from_env({**BASE, "SMTP_URL": "smtps://mail.example.com"}).smtp.tls


def test_every_problem_is_reported_together():
    found = problems(DATABASE_URL="mysql://x/y", REDIS_URL="", LOG_FORMAT="xml", BCRYPT_ROUNDS="99",
                     SMTP_URL="ftp://x", EXPORT_STORAGE="gs://bucket", DATABASE_REPLICA_URLS="postgresql://ok/x,bad")
    names = sorted(p.split()[0].split("=")[0] for p in found)
    assert names == ["BCRYPT_ROUNDS", "DATABASE_REPLICA_URLS", "DATABASE_URL", "EXPORT_STORAGE", "LOG_FORMAT",
                     "REDIS_URL", "SMTP_URL"]
    assert all("expected" in p for p in found)


def test_secret_key_is_required_outside_development():
    env = {k: v for k, v in BASE.items() if k != "SECRET_KEY"}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert info.value.problems[0].startswith("SECRET_KEY is required")
    assert Settings.from_env({**env, "TASKDECK_ENV": "development"}).secret_key == DEV_SECRET_KEY


@pytest.mark.parametrize("secret", ["short", "changeme", DEV_SECRET_KEY])
def test_placeholder_or_short_secret_is_refused(secret):
    assert problems(SECRET_KEY=secret)[0].startswith("SECRET_KEY")


def test_credentials_are_not_echoed_in_problems():
    found = problems(DATABASE_URL="mysql://admin:hunter2@db/x")
    assert "hunter2" not in found[0]


def test_cli_exits_non_zero_with_one_line_per_problem(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "nope", "SECRET_KEY": "x"}
    result = subprocess.run([sys.executable, "-m", "shared.cli", "migrate"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("taskdeck: configuration error:") for line in lines)
    assert "Traceback" not in result.stderr


def test_replica_lag_ceiling_and_pooler():
    settings = Settings.from_env({**BASE, "REPLICA_MAX_LAG_SECONDS": "2", "DATABASE_POOLER": "PgBouncer"})
    assert settings.replica_max_lag_seconds == 2 and settings.database_pooler == "pgbouncer"
    defaults = Settings.from_env(BASE)
    assert defaults.replica_max_lag_seconds == 5 and defaults.database_pooler == "none"
    found = problems(REPLICA_MAX_LAG_SECONDS="-1", DATABASE_POOLER="pgpool")
    assert sorted(p.split("=")[0] for p in found) == ["DATABASE_POOLER", "REPLICA_MAX_LAG_SECONDS"]
