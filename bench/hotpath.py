"""Taskdeck's hot path against a bare aiohttp + asyncpg app, side by side in one run. Not a test: asserts nothing.

    python bench/hotpath.py            # ~5 minutes: 3 interleaved rounds of 6 s per target, wrk -t2 -c64
    python bench/hotpath.py --quick    # ~1 minute smoke run: 1 round of 2 s
    python bench/hotpath.py --rounds 3 --duration 8 --json /tmp/hotpath.json
    python bench/hotpath.py --bare-uvloop          # the bare app on uvloop too (Taskdeck always is)
    python bench/hotpath.py --profile /tmp/stacks.txt [--profile-request list|get|post]   # py-spy instead

Starts embedded PostgreSQL + Redis (launcher.devstack), migrates, seeds one user with 1,000 tasks (in their
Inbox) and a second user who is a member of 50 projects of 200 tasks each (the many-projects row), then
starts Taskdeck as shipped (`python -m launcher.cli web`: logs at INFO, metrics, request ids, rate limits
on with generous limits, the session check) with one and with two processes, and bench/bare.py with one
and with two reuse_port processes. wrk (C, over loopback) drives one target at a time; Taskdeck and bare
alternate within every round and the order flips each round, so drift on a shared machine hits both.
Only 2xx answers count as requests/s. Ratios are the median of the per-round ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import bcrypt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launcher.devstack import PostgresServer, RedisServer, free_port  # noqa: E402
from shared.db.migrate import migrate  # noqa: E402

EMAIL, PASSWORD = "bench@example.com", "correct horse battery staple"
# A member of many shared projects: the list merges one page per project (shared/tasks.py SELECT_PAGE).
MANY_EMAIL, MANY_PROJECTS, MANY_TASKS = "many@example.com", 50, 200
TASK_BODY = {"title": "Benchmark task", "description": "Created by bench/hotpath.py", "priority": "high",
             "tags": ["bench", "load"], "due_at": "2030-01-01T12:00:00Z"}
# Rate limiting stays on (the middleware and its Redis calls run on every request); the limits are only
# set high enough that a benchmark is not answered with 429s.
GENEROUS_LIMITS = {"RATE_LIMIT_API": "100000000/minute", "RATE_LIMIT_LOGIN": "100000000 per 15 minutes",
                   "RATE_LIMIT_AUTH_ADDRESS": "100000000 per 15 minutes", "RATE_LIMIT_JOBS": "100000/hour"}
SEED = """
INSERT INTO tasks (owner_id, title, description, status, priority, due_at, tags, created_at, completed_at)
SELECT $1, 'Seeded task ' || i, 'Seeded by bench/hotpath.py, task number ' || i,
       (ARRAY['todo','in_progress','done'])[1 + i % 3]::task_status,
       (ARRAY['low','medium','high','urgent'])[1 + i % 4]::task_priority,
       CASE WHEN i % 5 = 0 THEN NULL ELSE now() + (i % 90 - 30) * interval '1 day' END,
       ARRAY['tag' || (i % 7)], now() - i * interval '1 minute',
       CASE WHEN i % 3 = 2 THEN now() - i * interval '1 minute' END
