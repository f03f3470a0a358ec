"""Exports carry each task's parent, honour the parent_id filter, and never include the trash."""
from __future__ import annotations

from typing import Any

from tests.export_helpers import create_job, download, fetch_job, parse_csv, run_jobs
from tests.project_helpers import TASKS, new_task


async def test_csv_carries_the_parent_and_skips_the_trash(client: Any, make_user: Any, settings: Any) -> None:
    ada = await make_user()
    root = await new_task(client, ada, title="root")
    child = await new_task(client, ada, title="child", parent_id=root["id"])
    gone = await new_task(client, ada, title="gone")
    assert (await client.delete(f"{TASKS}/{gone['id']}", headers=ada.headers)).status == 204
    everything = await create_job(client, ada, format="csv")
    top = await create_job(client, ada, format="csv", filters={"parent_id": "none"})
    await run_jobs(settings)
    rows = parse_csv(await download(client, ada, await fetch_job(client, ada, everything)))
    assert {row["title"]: row["parent_id"] for row in rows} == {"root": "", "child": str(root["id"])}
    rows = parse_csv(await download(client, ada, await fetch_job(client, ada, top)))
    assert [row["id"] for row in rows] == [str(root["id"])]
    assert child["parent_id"] == root["id"]
