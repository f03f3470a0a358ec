"""Settings: one immutable object built from environment variables, shared by web and worker.

Every bad value is reported at once, one line per variable, so an operator fixes them in one go.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

ENVIRONMENTS = ("development", "production", "test")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "console")
# Only ever used when TASKDECK_ENV=development; refused everywhere else.
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me-0123456789abcdef"
PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "secret_key", "your-secret-key", DEV_SECRET_KEY}
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """Raised with every invalid variable; str() is one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    tls: bool = False  # smtps://: TLS from the first byte (port 465 style)


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    secret_key: str
    environment: str = "production"
    database_replica_urls: tuple[str, ...] = ()
    smtp: SmtpConfig | None = None
    mail_from: str = "Taskdeck <no-reply@taskdeck.localhost>"
    public_url: str = "http://127.0.0.1:8080"
    export_storage: str = "./var/exports"
    log_level: str = "INFO"
    log_format: str = "console"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    bcrypt_rounds: int = 12
    db_pool_min: int = 2
    db_pool_max: int = 10
    session_cache_seconds: int = 30

    @property
    def is_development(self) -> bool:
        return self.environment == "development"

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``env`` (default ``os.environ``); raise ConfigError listing every bad value."""
        env = os.environ if env is None else env
        reader = _Reader(env)
        environment = reader.choice("TASKDECK_ENV", ENVIRONMENTS, "production")
        settings = cls(
            environment=environment,
            database_url=reader.url("DATABASE_URL", ("postgres", "postgresql")),
            database_replica_urls=reader.url_list("DATABASE_REPLICA_URLS", ("postgres", "postgresql")),
            redis_url=reader.url("REDIS_URL", ("redis", "rediss", "unix")),
            secret_key=reader.secret("SECRET_KEY", development=environment == "development"),
            smtp=reader.smtp("SMTP_URL"),
            mail_from=reader.text("MAIL_FROM", cls.mail_from),
            public_url=reader.url("PUBLIC_URL", ("http", "https"), cls.public_url).rstrip("/"),
            export_storage=reader.storage("EXPORT_STORAGE", cls.export_storage),
            log_level=reader.choice("LOG_LEVEL", LOG_LEVELS, cls.log_level, upper=True),
            log_format=reader.choice("LOG_FORMAT", LOG_FORMATS, cls.log_format),
            access_token_ttl=reader.integer("ACCESS_TOKEN_TTL", cls.access_token_ttl, 30, 86400),
            refresh_token_ttl=reader.integer("REFRESH_TOKEN_TTL", cls.refresh_token_ttl, 300, 365 * 86400),
            bcrypt_rounds=reader.integer("BCRYPT_ROUNDS", cls.bcrypt_rounds, 4, 16),
            db_pool_min=reader.integer("DB_POOL_MIN", cls.db_pool_min, 0, 100),
            db_pool_max=reader.integer("DB_POOL_MAX", cls.db_pool_max, 1, 500),
            session_cache_seconds=reader.integer("SESSION_CACHE_SECONDS", cls.session_cache_seconds, 0, 3600),
        )
        if reader.problems:
            raise ConfigError(reader.problems)
        return settings


class _Reader:
    """Reads variables, recording a one-line problem instead of raising on the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def _get(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def _check(self, name: str, default: object, parse: Callable[[str], object], expected: str) -> object:
        raw = self._get(name)
        if raw is None:
            if default is None:
                self.problems.append(f"{name} is required: expected {expected}")
            return default if default is not None else ""
        try:
            return parse(raw)
        except ValueError as exc:
            reason = f" ({exc})" if str(exc) else ""
            self.problems.append(f"{name}={_redact(raw)!s} is invalid: expected {expected}{reason}")
            return default if default is not None else ""

    def text(self, name: str, default: str) -> str:
        return str(self._check(name, default, str, "text"))

    def choice(self, name: str, choices: tuple[str, ...], default: str, upper: bool = False) -> str:
        def parse(raw: str) -> str:
            value = raw.upper() if upper else raw.lower()
            if value not in choices:
                raise ValueError("")
            return value
        return str(self._check(name, default, parse, "one of " + ", ".join(choices)))

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        def parse(raw: str) -> int:
            value = int(raw)
            if not low <= value <= high:
                raise ValueError("")
            return value
        return int(self._check(name, default, parse, f"an integer from {low} to {high}"))  # type: ignore[arg-type]

    def url(self, name: str, schemes: tuple[str, ...], default: str | None = None) -> str:
        expected = "a URL starting with " + " or ".join(f"{s}://" for s in schemes)
        return str(self._check(name, default, lambda raw: _parse_url(raw, schemes), expected))

    def url_list(self, name: str, schemes: tuple[str, ...]) -> tuple[str, ...]:
        def parse(raw: str) -> tuple[str, ...]:
            return tuple(_parse_url(part.strip(), schemes) for part in raw.split(",") if part.strip())
        expected = "comma-separated URLs starting with " + " or ".join(f"{s}://" for s in schemes)
        return self._check(name, (), parse, expected)  # type: ignore[return-value]

    def secret(self, name: str, development: bool) -> str:
        raw = self._get(name)
        if raw is None:
            if development:
                return DEV_SECRET_KEY
            self.problems.append(f"{name} is required outside development: expected a random string of "
                                 f"at least {MIN_SECRET_LENGTH} characters (e.g. `python -c 'import secrets; "
                                 f"print(secrets.token_urlsafe(48))'`)")
            return ""
        if raw.lower() in PLACEHOLDER_SECRETS and not (development and raw == DEV_SECRET_KEY):
            self.problems.append(f"{name} is a placeholder value: expected a random string of "
                                 f"at least {MIN_SECRET_LENGTH} characters")
        elif len(raw) < MIN_SECRET_LENGTH:
            self.problems.append(f"{name} is too short ({len(raw)} characters): expected at least "
                                 f"{MIN_SECRET_LENGTH} random characters")
        return raw

    def smtp(self, name: str) -> SmtpConfig | None:
        if self._get(name) is None:  # optional: no SMTP server means mails stay queued in the outbox
            return None
        return self._check(name, None, _parse_smtp,  # type: ignore[return-value]
                           "smtp[s]://[user:password@]host:port[?starttls=1]") or None

    def storage(self, name: str, default: str) -> str:
        def parse(raw: str) -> str:
            if "://" in raw:
                # The storage interface (shared/storage.py) is ready for an S3 backend, but none ships
                # yet: refusing at start beats failing every export at run time.
                raise ValueError("only a directory is supported in this version; s3:// is not implemented yet")
            return raw
        return str(self._check(name, default, parse, "a directory path"))


def _parse_url(raw: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        raise ValueError(f"scheme {parts.scheme or 'missing'!r}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("no host")
    try:
        parts.port
    except ValueError:
        raise ValueError("bad port") from None
    return raw


def _parse_smtp(raw: str) -> SmtpConfig:
    parts = urlsplit(raw)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError:
        raise ValueError("bad port") from None
    query = parse_qs(parts.query)
    starttls = query.get("starttls", ["0"])[0].lower() in ("1", "true", "yes")
    return SmtpConfig(host=parts.hostname, port=port, username=parts.username, password=parts.password,
                      starttls=starttls, tls=parts.scheme == "smtps")


def _redact(raw: str) -> str:
    """Never echo credentials embedded in a URL back into logs."""
    parts = urlsplit(raw)
    if parts.password:
        return raw.replace(f":{parts.password}@", ":***@")
    return raw


def load_dotenv_file(path: Path = Path(".env")) -> None:
    """Read ``.env`` (development convenience); real environment variables always win."""
    if path.is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)
