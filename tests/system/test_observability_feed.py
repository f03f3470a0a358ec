"""The change feed's metrics exist on /metrics, move when streams and webhooks work, and the dashboard row
and alert rules use them."""
from __future__ import annotations

import json
from typing import Any

import yaml

from tests.system.test_observability import DASHBOARD, RULES, exposed_names, promql_names, samples, scrape

FEED_FAMILIES = {"taskdeck_event_streams_open", "taskdeck_events_pushed_total", "taskdeck_events_served_total",
                 "taskdeck_event_stream_ends_total", "taskdeck_event_push_lag_seconds",
                 "taskdeck_event_doorbell_errors_total", "taskdeck_webhook_deliveries_total",
                 "taskdeck_webhook_delivery_seconds", "taskdeck_webhook_oldest_pending_seconds"}


async def test_feed_metrics_are_exposed_and_move(client: Any, make_user: Any) -> None:
    ada = await make_user()
    before = await scrape(client)
    assert FEED_FAMILIES <= exposed_names(before)
    served = samples(before, "taskdeck_events_served_total")[0].value
    since = (await (await client.get("/api/v1/changes", headers=ada.headers)).json())["next_cursor"]
    await client.post("/api/v1/tasks", json={"title": "counted"}, headers=ada.headers)
    assert len((await (await client.get(f"/api/v1/changes?since={since}", headers=ada.headers)).json())["items"]) == 1
    stream = await client.get("/api/v1/events", headers=ada.headers)
    during = await scrape(client)
    assert samples(during, "taskdeck_event_streams_open")[0].value >= 1
    assert samples(during, "taskdeck_events_served_total")[0].value == served + 1
    stream.close()


def test_dashboard_row_and_alerts_use_the_feed_metrics() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    titles = " | ".join(p["title"].lower() for p in panels)
    assert "push lag" in titles and "webhook deliveries" in titles and "oldest undelivered" in titles
    rules = {r["alert"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {"TaskdeckEventPushLagging", "TaskdeckWebhooksFailing", "TaskdeckWebhookBacklog"} <= set(rules)
    used = set().union(*(promql_names(rules[name]) for name in ("TaskdeckEventPushLagging", "TaskdeckWebhooksFailing",
                                                                "TaskdeckWebhookBacklog")))
    assert used <= {f"{n}_bucket" for n in FEED_FAMILIES} | FEED_FAMILIES
