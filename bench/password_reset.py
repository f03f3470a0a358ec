"""How long POST /api/v1/auth/password-reset takes for a known and an unknown address. Asserts nothing.

    python bench/password_reset.py                      # starts PostgreSQL, Redis and `taskdeck web` itself
    python bench/password_reset.py --url http://127.0.0.1:8080 --email known@example.com --requests 200

Alternates the two addresses one request at a time (so drift hits both alike) and prints the median
and p90 of each. No worker runs: the request's own work is what is measured. The test suite shows the
two paths are the same structurally (tests/api/test_password_reset_path.py); this is the clock's view.
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tasks import local_service  # noqa: E402


async def measure(url: str, known: str | None, requests: int) -> dict[str, list[float]]:
    async with aiohttp.ClientSession(url) as session:
        if known is None:
            known = f"bench-{secrets.token_hex(4)}@example.com"
            body = {"email": known, "password": secrets.token_urlsafe(12)}
            async with session.post("/api/v1/auth/register", json=body) as response:
                assert response.status == 201, await response.text()
        timings: dict[str, list[float]] = {"known": [], "unknown": []}
        for i in range(requests + 5):  # the first five of each warm up
            for label, email in (("known", known), ("unknown", f"nobody-{i}@example.com")):
                started = time.perf_counter()
                async with session.post("/api/v1/auth/password-reset", json={"email": email}) as response:
                    await response.read()
                    assert response.status == 202, response.status
                if i >= 5:
                    timings[label].append((time.perf_counter() - started) * 1000)
        return timings


def report(timings: dict[str, list[float]]) -> None:
    for label, values in timings.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(f"{label:8} n={len(values)}  median {statistics.median(values):.2f} ms  p90 {p90:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (else one is started)")
    parser.add_argument("--email", help="an existing account's address (with --url)")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    if args.url:
        report(asyncio.run(measure(args.url, args.email, args.requests)))
        return
    with local_service("WARNING") as url:
        report(asyncio.run(measure(url, None, args.requests)))


if __name__ == "__main__":
    main()
