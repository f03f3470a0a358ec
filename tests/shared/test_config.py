"""Settings validation: every bad value reported at once, one line naming the variable."""
from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace
import sys

import pytest

from shared.config import DEV_SECRET_KEY, SECRET_NAME, ConfigError, Settings, mask_password

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
    result = subprocess.run([sys.executable, "-m", "launcher.cli", "migrate"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("taskdeck: configuration error:") for line in lines)
    assert "Traceback" not in result.stderr


SECRET = "S3cr3t-Pa55w0rd"
HOSTILE_CONFIG = (f"postgresql://user:{SECRET}@db:bad/x", f"ftp://user:{SECRET}@host/x",
                  f"postgresql://ok/x,redis://user:{SECRET}@h:bad/0", f"user:{SECRET}@host",
                  f"postgresql://h:bad/x?password={SECRET}", SECRET, f"s3://AKIAEXAMPLE:{SECRET}@bucket:bad/prefix",
                  f"smtp://mailer:{SECRET}@smtp.internal:99999?starttls=1", f"https://u:{SECRET}@tasks.example.com:x")


class _RecordingEnv(dict):
    """Records every variable name Settings asks for, so the test below covers variables added later."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.names: set[str] = set()

    def get(self, key, default=None):
        self.names.add(key)
        return super().get(key, default)


def every_variable() -> set[str]:
    env = _RecordingEnv(BASE)
    Settings.from_env(env)
    return env.names


@pytest.mark.parametrize("value", HOSTILE_CONFIG)
def test_no_configuration_message_prints_a_credential(tmp_path, value):
    """Every variable Settings reads gets the credential at once; the CLI's stderr never shows it."""
    names = every_variable()
    assert {"DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL", "SMTP_URL", "EXPORT_STORAGE",
            "METRICS_TOKEN"} <= names
    if value == SECRET:  # a bare secret is only hidden in a variable whose name says it is one
        names = {n for n in names if SECRET_NAME.search(n)}
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **{n: value for n in names}}
    result = subprocess.run([sys.executable, "-m", "launcher.cli", "migrate"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert SECRET not in result.stderr and SECRET not in result.stdout, result.stderr
    assert "Traceback" not in result.stderr
    reported = {line.split(": ", 2)[2].split()[0].split("=")[0] for line in result.stderr.splitlines()}
    assert len(reported) >= min(len(names), 8), result.stderr  # the values were refused (and so printed), not ignored


def test_secret_named_variables_are_never_echoed():
    from shared.config import redact

    assert redact("AWS_SECRET_ACCESS_KEY", "abc") == "AWS_SECRET_ACCESS_KEY (value hidden)"
    assert redact("METRICS_TOKEN", "short") == "METRICS_TOKEN (value hidden)"
    assert redact("DATABASE_REPLICA_URLS", f"postgresql://r1/x,postgresql://u:{SECRET}@r2:x/y").count(SECRET) == 0
    assert redact("LOG_LEVEL", "loud") == "LOG_LEVEL=loud"
    assert redact("ACCESS_TOKEN_TTL", "9") == "ACCESS_TOKEN_TTL=9"


def test_metrics_token_and_outbox_retention():
    settings = Settings.from_env({**BASE, "METRICS_TOKEN": "m" * 24, "OUTBOX_RETENTION_DAYS": "7"})
    assert settings.metrics_token == "m" * 24 and settings.outbox_retention_days == 7
    assert Settings.from_env(BASE).metrics_token is None and Settings.from_env(BASE).outbox_retention_days == 30
    assert [p.split()[0] for p in problems(METRICS_TOKEN="short", OUTBOX_RETENTION_DAYS="0")] == \
        ["METRICS_TOKEN", "OUTBOX_RETENTION_DAYS=0"]


def test_dev_banner_masks_real_server_passwords(tmp_path):
    from launcher.dev import Topology, _banner

    env = {"DATABASE_URL": f"postgresql://u:{SECRET}@db/x", "REDIS_URL": f"redis://:{SECRET}@cache/0",
           "SMTP_URL": f"smtp://mailer:{SECRET}@smtp.internal:587",
           "EXPORT_STORAGE": f"s3://AKIAEXAMPLE:{SECRET}@bucket/prefix"}
    env["DATABASE_REPLICA_URLS"] = f"postgresql://u:{SECRET}@replica/x"
    banner = _banner("127.0.0.1", 8080, env, "dev-admin-pw", tmp_path,
                     [SimpleNamespace(pid=101), SimpleNamespace(pid=102)], Topology())
    assert SECRET not in banner
    # The user stays (the URL is pasted into psql as printed; API.md): only the password is masked.
    assert "postgresql://u:***@db/x" in banner and "smtp://mailer:***@smtp.internal:587" in banner
    assert "redis://:***@cache/0" in banner and "postgresql://u:***@replica/x" in banner


def test_mask_password_keeps_the_user_and_masks_secrets():
    assert mask_password("postgresql://postgres@127.0.0.1:5432/taskdeck") == \
        "postgresql://postgres@127.0.0.1:5432/taskdeck"
    assert mask_password(f"postgresql://u:{SECRET}@h1:1,h2:2/db?target_session_attrs=read-write") == \
        "postgresql://u:***@h1:1,h2:2/db?target_session_attrs=read-write"
    assert mask_password(f"postgresql://h/db?password={SECRET}&sslmode=require") == \
        "postgresql://h/db?password=***&sslmode=require"
    assert mask_password("/path/to/var/exports") == "/path/to/var/exports"


def test_replica_lag_ceiling_and_pooler():
    settings = Settings.from_env({**BASE, "REPLICA_MAX_LAG_SECONDS": "2", "DATABASE_POOLER": "PgBouncer"})
    assert settings.replica_max_lag_seconds == 2 and settings.database_pooler == "pgbouncer"
    defaults = Settings.from_env(BASE)
    assert defaults.replica_max_lag_seconds == 5 and defaults.database_pooler == "none"
    found = problems(REPLICA_MAX_LAG_SECONDS="-1", DATABASE_POOLER="pgpool")
    assert sorted(p.split("=")[0] for p in found) == ["DATABASE_POOLER", "REPLICA_MAX_LAG_SECONDS"]
