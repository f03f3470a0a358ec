"""`taskdeck dev`: the whole system on embedded defaults, data under ./var, Ctrl-C stops everything.

Each of PostgreSQL, Redis and SMTP is embedded unless its URL is set (DATABASE_URL, REDIS_URL,
SMTP_URL), in which case that real server is used. Web and worker run as child processes with
exactly the environment a production deployment would give them.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.bootstrap import create_admin
from shared.config import ConfigError, Settings, load_dotenv_file, redact
from launcher.devstack import DevStackError, PostgresServer, RedisServer, S3Server, SmtpSink
from shared.db.migrate import migrate

DEV_ADMIN_EMAIL = "admin@taskdeck.localhost"


def _persistent_secret(path: Path, make: Any) -> str:
    """A value generated once and kept under var/, so tokens and logins survive a restart."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.write_text(value)
    path.chmod(0o600)
    return value


@dataclass(frozen=True)
class Topology:
    """How many of each part `taskdeck dev` runs (the scale-out options; defaults: the smallest system)."""

    replica: bool = False  # an embedded streaming replica of the embedded primary
    web_procs: int = 1
    worker_procs: int = 1
    s3: bool = False  # exports on an embedded S3 endpoint (moto), unless EXPORT_STORAGE is s3:// already


def _start_services(var: Path, env: dict[str, str], topology: Topology) -> list[Any]:
    started: list[Any] = []
    if not env.get("DATABASE_URL"):
        postgres = PostgresServer(var / "postgres")
        postgres.start()
        started.append(postgres)
        postgres.create_database("taskdeck")
        env["DATABASE_URL"] = postgres.dsn("taskdeck")
        if topology.replica:
            replica = PostgresServer(var / "postgres-replica", primary=postgres)  # pg_basebackup the first time
            replica.start()
            started.append(replica)
            env["DATABASE_REPLICA_URLS"] = replica.dsn("taskdeck")
    if not env.get("REDIS_URL"):
        redis = RedisServer(var / "redis")
        redis.start()
        started.append(redis)
        env["REDIS_URL"] = redis.url
    if not env.get("SMTP_URL"):
        smtp = SmtpSink(var / "mail")
        smtp.start()
        started.append(smtp)
        env["SMTP_URL"] = smtp.url
    return started


# --- `--s3`: exports on an S3-compatible endpoint ------------------------------------
DEV_BUCKET = "taskdeck-exports"


def _start_s3(var: Path, env: dict[str, str]) -> list[Any]:
    """An embedded moto endpoint with a bucket, and EXPORT_STORAGE/AWS_* pointing at it.

    An EXPORT_STORAGE that is already s3://... (a real MinIO or bucket) is used as it is. moto keeps
    objects in memory: exports made under --s3 are gone after a restart (their rows then answer 410).
    """
    if os.environ.get("EXPORT_STORAGE", "").startswith("s3://"):
        return []
    server = S3Server(var / "s3.log")
    server.start()
    server.create_bucket(DEV_BUCKET)
    env.update(EXPORT_STORAGE=f"s3://{DEV_BUCKET}/exports", AWS_ENDPOINT_URL=server.url, AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="dev", AWS_SECRET_ACCESS_KEY="dev")
    return [server]
# --- end of --s3 ------------------------------------------------------------------------------


