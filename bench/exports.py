"""Benchmark of the export worker. Not a test: asserts nothing, prints numbers.

    python bench/exports.py                     # starts PostgreSQL + Redis itself (launcher.devstack)
    python bench/exports.py --csv-rows 200000 --pdf-rows 20000
    DATABASE_URL=... REDIS_URL=... python bench/exports.py   # existing servers (creates a bench user)

Seeds one user with N realistic tasks (titles and descriptions of varied length, tags, due dates),
then runs each export through a real arq worker in this process (burst mode, the same job function
production runs) and prints:

- worker time: the job row's started_at -> finished_at (claim, count, cursor, write, rename, commit);
- total: enqueue to worker exit, including the worker's start-up;
- peak RSS growth: the process's peak resident memory during the job minus its resident memory just
  before (Linux: VmHWM after resetting it through /proc/self/clear_refs; else sampled every 5 ms).

Targets: CSV of 100,000 tasks <= 3 s and < 50 MB RSS growth; PDF of 10,000 rows <= 8 s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from arq import create_pool  # noqa: E402
from arq.connections import RedisSettings  # noqa: E402

from shared import exports  # noqa: E402
from shared.config import Settings  # noqa: E402
from launcher.devstack import PostgresServer, RedisServer  # noqa: E402
from shared.db.migrate import migrate  # noqa: E402
from worker.jobs import exports as export_jobs  # noqa: E402
from worker.settings import WorkerSettings, build_worker  # noqa: E402

SECRET = "bench-secret-key-that-is-long-enough-for-hs256-0123456789"
# Words of varied length, so wrapping and CSV quoting do real work.
SEED_TASKS = """
INSERT INTO tasks (owner_id, title, description, status, priority, due_at, tags, completed_at)
SELECT $1,
       'Task ' || n || ': ' || substr(repeat('prepare review ship call plan write fix ', 6), 1 + n % 40, 20 + n % 90),
       CASE WHEN n % 3 = 0 THEN '' ELSE substr(repeat('Notes, with "quotes", commas and a line
break; then more words about the work to do. ', 8), 1, (n * 37) % 400) END,
       s.status::task_status, (ARRAY['low','medium','high','urgent'])[1 + n % 4]::task_priority,
       CASE WHEN n % 5 = 0 THEN NULL ELSE now() + (n % 600 - 300) * interval '1 hour' END,
       CASE n % 4 WHEN 0 THEN ARRAY['work'] WHEN 1 THEN ARRAY['home', 'errands'] WHEN 2 THEN ARRAY[]::text[]
                  ELSE ARRAY['q4', '=formula'] END,
       CASE WHEN s.status = 'done' THEN now() END
FROM generate_series(1, $2) AS n,
     LATERAL (SELECT (ARRAY['todo','in_progress','done'])[1 + n % 3] AS status) AS s
"""


class PeakRss:
    """Peak resident set size of this process during a block, in bytes above the level at its start."""

    def __init__(self) -> None:
        self.growth = 0
        self._stop = threading.Event()
        self._peak = 0

    @staticmethod
    def _status(field: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._status("VmRSS") or 0)

    def __enter__(self) -> "PeakRss":
        self.start = self._status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self._hwm = True
        except OSError:
            self._hwm = False
        self._peak = self.start
        # Sampling only where the kernel cannot tell the peak: the thread competes for the GIL.
        self._thread = None if self._hwm else threading.Thread(target=self._sample, daemon=True)
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        peak = (self._status("VmHWM") or 0) if self._hwm else self._peak
        self.growth = max(0, peak - self.start)


@contextmanager
def servers() -> Iterator[tuple[str, str]]:
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        yield os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
        return
    base = Path(tempfile.mkdtemp(prefix="taskdeck-bench-exports-"))
    os.chmod(base, 0o755)  # postgres runs as nobody when we are root
    postgres, redis = PostgresServer(base / "pg"), RedisServer(base / "redis")
    try:
        postgres.start()
        redis.start()
        postgres.create_database("bench")
        yield postgres.dsn("bench"), redis.url
    finally:
        redis.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)


async def seed(dsn: str, rows: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        user_id = await conn.fetchval(
            "INSERT INTO users (email, name, password_hash, email_verified) VALUES ($1, 'Bench', 'x', true) "
            "RETURNING id", f"bench-{time.time_ns()}@example.com")
        await conn.execute(SEED_TASKS, user_id, rows)
        await conn.execute("ANALYZE all_tasks")
        return user_id
    finally:
        await conn.close()


async def run_export(settings: Settings, user_id: int, fmt: str, filters: dict[str, Any]) -> dict[str, Any]:
    conn = await asyncpg.connect(settings.database_url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    redis = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        async with conn.transaction():
            job = await exports.create_job(conn, owner_id=user_id, kind=exports.EXPORT, format=fmt, params=filters)
        await exports.enqueue(redis, job)
        worker = build_worker(settings, functions=[*WorkerSettings.functions, *export_jobs.FUNCTIONS],
                              cron_jobs=None, burst=True, poll_delay=0.01)
        started = time.perf_counter()
        with PeakRss() as rss:
            try:
                await worker.async_run()
            finally:
                await worker.close()
        total = time.perf_counter() - started
        row = await conn.fetchrow("SELECT status, error, row_count, size_bytes, "
                                  "extract(epoch FROM finished_at - started_at) AS seconds FROM jobs WHERE id = $1",
                                  job["id"])
        return {**dict(row), "total": total, "rss_growth": rss.growth}
    finally:
        await redis.aclose()
        await conn.close()


def report(name: str, result: dict[str, Any], target_seconds: float, target_mb: float | None) -> None:
    mb = result["rss_growth"] / 2**20
    verdict = "OK" if result["status"] == "succeeded" and result["seconds"] <= target_seconds and (
        target_mb is None or mb < target_mb) else "MISSED"
    print(f"{name:<22} {result['status']:<10} rows={result['row_count']:>7,} size={result['size_bytes'] or 0:>11,} B "
          f"worker={float(result['seconds'] or 0):6.2f} s total={result['total']:6.2f} s "
          f"peak RSS growth={mb:6.1f} MB  target <= {target_seconds} s"
          + (f", < {target_mb} MB" if target_mb else "") + f"  {verdict}"
          + (f"  error: {result['error']}" if result["error"] else ""))


async def main(args: argparse.Namespace) -> None:
    with servers() as (dsn, redis_url):
        await migrate(dsn)
        storage = Path(tempfile.mkdtemp(prefix="taskdeck-bench-files-"))
        settings = Settings(environment="test", database_url=dsn, redis_url=redis_url, secret_key=SECRET,
                            export_storage=str(storage), db_pool_min=1, db_pool_max=5, log_level="WARNING")
        try:
            csv_user = await seed(dsn, args.csv_rows)
            pdf_user = await seed(dsn, args.pdf_rows)
            print(f"seeded {args.csv_rows:,} + {args.pdf_rows:,} tasks; rl_accel: {_rl_accel()}")
            await run_export(settings, csv_user, "csv", {"tag": "warm-up"})  # imports, pools, plans
            report("CSV, all tasks", await run_export(settings, csv_user, "csv", {}), 3.0, 50.0)
            report("PDF, all tasks", await run_export(settings, pdf_user, "pdf", {}), 8.0, None)
        finally:
            shutil.rmtree(storage, ignore_errors=True)


def _rl_accel() -> str:
    from reportlab.lib import rl_accel

    return "C" if type(rl_accel.instanceStringWidthTTF).__name__ == "builtin_function_or_method" else "pure Python"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--pdf-rows", type=int, default=10_000)
    asyncio.run(main(parser.parse_args()))
