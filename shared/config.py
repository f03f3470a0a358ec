"""Settings: one immutable object built from environment variables, shared by web and worker.

Every bad value is reported at once, one line per variable, so an operator fixes them in one go.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import parse_qs, urlsplit

import limits

ENVIRONMENTS = ("development", "production", "test")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "console")
POOLERS = ("none", "pgbouncer")
# Only ever used when TASKDECK_ENV=development; refused everywhere else.
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me-0123456789abcdef"
PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "secret_key", "your-secret-key", DEV_SECRET_KEY}
MIN_SECRET_LENGTH = 32
MIN_TOKEN_LENGTH = 16
# A variable whose name says it holds a secret is never echoed, whatever its value looks like.
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|KEY|TOKEN|CREDENTIAL)(?!_TTL\b)", re.I)
# user:password@ in any URL (greedy to the last @ before white space: a password may hold '/', ',', '@').
_USERINFO = re.compile(r"://[^\s]*@")
# ?password=... style credentials in query strings (libpq, Redis and S3 URLs accept them).
_QUERY_SECRET = re.compile(r"([?&;][^=&\s]*(?:pass|secret|key|token|credential|signature)[^=&\s]*=)[^&\s]*", re.I)


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
class S3Config:
    """``EXPORT_STORAGE=s3://bucket/prefix`` plus the standard AWS variables (shared/storage/s3.py)."""

    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None  # MinIO, R2, Ceph...; None: AWS itself
    access_key_id: str | None = None  # None: botocore's own chain (instance profile, IRSA...)
    secret_access_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    secret_key: str
    # Redis through Sentinel (shared/redis_client.py): the sentinels' (host, port)s and the master's name.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str | None = None
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
    metrics_token: str | None = None  # guards /metrics and the detail of /ready (web/ops_access.py)
    outbox_retention_days: int = 30
    changes_retention_days: int = 30  # the change feed (shared/events.py); an older cursor is 410
    audit_retention_days: int = 365  # the site audit log (shared/audit.py)
    webhook_allow_private: bool = False  # development and tests: http:// and non-public addresses
    webhook_delivery_retention_days: int = 30
    events_max_streams: int = 10  # open /api/v1/events streams per user
    # Protection (web.ratelimit, shared.cache): limits in the `limits` library's notation.
    rate_limits: bool = True
    rate_limit_login: str = "10 per 15 minutes"
    rate_limit_auth_address: str = "100 per 15 minutes"
    rate_limit_auth_email: str = "10 per hour"
    rate_limit_api: str = "600/minute"
    rate_limit_jobs: str = "20/hour"
    rate_limit_invites: str = "50/day"
    max_active_jobs: int = 5
    trusted_proxies: tuple[str, ...] = ()
    cache: bool = True
    cache_ttl: int = 60
    worker_metrics_port: int = 0
    database_pooler: str = "none"
    replica_max_lag_seconds: int = 5
    s3: S3Config | None = None  # set when export_storage is s3://...
    session_cache_seconds: int = 30
    attachment_max_bytes: int = 25 * 1024 * 1024
    attachment_quota_bytes: int = 1024 * 1024 * 1024  # per user, all their files together
    # A query running longer than this fails (and a request answers 503) rather than hanging on a dead peer.
    db_command_timeout: int = 60

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
            redis_sentinels=reader.host_ports("REDIS_SENTINELS"),
            redis_sentinel_master=reader._get("REDIS_SENTINEL_MASTER"),
            # With sentinels, REDIS_URL only contributes the database number and credentials.
            redis_url=reader.url("REDIS_URL", ("redis", "rediss", "unix"),
                                 "redis://sentinel/0" if reader._get("REDIS_SENTINELS") else None),
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
            metrics_token=reader.token("METRICS_TOKEN"),
            outbox_retention_days=reader.integer("OUTBOX_RETENTION_DAYS", cls.outbox_retention_days, 1, 3650),
            changes_retention_days=reader.integer("CHANGES_RETENTION_DAYS", cls.changes_retention_days, 1, 3650),
            audit_retention_days=reader.integer("AUDIT_RETENTION_DAYS", cls.audit_retention_days, 1, 3650),
            webhook_allow_private=reader.switch("WEBHOOK_ALLOW_PRIVATE", cls.webhook_allow_private),
            webhook_delivery_retention_days=reader.integer(
                "WEBHOOK_DELIVERY_RETENTION_DAYS", cls.webhook_delivery_retention_days, 1, 3650),
            events_max_streams=reader.integer("EVENTS_MAX_STREAMS", cls.events_max_streams, 1, 10000),
            rate_limits=reader.switch("RATE_LIMITS", cls.rate_limits),
            rate_limit_login=reader.rate("RATE_LIMIT_LOGIN", cls.rate_limit_login),
            rate_limit_auth_address=reader.rate("RATE_LIMIT_AUTH_ADDRESS", cls.rate_limit_auth_address),
            rate_limit_auth_email=reader.rate("RATE_LIMIT_AUTH_EMAIL", cls.rate_limit_auth_email),
            rate_limit_api=reader.rate("RATE_LIMIT_API", cls.rate_limit_api),
            rate_limit_jobs=reader.rate("RATE_LIMIT_JOBS", cls.rate_limit_jobs),
            rate_limit_invites=reader.rate("RATE_LIMIT_INVITES", cls.rate_limit_invites),
            max_active_jobs=reader.integer("MAX_ACTIVE_JOBS", cls.max_active_jobs, 1, 1000),
            trusted_proxies=reader.cidrs("TRUSTED_PROXIES"),
            cache=reader.switch("CACHE", cls.cache),
            cache_ttl=reader.integer("CACHE_TTL", cls.cache_ttl, 1, 86400),
            worker_metrics_port=reader.integer("WORKER_METRICS_PORT", cls.worker_metrics_port, 0, 65535),
            database_pooler=reader.choice("DATABASE_POOLER", POOLERS, cls.database_pooler),
            replica_max_lag_seconds=reader.integer("REPLICA_MAX_LAG_SECONDS", cls.replica_max_lag_seconds, 0, 3600),
            session_cache_seconds=reader.integer("SESSION_CACHE_SECONDS", cls.session_cache_seconds, 0, 3600),
            attachment_max_bytes=reader.integer("ATTACHMENT_MAX_BYTES", cls.attachment_max_bytes, 1, 2**40),
            attachment_quota_bytes=reader.integer("ATTACHMENT_QUOTA_BYTES", cls.attachment_quota_bytes, 1, 2**50),
            db_command_timeout=reader.integer("DB_COMMAND_TIMEOUT", cls.db_command_timeout, 1, 3600),
        )
        reader.sentinel_pair(settings.redis_sentinels, settings.redis_sentinel_master, settings.redis_url)
        settings = settings.with_(s3=reader.s3(settings.export_storage))
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
            hidden = bool(SECRET_NAME.search(name))  # the reason may quote the value (int() does)
            self.problems.append(f"{redact(name, raw)} is invalid: expected {expected}"
                                 f"{'' if hidden else redact('', reason)}")
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
            try:
                value = int(raw)
            except ValueError:
                raise ValueError("") from None  # int()'s message only repeats the value
            if not low <= value <= high:
                raise ValueError("")
            return value
        return int(self._check(name, default, parse, f"an integer from {low} to {high}"))  # type: ignore[arg-type]

    def switch(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            value = raw.lower()
            if value not in ("on", "off", "true", "false", "1", "0"):
                raise ValueError("")
            return value in ("on", "true", "1")
        return bool(self._check(name, default, parse, "on or off"))

    def rate(self, name: str, default: str) -> str:
        def parse(raw: str) -> str:
            try:
                limits.parse(raw)
            except ValueError:
                raise ValueError("") from None
            return raw
        return str(self._check(name, default, parse, "a rate such as `600/minute` or `10 per 15 minutes`"))

    def cidrs(self, name: str) -> tuple[str, ...]:
        def parse(raw: str) -> tuple[str, ...]:
            parts = [part.strip() for part in raw.split(",") if part.strip()]
            return tuple(str(ipaddress.ip_network(part, strict=False)) for part in parts)
        return self._check(name, (), parse, "comma-separated CIDRs, e.g. 10.0.0.0/8,::1/128")  # type: ignore

    def url(self, name: str, schemes: tuple[str, ...], default: str | None = None) -> str:
        expected = "a URL starting with " + " or ".join(f"{s}://" for s in schemes)
        return str(self._check(name, default, lambda raw: _parse_url(raw, schemes), expected))

    def url_list(self, name: str, schemes: tuple[str, ...]) -> tuple[str, ...]:
        def parse(raw: str) -> tuple[str, ...]:
            return tuple(_parse_url(part.strip(), schemes) for part in _split_urls(raw) if part.strip())
        expected = "comma-separated URLs starting with " + " or ".join(f"{s}://" for s in schemes)
        return self._check(name, (), parse, expected)  # type: ignore[return-value]

    def host_ports(self, name: str) -> tuple[tuple[str, int], ...]:
        def parse(raw: str) -> tuple[tuple[str, int], ...]:
            pairs = []
            for part in filter(None, (p.strip() for p in raw.split(","))):
                host, sep, port = part.rpartition(":")
                if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"{part!r} is not host:port")
                pairs.append((host.strip("[]"), int(port)))
            return tuple(pairs)
        return self._check(name, (), parse, "comma-separated host:port pairs")  # type: ignore[return-value]

    def sentinel_pair(self, sentinels: tuple[tuple[str, int], ...], master: str | None, redis_url: str) -> None:
        if bool(sentinels) != bool(master):
            self.problems.append("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both (the sentinels "
                                 "and the name they monitor the master by), or neither")
        elif sentinels and not redis_url.startswith("redis://"):
            self.problems.append("REDIS_URL must be a redis:// URL when REDIS_SENTINELS is set (it only gives the "
                                 "database number and credentials)")

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

    def token(self, name: str) -> str | None:
        """An optional shared secret: absent is None; present, at least MIN_TOKEN_LENGTH characters."""
        def parse(raw: str) -> str:
            if len(raw) < MIN_TOKEN_LENGTH:
                raise ValueError(f"{len(raw)} characters")
            return raw
        if self._get(name) is None:
            return None
        return str(self._check(name, None, parse, f"at least {MIN_TOKEN_LENGTH} random characters")) or None

    def smtp(self, name: str) -> SmtpConfig | None:
        if self._get(name) is None:  # optional: no SMTP server means mails stay queued in the outbox
            return None
        return self._check(name, None, _parse_smtp,  # type: ignore[return-value]
                           "smtp[s]://[user:password@]host:port[?starttls=1]") or None

    def storage(self, name: str, default: str) -> str:
        def parse(raw: str) -> str:
            if raw.startswith("s3://"):
                _split_s3(raw)
            elif "://" in raw:
                raise ValueError(f"scheme {raw.split('://', 1)[0]!r} is not supported")
            return raw
        return str(self._check(name, default, parse, "a directory path or s3://bucket[/prefix]"))

    def s3(self, storage: str) -> S3Config | None:
        """The AWS variables, read only when EXPORT_STORAGE is an s3:// URL (a bad one is already reported)."""
        try:
            bucket, prefix = _split_s3(storage)
        except ValueError:
            return None
        key_id, secret = self._get("AWS_ACCESS_KEY_ID"), self._get("AWS_SECRET_ACCESS_KEY")
        if (key_id is None) != (secret is None):
            self.problems.append("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: set both, or neither "
                                 "(then botocore's own credential chain is used)")
        endpoint = self._get("AWS_ENDPOINT_URL")
        if endpoint is not None:
            endpoint = self.url("AWS_ENDPOINT_URL", ("http", "https"))
        return S3Config(bucket=bucket, prefix=prefix, region=self.text("AWS_REGION", S3Config.region),
                        endpoint_url=endpoint or None, access_key_id=key_id, secret_access_key=secret)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _split_s3(raw: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    bucket, _, prefix = raw.removeprefix("s3://").partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError("bucket names are 3-63 lowercase letters, digits, dots and hyphens")
    return bucket, prefix.strip("/")


def _split_urls(raw: str) -> list[str]:
    """Comma-separated URLs, where one URL may list several hosts (``postgresql://u@h1:p,h2:p/db``): a piece
    joins the previous one while that is still inside its host list (no path started yet)."""
    parts: list[str] = []
    for piece in raw.split(","):
        previous = parts[-1] if parts else ""
        if previous and "://" not in piece and "/" not in previous.partition("://")[2]:
            parts[-1] = f"{previous},{piece.strip()}"
        else:
            parts.append(piece)
    return parts


def _parse_url(raw: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        raise ValueError(f"scheme {parts.scheme or 'missing'!r}")
    if parts.scheme.startswith("postgres") and "," in parts.netloc:
        # libpq/asyncpg multi-host form: postgresql://user@h1:p1,h2:p2/db (each host checked alone)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        for host in hosts.split(","):
            _parse_url(f"{parts.scheme}://{userinfo}{'@' if userinfo else ''}{host}/", schemes)
        return raw
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


def redact(name: str, raw: str) -> str:
    """``NAME=value`` fit to print: credentials in URLs masked, secret-named variables not shown at all.

    Every configuration message goes through here (``name`` empty: just mask the text).
    """
    if name and SECRET_NAME.search(name):
        return f"{name} (value hidden)"
    masked = _USERINFO.sub("://***@", raw) if "://" in raw else re.sub(r"[^\s'\"(<,]+@", "***@", raw)
    masked = _QUERY_SECRET.sub(r"\1***", masked)
    return f"{name}={masked}" if name else masked


_URL_PASSWORD = re.compile(r"(://[^:@/\s]*):[^@\s]*@")


def mask_password(url: str) -> str:
    """A URL fit to print and to paste (``psql`` needs the user): only a password, and secret-named query
    values, are masked. ``redact`` hides the whole user part instead, for messages about bad values."""
    return _QUERY_SECRET.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", url))


def load_dotenv_file(path: Path = Path(".env")) -> None:
    """Read ``.env`` (development convenience); real environment variables always win."""
    if path.is_file():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)