FROM generate_series(1, $2) AS i
"""
WRK_SCRIPT = """
wrk.method = {method}
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('@@{{"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"p50_us":%d,"p99_us":%d}}\\n', summary.requests, summary.duration, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Result:
    rps: float  # 2xx answers per second
    p50_ms: float
    p99_ms: float
    non2xx: int
    timeouts: int
    cpu_us: float | None = None  # CPU time (user + system) the one server process spent per 2xx answer


@dataclass
class Row:
    name: str
    target: str
    taskdeck: list[Result] = field(default_factory=list)
    bare: list[Result] = field(default_factory=list)
    note: str = ""
    as_many: bool = False  # requests as the member of MANY_PROJECTS projects

    def ratios(self) -> list[float]:
        return [t.rps / b.rps for t, b in zip(self.taskdeck, self.bare) if b.rps]


def wrk(url: str, method: str = "GET", body: Any = None, token: str | None = None, *, seconds: float,
        connections: int, threads: int = 2, timeout: int = 10) -> "subprocess.Popen[str]":
    """Start wrk on ``url``; ``collect()`` its Result. Runs in the background so two can overlap."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, prefix="hotpath-")
    script.write(WRK_SCRIPT.format(method=json.dumps(method), body=json.dumps(json.dumps(body)) if body else "nil",
                                   auth=f'wrk.headers["Authorization"] = {json.dumps("Bearer " + token)}'
                                   if token else ""))
    script.close()
    process = subprocess.Popen(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                                f"--timeout={timeout}s", "-s", script.name, url],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process.script = script.name  # type: ignore[attr-defined]
    return process


def collect(process: "subprocess.Popen[str]") -> Result:
    out, _ = process.communicate()
    os.unlink(process.script)  # type: ignore[attr-defined]
    line = next((line for line in out.splitlines() if line.startswith("@@")), None)
    if line is None:
        raise SystemExit(f"wrk failed:\n{out}")
    data = json.loads(line[2:])
    ok = data["requests"] - data["non2xx"]
    return Result(rps=ok / (data["duration_us"] / 1e6), p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
                  non2xx=data["non2xx"], timeouts=data["timeout"])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run(url: str, method: str = "GET", body: Any = None, token: str | None = None, pid: int | None = None,
        **kwargs: Any) -> Result:
    """One wrk run; with ``pid``, also the server's CPU per answer (robust to a busy machine, unlike rps)."""
    before = cpu_seconds(pid) if pid else 0.0
    result = collect(wrk(url, method, body, token, **kwargs))
    if pid and result.rps:
        result.cpu_us = (cpu_seconds(pid) - before) * 1e6 / (result.rps * kwargs["seconds"])
    return result


class Stack:
    """PostgreSQL, Redis, Taskdeck (1 and 2 processes) and bare (1 and 2 processes), all under one temp dir."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="taskdeck-hotpath-"))
        os.chmod(self.base, 0o755)  # postgres runs as nobody when we are root
        self.postgres, self.redis = PostgresServer(self.base / "pg"), RedisServer(self.base / "redis")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.secret = secrets.token_urlsafe(48)

    def start_servers(self) -> str:
        self.postgres.start()
        self.redis.start()
        self.postgres.create_database("taskdeck_bench")
        self.dsn = self.postgres.dsn("taskdeck_bench")
        asyncio.run(migrate(self.dsn))
        return self.dsn

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.base / f"{name}.log", "ab") as log:
            process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                       stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def taskdeck(self, name: str, procs: int) -> tuple[str, list[subprocess.Popen[bytes]], str]:
        """`taskdeck web` as shipped; with procs=2, `--procs 2` when this build has it, else 2 reuse_port processes."""
        port = free_port()
        multiproc = self.base / f"{name}-metrics"
        multiproc.mkdir()
        env = {"DATABASE_URL": self.dsn, "REDIS_URL": self.redis.url, "SECRET_KEY": self.secret,
               "TASKDECK_ENV": "production", "LOG_LEVEL": "INFO", "ACCESS_TOKEN_TTL": "3600",
               "EXPORT_STORAGE": str(self.base / "exports"), **GENEROUS_LIMITS}
        if procs > 1:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
        cmd = [sys.executable, "-m", "launcher.cli", "web", "--port", str(port)]
        if procs == 1:
            return f"http://127.0.0.1:{port}", [self.spawn(name, cmd, env)], "one process"
        if "--procs" in subprocess.run(cmd[:4] + ["--help"], cwd=ROOT, capture_output=True, text=True,
                                       env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout:
            return f"http://127.0.0.1:{port}", [self.spawn(name, cmd + ["--procs", str(procs)], env)], "--procs 2"
        spawned = [self.spawn(f"{name}-{i}", cmd + ["--reuse-port"], env) for i in range(procs)]
        return f"http://127.0.0.1:{port}", spawned, "2 reuse_port processes (no --procs in this build)"

    def bare(self, name: str, procs: int, uvloop: bool = False) -> tuple[str, int]:
        port = free_port()
        # --secret=VALUE as one token: a urlsafe secret may start with "-"
        cmd = [sys.executable, str(ROOT / "bench" / "bare.py"), "--port", str(port), "--dsn", self.dsn,
               f"--secret={self.secret}"] + (["--reuse-port"] if procs > 1 else []) + (["--uvloop"] if uvloop else [])
        for i in range(procs):
            process = self.spawn(f"{name}-{i}", cmd)
        return f"http://127.0.0.1:{port}", process.pid

    def wait_healthy(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in self.base.glob("*.log"))
                    raise SystemExit(f"a server exited ({process.args}):\n{logs}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{url} did not become healthy")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis.stop()
        self.postgres.stop()
        shutil.rmtree(self.base, ignore_errors=True)


async def seed(dsn: str, count: int) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        # Cost 12 = the shipped BCRYPT_ROUNDS default: the login row pays what a real login pays.
        password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()
        user_id = await conn.fetchval("INSERT INTO users (email, name, password_hash, email_verified) "
                                      "VALUES ($1, 'Bench', $2, true) RETURNING id", EMAIL, password_hash)
        await conn.execute(SEED, user_id, count)
        # The many-projects member: each project owned by someone else, 200 tasks in each, created by them
        # (owner_id = the member, so the bare app's owner-only query lists the very same rows).
        many_id = await conn.fetchval("INSERT INTO users (email, name, password_hash, email_verified) "
                                      "VALUES ($1, 'Many', $2, true) RETURNING id", MANY_EMAIL, password_hash)
        for n in range(MANY_PROJECTS):
            project_id = await conn.fetchval("INSERT INTO projects (name, owner_id) VALUES ($1, $2) RETURNING id",
                                             f"Shared {n}", user_id)
            await conn.execute("INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, 'owner'), "
                               "($1, $3, 'editor')", project_id, user_id, many_id)
            await conn.execute(SEED.replace("INSERT INTO tasks (owner_id,", "INSERT INTO tasks (project_id, owner_id,")
                               .replace("SELECT $1,", "SELECT $3, $1,"), many_id, MANY_TASKS, project_id)
        await conn.execute("ANALYZE tasks, project_members, projects")
        return int(await conn.fetchval("SELECT id FROM tasks WHERE owner_id = $1 ORDER BY id OFFSET $2 LIMIT 1",
                                       user_id, count // 2))
    finally:
        await conn.close()


def login(url: str, email: str = EMAIL) -> str:
    request = urllib.request.Request(url + "/api/v1/auth/login", json.dumps({"email": email, "password": PASSWORD})
                                     .encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def has_cache(url: str, token: str) -> bool:
    """True when this build caches the first page: /metrics then has a cache family that counted our reads."""
    for _ in range(3):
        request = urllib.request.Request(url + "/api/v1/tasks", headers={"Authorization": f"Bearer {token}"})
        urllib.request.urlopen(request, timeout=10).read()
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return any(line.startswith("taskdeck_cache") and "hit" in line and not line.rstrip().endswith(" 0.0")
               for line in text.splitlines())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fmt(results: list[Result]) -> str:
    if not results:
        return "-"
    rps = statistics.median(r.rps for r in results)
    p50 = statistics.median(r.p50_ms for r in results)
    p99 = statistics.median(r.p99_ms for r in results)
    bad = sum(r.non2xx + r.timeouts for r in results)
    cpu = [r.cpu_us for r in results if r.cpu_us]
    return (f"{rps:6,.{0 if rps >= 100 else 1}f} rps p50 {p50:5.1f} p99 {p99:5.1f} ms"
            + (f" {statistics.median(cpu):4.0f} us" if cpu else "")
            + (f" ({bad} non-2xx/timeouts)" if bad else ""))


def profile(url: str, pid: int, token: str, path: str, seconds: float, connections: int,
            request: tuple[str, str, Any]) -> None:
    """py-spy (sampling, from outside: the server runs unmodified) while wrk drives ``request``."""
    method, target, body = request
    run(url + target, method, body, token, seconds=2, connections=connections)
    spy = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", "250", "--duration", str(int(seconds)),
                            "--format", "raw", "--output", path, "--nonblocking", "--function"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = run(url + target, method, body, token, pid=pid, seconds=seconds, connections=connections)
    spy.wait()
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        samples += n
        frames = [re.sub(r"\(/\S*/(?:site-packages|python3\.\d+)/", "(", f.replace(str(ROOT) + "/", ""))
                  for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + n
    print(f"{method} {target} under py-spy: {fmt([result])}; {samples} samples of process {pid}")
    for title, table in (("own time (where the CPU is)", own), ("total time (including callees)", total)):
        print(f"\n{title}:")
        for frame, n in sorted(table.items(), key=lambda item: -item[1])[:25]:
            print(f"  {100 * n / samples:5.1f} %  {frame}")


def report(args: argparse.Namespace, rows: list[Row], post: Row, two: Row, logins: Row, login_results: list[Result],
           cached: bool, rss: float) -> None:
    def median(values: Any) -> float:
        values = list(values)
        return statistics.median(values) if values else float("nan")

    def p99(results: list[Result]) -> float:
        return median(r.p99_ms for r in results)

    by_name = {row.name: row for row in rows}
    targets = {"list limit=20": 1.0, "list limit=100": 1.2, "get by id": 1.0, "cached first page": 1.5,
               "POST /tasks (insert)": 0.8}
    print(f"\nwrk -t2 -c{args.connections}, {args.rounds} interleaved round(s) x {args.duration:g} s, {args.tasks} "
          "tasks, one user; only 2xx counted; ratio = median of the per-round Taskdeck/bare ratios; "
          "us = server CPU per answer")
    print(f"{'row':27} {'Taskdeck':44} {'bare':44} {'ratio':>6}  target")
    for row in rows + [post, two]:
        ratio = median(row.ratios())
        goal = targets.get(row.name)
        verdict = ""
        if goal is not None:
            verdict = f">= {goal:.1f}x " + ("ok" if ratio >= goal else "MISSED")
            if row.name == "list limit=20":
                verdict += f"; p99 <= bare's: {'ok' if p99(row.taskdeck) <= p99(row.bare) else 'MISSED'}"
        print(f"{row.name:27} {fmt(row.taskdeck):44} {fmt(row.bare):44} {ratio:5.2f}x  {verdict}")
    one = by_name["list limit=20"]
    for many_name, one_name in ((f"list, {MANY_PROJECTS} projects x {MANY_TASKS}", "list limit=20"),
                                (f"uncached, {MANY_PROJECTS} projects", "list limit=20 uncached")):
        many, single = by_name[many_name], by_name[one_name]
        print(f"{'  ' + many_name[:25]:27} p99 {p99(many.taskdeck):.1f} ms vs {p99(single.taskdeck):.1f} ms of "
              f"'{one_name}': {p99(many.taskdeck) / p99(single.taskdeck):.2f}x "
              f"(<= 2x: {'ok' if p99(many.taskdeck) <= 2 * p99(single.taskdeck) else 'MISSED'})")
    scale_td = median(t.rps / o.rps for t, o in zip(two.taskdeck, one.taskdeck))
    scale_bare = median(t.rps / o.rps for t, o in zip(two.bare, one.bare))
    print(f"{'1 -> 2 procs scaling':27} Taskdeck {scale_td:.2f}x, bare {scale_bare:.2f}x ({two.note}) "
          f"{'ok' if scale_td >= scale_bare else 'MISSED'}")
    kept = median(t.rps / o.rps for t, o in zip(logins.taskdeck, one.taskdeck))
    timeouts = sum(r.timeouts for r in logins.taskdeck)
    print(f"{'list + 50 logins running':27} {fmt(logins.taskdeck):44} {kept:.2f}x of the unloaded list, "
          f"{timeouts} list timeouts: {'ok' if kept >= 0.5 and not timeouts else 'MISSED'}")
    print(f"{'  the logins themselves':27} {fmt(login_results)} (cost 12; they queue for the bcrypt threads)")
    if not cached:
        print("cached first page: not measured, this build has no cache (no taskdeck_cache_* hits in /metrics)")
    print(f"RSS of the one-process Taskdeck after the benchmark: {rss:.0f} MB "
          f"(<= 100 MB: {'ok' if rss <= 100 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=6, help="seconds per target per round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--bare-uvloop", action="store_true", help="run the bare app on uvloop too "
                        "(Taskdeck always runs on it; the plain bare app is the issue's baseline)")
    parser.add_argument("--profile", metavar="PATH", help="instead: py-spy the one-process Taskdeck under the "
                        "list limit=20 load, print the top of the profile, keep the collapsed stacks at PATH")
    parser.add_argument("--profile-request", choices=("list", "get", "post"), default="list")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    started = time.monotonic()
    stack = Stack()
    try:
        dsn = stack.start_servers()
        task_id = asyncio.run(seed(dsn, args.tasks))
        td1, (td1_proc, *_), _ = stack.taskdeck("taskdeck-1", 1)
        td2, _, td2_how = stack.taskdeck("taskdeck-2", 2)
        (bare1, bare1_pid), (bare2, _) = (stack.bare("bare-1", 1, args.bare_uvloop),
                                          stack.bare("bare-2", 2, args.bare_uvloop))
        pids = {td1: td1_proc.pid, bare1: bare1_pid}
        for url in (td1, td2, bare1, bare2):
            stack.wait_healthy(url)
        token, many_token = login(td1), login(td1, MANY_EMAIL)
        tokens = {False: token, True: many_token}
        cached = has_cache(td1, token)
        if args.profile:
            request = {"list": ("GET", "/api/v1/tasks?limit=20", None), "post": ("POST", "/api/v1/tasks", TASK_BODY),
                       "get": ("GET", f"/api/v1/tasks/{task_id}", None)}[args.profile_request]
            return profile(td1, td1_proc.pid, token, args.profile, max(args.duration, 10), args.connections, request)
        rows = [Row("list limit=20", "/api/v1/tasks?limit=20"), Row("list limit=100", "/api/v1/tasks?limit=100"),
                Row("get by id", f"/api/v1/tasks/{task_id}")]
        if cached:  # the default query: the page the cache serves (bare: the same rows, uncached)
            rows.append(Row("cached first page", "/api/v1/tasks"))
        # The many-projects member's first page, cached (?limit=20 is the default query) and uncached (another
        # sort: the query runs, one LATERAL per project), against the one-project user's same two queries.
        rows.append(Row(f"list, {MANY_PROJECTS} projects x {MANY_TASKS}", "/api/v1/tasks?limit=20", as_many=True))
        rows.append(Row("list limit=20 uncached", "/api/v1/tasks?limit=20&sort=-updated_at"))
        rows.append(Row(f"uncached, {MANY_PROJECTS} projects", "/api/v1/tasks?limit=20&sort=-updated_at",
                        as_many=True))
        post = Row("POST /tasks (insert)", "/api/v1/tasks")
        two = Row("list limit=20, 2 procs", "/api/v1/tasks?limit=20", note=td2_how)
        logins = Row("list limit=20 + 50 logins", "/api/v1/tasks?limit=20")
        login_results: list[Result] = []
        seconds, conns = args.duration, args.connections
        for url in (td1, td2, bare1, bare2):  # warm-up: connections, pools, statement caches
            run(url + "/api/v1/tasks?limit=20", token=token, seconds=1, connections=conns)
        for round_no in range(args.rounds):
            pairs = [(row, td1, bare1) for row in rows] + [(two, td2, bare2)]
            for row, td, bare in pairs:
                order = [(row.taskdeck, td), (row.bare, bare)]
                for results, url in order if round_no % 2 == 0 else reversed(order):
                    results.append(run(url + row.target, token=tokens[row.as_many],
                                       pid=pids.get(url), seconds=seconds, connections=conns))
            for results, url in [(post.taskdeck, td1), (post.bare, bare1)][::1 if round_no % 2 == 0 else -1]:
                results.append(run(url + post.target, "POST", TASK_BODY, token, pid=pids.get(url), seconds=seconds,
                                   connections=conns))
            # 50 logins (bcrypt, cost 12) hammer the same process while it serves the list; their own
            # latency is long by design (they queue for the bcrypt threads), so they get a long timeout.
            login_run = wrk(td1 + "/api/v1/auth/login", "POST", {"email": EMAIL, "password": PASSWORD},
                            seconds=seconds + 1, connections=50, threads=1, timeout=60)
            time.sleep(0.5)
            logins.taskdeck.append(run(td1 + logins.target, token=token, seconds=seconds, connections=conns))
            login_results.append(collect(login_run))
            print(f"round {round_no + 1}/{args.rounds} done ({time.monotonic() - started:.0f} s)", flush=True)
        rss = rss_mb(td1_proc.pid)
    finally:
        stack.stop()

    report(args, rows, post, two, logins, login_results, cached, rss)
    print(f"total {time.monotonic() - started:.0f} s. Shared machine: absolute numbers are noise, ratios count.")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rows": {row.name: {"taskdeck": [vars(r) for r in row.taskdeck], "bare": [vars(r) for r in row.bare]}
                     for row in rows + [post, two, logins]},
            "logins": [vars(r) for r in login_results], "rss_mb": rss, "cached": cached}, indent=1))


if __name__ == "__main__":
    main()
