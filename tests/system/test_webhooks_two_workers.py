"""Two real worker processes with their cron: every event reaches the receiver exactly once, verified, while
both workers fan out and deliver (the fan-out position lock and the leases keep them from doubling up)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


from tests.worker.test_webhooks import Receiver, receiver  # noqa: F401  (the fixture)
from tests.worker_helpers import start_worker_process
from web.app import create_app


async def test_two_workers_deliver_each_event_once(aiohttp_client: Any, stack: Any, settings: Any, make_user: Any,
                                                   receiver: Receiver, tmp_path: Path, db: Any) -> None:  # noqa: F811
    dev = settings.with_(webhook_allow_private=True)
    client = await aiohttp_client(create_app(dev))
    ada = await make_user()
    workers = [start_worker_process(stack, dev, tmp_path / f"worker{n}.log", WORKER_CRON="1",
                                    WEBHOOK_ALLOW_PRIVATE="on") for n in range(2)]
    try:
        for _ in range(600):  # the fan-out starts at the feed's horizon on its first tick: history is not replayed
            if await db.fetchval("SELECT count(*) FROM webhook_fanout"):
                break
            await asyncio.sleep(0.1)
        created = await client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["task.created"]},
                                    headers=ada.headers)
        receiver.secret = (await created.json())["secret"]
        for n in range(20):
            assert (await client.post("/api/v1/tasks", json={"title": f"w{n}"}, headers=ada.headers)).status == 201
        for _ in range(300):
            if len(receiver.received) >= 20:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # a few more ticks: nothing may arrive twice
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(30)
    titles = sorted(r["body"]["data"]["title"] for r in receiver.received)
    logs = "\n".join((tmp_path / f"worker{n}.log").read_text()[-2000:] for n in range(2))
    assert titles == sorted(f"w{n}" for n in range(20)), logs
    assert all(r["verified"] for r in receiver.received)
