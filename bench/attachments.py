"""Attachments and recurring completion, against Taskdeck as shipped. Not a test: asserts nothing, prints numbers.

    python bench/attachments.py               # ~1 minute: both storages, then the completion rps
    python bench/attachments.py --size-mib 25 --seconds 6

1. Web RSS for a 25 MiB upload and download, on the directory storage and on S3 (moto's server mode, the
   embedded endpoint of `taskdeck dev --s3`): the web process's peak resident memory (VmHWM, reset through
   /proc/<pid>/clear_refs just before) minus its resident memory just before. Target: < 32 MiB each.
   The client streams the file from disk and discards the download, in this process, not the server's.
2. Completing a recurring task (FREQ=DAILY, first due 20 years ago: every completion computes the next
   occurrence and reopens it) against completing a plain task, PATCH {"status": "done"} under wrk, the
   two alternating over rounds; the ratio is the median of the per-round ratios. Target: within 10 %.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

from hotpath import Stack, login, run, seed  # noqa: E402
from launcher.devstack import S3Server  # noqa: E402

MiB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak(pid: int) -> int:
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kib(pid, "VmRSS")


def api(url: str, token: str, method: str, path: str, body: object) -> dict:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def upload_download(url: str, token: str, pid: int, path: Path) -> tuple[float, float, float, float]:
    """(upload MiB of growth, seconds, download MiB of growth, seconds)."""
    task = api(url, token, "POST", "/api/v1/tasks", {"title": "bench attachment"})
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        before = reset_peak(pid)
        started = time.perf_counter()
        with path.open("rb") as file:
            form = aiohttp.FormData()
            form.add_field("file", file, filename="bench.bin", content_type="application/octet-stream")
            async with session.post(f"{url}/api/v1/tasks/{task['id']}/attachments", data=form,
                                    headers=headers) as response:
                created = await response.json()
                assert response.status == 201, created
        up_seconds = time.perf_counter() - started
        up = (status_kib(pid, "VmHWM") - before) / 1024
        before = reset_peak(pid)
        started = time.perf_counter()
        received = 0
        async with session.get(url + created["download_url"], headers=headers) as response:
            async for chunk in response.content.iter_chunked(256 * 1024):
                received += len(chunk)
        down_seconds = time.perf_counter() - started
        down = (status_kib(pid, "VmHWM") - before) / 1024
        assert received == path.stat().st_size
    return up, up_seconds, down, down_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stack = Stack()
    s3 = S3Server(stack.base / "moto.log")
    try:
        dsn = stack.start_servers()
        asyncio.run(seed(dsn, 100))
        s3.start()
        s3.create_bucket("bench")
        data = Path(tempfile.mkdtemp(dir=stack.base)) / "file.bin"
        with data.open("wb") as file:
            for _ in range(args.size_mib):
                file.write(bytes(range(256)) * 4096)
        print(f"{args.size_mib} MiB upload + download, web process RSS growth (peak - before):")
        for storage, env in (("directory", {}), ("s3", {
                "EXPORT_STORAGE": "s3://bench/attachments", "AWS_ENDPOINT_URL": s3.url,
                "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})):
            url, processes = taskdeck_with(stack, f"web-{storage}", env)
            stack.wait_healthy(url)
            token = login(url)
            up, up_s, down, down_s = asyncio.run(upload_download(url, token, processes[0].pid, data))
            print(f"  {storage:9}  upload {up:6.1f} MiB in {up_s:5.2f} s   download {down:6.1f} MiB in {down_s:5.2f} s")
            if storage == "directory":
                completion_rps(url, token, args)
    finally:
        s3.stop()
        stack.stop()


def taskdeck_with(stack: Stack, name: str, env: dict[str, str]) -> tuple[str, list]:
    original = stack.spawn

    def spawn(process_name: str, argv: list[str], extra: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return original(process_name, argv, {**(extra or {}), **env})

    stack.spawn = spawn  # type: ignore[method-assign]
    try:
        url, processes, _ = stack.taskdeck(name, 1)
    finally:
        stack.spawn = original  # type: ignore[method-assign]
    return url, processes


def completion_rps(url: str, token: str, args: argparse.Namespace) -> None:
    due = time.strftime("%Y-%m-%dT09:00:00Z", time.gmtime(time.time() - 20 * 365 * 86400))
    recurring = api(url, token, "POST", "/api/v1/tasks", {"title": "daily", "due_at": due, "recurrence": "FREQ=DAILY"})
    plain = api(url, token, "POST", "/api/v1/tasks", {"title": "plain", "due_at": due})
    body = {"status": "done"}
    ratios, rows = [], []
    for round_ in range(args.rounds):
        order = [("plain", plain), ("recurring", recurring)]
        results = {}
        for name, task in order if round_ % 2 == 0 else order[::-1]:
            results[name] = run(f"{url}/api/v1/tasks/{task['id']}", "PATCH", body, token,
                                seconds=args.seconds, connections=16)
        ratios.append(results["recurring"].rps / results["plain"].rps)
        rows.append((results["plain"].rps, results["recurring"].rps))
    print("Completing a task, PATCH {\"status\": \"done\"}, wrk -c16, requests/s (2xx):")
    for n, (plain_rps, recurring_rps) in enumerate(rows, 1):
        print(f"  round {n}: plain {plain_rps:8.0f}   recurring {recurring_rps:8.0f}")
    final = api(url, token, "PATCH", f"/api/v1/tasks/{recurring['id']}", {})
    print(f"  recurring / plain = {statistics.median(ratios):.2f} (median of rounds); "
          f"the recurring task is now due {final['due_at']}")


if __name__ == "__main__":
    main()