def _spawn(role: str, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "launcher.cli", role, *extra], env=env)


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _banner(host: str, port: int, env: dict[str, str], admin_password: str, var: Path,
            children: list[subprocess.Popen[bytes]], topology: Topology) -> str:
    base = f"http://{host}:{port}"
    mail = str(var / "mail") if "127.0.0.1" in env["SMTP_URL"] and not os.environ.get("SMTP_URL") else env["SMTP_URL"]
    web, workers = children[0], children[1:]
    lines = [
        "", "Taskdeck is running (Ctrl-C stops everything):",
        f"  app       {base}/",
        f"  API docs  {base}/api/docs",
        f"  ready     {base}/ready",
        f"  metrics   {base}/metrics",
        # A real server's URL may carry its password (`taskdeck dev` honours DATABASE_URL etc.).
        f"  mail      {redact('', mail)}",
        f"  database  {redact('', env['DATABASE_URL'])}  (primary: every write)",
    ]
    lines += [f"  replica   {redact('', url)}  (streaming: reads that are current enough)"
              for url in filter(None, env.get("DATABASE_REPLICA_URLS", "").split(","))]
    lines += [
        f"  redis     {redact('', env['REDIS_URL'])}",
        f"  web       {topology.web_procs} process(es) on port {port}, pid {web.pid}"
        + (" (gunicorn arbiter)" if topology.web_procs > 1 else ""),
        f"  workers   {len(workers)} arq process(es), pid {', '.join(str(w.pid) for w in workers)}",
        f"  exports   {redact('', env['EXPORT_STORAGE'])}"
        + (f" at {env['AWS_ENDPOINT_URL']}" if env.get("AWS_ENDPOINT_URL") else ""),
        f"  admin     {DEV_ADMIN_EMAIL} / {admin_password}", "",
    ]
    return "\n".join(lines)


def _role(child: subprocess.Popen[bytes]) -> str:
    return str(child.args[3]) if isinstance(child.args, list) else str(child.args)


def run_dev(host: str = "127.0.0.1", port: int = 8080, var_dir: str = "var", topology: Topology = Topology()) -> int:
    load_dotenv_file()
    var = Path(var_dir).resolve()
    var.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("TASKDECK_ENV", "development")
    env.setdefault("SECRET_KEY", _persistent_secret(var / "secret_key", lambda: secrets.token_urlsafe(48)))
    env.setdefault("EXPORT_STORAGE", str(var / "exports"))
    env.setdefault("PUBLIC_URL", f"http://{host}:{port}")
    admin_password = _persistent_secret(var / "dev_admin_password", lambda: secrets.token_urlsafe(12))
    if topology.replica and env.get("DATABASE_URL"):
        print("taskdeck: --replica clones the embedded PostgreSQL; with DATABASE_URL set, point "
              "DATABASE_REPLICA_URLS at your own replica instead", file=sys.stderr)
        return 2
    services = _start_services(var, env, topology)
    if topology.s3:
        try:
            services += _start_s3(var, env)
        except DevStackError as exc:  # e.g. moto not installed: say so, and stop what already runs
            print(f"taskdeck: {exc}", file=sys.stderr)
            for service in reversed(services):
                service.stop()
            return 2
    children: list[subprocess.Popen[bytes]] = []
    try:
        settings = Settings.from_env(env)
        asyncio.run(migrate(settings.database_url))
        asyncio.run(create_admin(settings, email=DEV_ADMIN_EMAIL, password=admin_password))
        children = [_spawn("web", env, "--host", host, "--port", str(port), "--procs", str(topology.web_procs))]
        children += [_spawn("worker", env) for _ in range(topology.worker_procs)]
        print(_banner(host, port, env, admin_password, var, children, topology), flush=True)
        return _wait(children)
    except ConfigError as exc:
        print("\n".join(f"taskdeck: configuration error: {p}" for p in exc.problems), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_children(children)
        for service in reversed(services):
            service.stop()
        print("Taskdeck stopped; data kept in " + str(var), flush=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (e.g. from a supervisor) stops as cleanly as Ctrl-C


def _wait(children: list[subprocess.Popen[bytes]]) -> int:
    """Block until Ctrl-C/SIGTERM, or until a child dies (then stop the rest and report it)."""
    signal.signal(signal.SIGTERM, _interrupt)
    while True:
        for child in children:
            code = child.poll()
            if code is not None:
                print(f"taskdeck: the {_role(child)} process exited with code {code}; stopping", file=sys.stderr)
                return code or 1
        time.sleep(0.5)
