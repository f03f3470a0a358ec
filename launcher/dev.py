"""`taskdeck dev`: the whole system on embedded defaults, data under ./var, Ctrl-C stops everything.

Each of PostgreSQL, Redis and SMTP is embedded unless its URL is set (DATABASE_URL, REDIS_URL,
SMTP_URL), in which case that real server is used. Web and worker run as child processes with
exactly the environment a production deployment would give them.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.bootstrap import create_admin
from shared.config import ConfigError, Settings, load_dotenv_file, mask_password
from launcher.devstack import DevStackError, PostgresServer, RedisServer, S3Server, SmtpSink
from shared.db.migrate import migrate

DEV_ADMIN_EMAIL = "admin@taskdeck.localhost"
SLOW_START_SECONDS = 60  # then say what is still awaited (and keep waiting: Ctrl-C stops)


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
    ha: bool = False  # Patroni PostgreSQL pair + Redis Sentinel (shared/dev_ha.py)


def _start_services(var: Path, env: dict[str, str], topology: Topology, started: list[Any]) -> list[Any]:
    """Start what env does not name already, appending each to ``started`` (so a failure can stop those)."""
    if topology.ha:
        from launcher.dev_ha import HaServices

        ha = HaServices(var)
        started.append(ha)  # stopped by the caller even if it fails half-way
        ha.start(env)
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
    if not env.get("REDIS_URL") and not env.get("REDIS_SENTINELS"):
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
            children: list[subprocess.Popen[bytes]], topology: Topology, services: list[Any] = ()) -> str:
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
        f"  mail      {mask_password(mail)}",
        f"  database  {mask_password(env['DATABASE_URL'])}  (primary: every write)",
    ]
    lines += [f"  replica   {mask_password(url)}  (streaming: reads that are current enough)"
              for url in filter(None, env.get("DATABASE_REPLICA_URLS", "").split(","))
              if not topology.ha]
    ha = next((s for s in services if hasattr(s, "banner_lines")), None)
    lines += ha.banner_lines() if ha is not None else [f"  redis     {mask_password(env['REDIS_URL'])}"]
    lines += [
        f"  web       {topology.web_procs} process(es) on port {port}, pid {web.pid}"
        + (" (gunicorn arbiter)" if topology.web_procs > 1 else ""),
        f"  workers   {len(workers)} arq process(es), pid {', '.join(str(w.pid) for w in workers)}",
        f"  exports   {mask_password(env['EXPORT_STORAGE'])}"
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
    if topology.ha and (topology.replica or env.get("DATABASE_URL") or env.get("REDIS_URL")):
        print("taskdeck: --ha runs its own PostgreSQL pair and Redis Sentinel set: unset DATABASE_URL and "
              "REDIS_URL, and leave out --replica (the standby is the replica)", file=sys.stderr)
        return 2
    if topology.replica and env.get("DATABASE_URL"):
        print("taskdeck: --replica clones the embedded PostgreSQL; with DATABASE_URL set, point "
              "DATABASE_REPLICA_URLS at your own replica instead", file=sys.stderr)
        return 2
    services: list[Any] = []
    try:
        _start_services(var, env, topology, services)
    except BaseException as exc:
        for service in reversed(services):
            service.stop()
        if not isinstance(exc, DevStackError):
            raise
        print(f"taskdeck: {exc}", file=sys.stderr)
        return 2
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
        signal.signal(signal.SIGTERM, _interrupt)
        exited = _wait_until_running(_local_url(host, port), children, topology.worker_procs)
        if exited is not None:
            return exited
        print(_banner(host, port, env, admin_password, var, children, topology, services), flush=True)
        return _wait(children, [s.supervise for s in services if hasattr(s, "supervise")])
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


def _local_url(host: str, port: int) -> str:
    """Where this machine reaches the web port (a wildcard bind answers on loopback)."""
    reach = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"


def _running(base: str, workers: int) -> bool:
    """True once the web port answers /ready with 200 and every worker process has a heartbeat."""
    try:
        with urllib.request.urlopen(f"{base}/ready", timeout=2) as response:
            worker = json.load(response)["checks"]["worker"]
    except (OSError, ValueError, KeyError, TypeError):  # not listening yet, 503, or a body mid-change
        return False
    # The count is shown only to METRICS_TOKEN holders; without it, "up" means at least one heartbeat.
    return bool(worker.get("status") == "up" and worker.get("alive", workers) >= workers)


def _wait_until_running(base: str, children: list[subprocess.Popen[bytes]], workers: int) -> int | None:
    """Block until the system answers (the banner says "running" only then); a child's exit code if one died."""
    started = time.monotonic()
    warned = False
    while not _running(base, workers):
        for child in children:
            code = child.poll()
            if code is not None:
                print(f"taskdeck: the {_role(child)} process exited with code {code} while starting; stopping",
                      file=sys.stderr)
                return code or 1
        if not warned and time.monotonic() - started > SLOW_START_SECONDS:
            print(f"taskdeck: still waiting for {base}/ready to report the worker up…", file=sys.stderr, flush=True)
            warned = True
        time.sleep(0.2)
    return None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (e.g. from a supervisor) stops as cleanly as Ctrl-C


def _wait(children: list[subprocess.Popen[bytes]], supervisors: list[Any] = ()) -> int:
    """Block until Ctrl-C/SIGTERM, or until a child dies (then stop the rest and report it)."""
    while True:
        for supervise in supervisors:  # --ha: dead servers are started again and rejoin
            supervise()
        for child in children:
            code = child.poll()
            if code is not None:
                print(f"taskdeck: the {_role(child)} process exited with code {code}; stopping", file=sys.stderr)
                return code or 1
        time.sleep(0.5)
