"""Metrics: every family on /metrics of web and worker, bounded labels, several processes, and a
dashboard and alert rules that only use metrics that exist."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.export_helpers import create_job
from launcher.devstack import free_port
from tests.conftest import TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "taskdeck.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
WEB_FAMILIES = {
    "taskdeck_http_requests_total", "taskdeck_http_request_duration_seconds", "taskdeck_http_requests_in_flight",
    "taskdeck_db_pool_size", "taskdeck_db_pool_max", "taskdeck_db_pool_in_use", "taskdeck_db_pool_waiting",
    "taskdeck_replica_lag_seconds", "taskdeck_cache_hits_total", "taskdeck_cache_misses_total",
    "taskdeck_cache_errors_total", "taskdeck_ratelimit_rejections_total", "taskdeck_ratelimit_errors_total",
    "taskdeck_jobs_enqueued_total", "taskdeck_queue_depth", "taskdeck_worker_heartbeat_age_seconds",
}
WORKER_FAMILIES = {
    "taskdeck_jobs_started_total", "taskdeck_jobs_succeeded_total", "taskdeck_jobs_failed_total",
    "taskdeck_jobs_retried_total", "taskdeck_job_duration_seconds", "taskdeck_emails_sent_total",
    "taskdeck_emails_failed_total", "taskdeck_queue_depth", "taskdeck_worker_heartbeat_age_seconds",
    "taskdeck_db_pool_in_use",
}
# Added by Prometheus itself for every target.
SCRAPE_SERIES = {"up"}


def exposed_names(text: str) -> set[str]:
    """Every series name a PromQL query could use against this exposition (histogram parts included)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def samples(text: str, name: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def promql_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"\btaskdeck_[a-z0-9_]+\b", without_strings)) | (
        {"up"} if re.search(r"\bup\b\s*[{\[]", without_strings) else set())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel["targets"]]


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


async def scrape(client: Any) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def test_web_exposes_every_family(client: Any, make_user: Any) -> None:
    user = await make_user()
    await client.get("/api/v1/tasks", headers=user.headers)
    text = await scrape(client)
    assert WEB_FAMILIES <= exposed_names(text)
    assert {s.labels["pool"] for s in samples(text, "taskdeck_db_pool_size")} >= {"primary"}
    assert samples(text, "taskdeck_db_pool_max")[0].value >= 1
    # The scrape itself is in flight while /metrics renders; everything else has finished.
    flights = {s.labels["route"]: s.value for s in samples(text, "taskdeck_http_requests_in_flight")}
    assert flights.get("/metrics") == 1 and flights.get("/api/v1/tasks") == 0
    lists = [s for s in samples(text, "taskdeck_http_requests_total")
             if s.labels == {"method": "GET", "route": "/api/v1/tasks", "status": "200"}]
    assert lists and lists[0].value >= 1


async def test_route_labels_are_templates_for_every_route(client: Any, make_user: Any) -> None:
    """Walk every route with concrete ids and junk paths: the labels stay the router's templates."""
    user = await make_user()
    # The registry is per process: other tests' apps (with routes of their own) may have left labels.
    before = await scrape(client)
    seen_before = {name: {s.labels["route"] for s in samples(before, name)}
                   for name in ("taskdeck_http_requests_total", "taskdeck_http_request_duration_seconds_count",
                                "taskdeck_http_requests_in_flight")}
    templates = set()
    for route in client.app.router.routes():
        if route.resource is None or route.method == "HEAD":
            continue
        template = route.resource.canonical
        templates.add(template)
        path = re.sub(r"\{[^}]+\}", "98765", template)
        await client.request(route.method, path, headers=user.headers)
    for junk in ("/api/v1/tasks/12345/nope", "/no/such/page/777", "/api/v1/tasks/x%00y"):
        await client.get(junk, headers=user.headers)
    text = await scrape(client)
    for name in ("taskdeck_http_requests_total", "taskdeck_http_request_duration_seconds_count",
                 "taskdeck_http_requests_in_flight"):
        routes = {s.labels["route"] for s in samples(text, name)}
        assert routes - seen_before[name] <= templates | {"unmatched"}, routes - templates
        assert templates <= routes  # every walked request was recorded, under its template
        assert "unmatched" in routes and not any("98765" in r or "777" in r for r in routes)
    statuses = {s.labels["status"] for s in samples(text, "taskdeck_http_requests_total")}
    assert all(re.fullmatch(r"[1-5]\d\d", s) for s in statuses)


def start_worker(stack: Any, settings: Any, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TASKDECK_ENV": "test", "DATABASE_URL": stack.dsn, "REDIS_URL": settings.redis_url,
           "SECRET_KEY": TEST_SECRET, "SMTP_URL": stack.smtp.url, "PUBLIC_URL": settings.public_url,
           "EXPORT_STORAGE": settings.export_storage, "DB_POOL_MIN": "1", "WORKER_METRICS_PORT": str(port)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "tests" / "worker_process.py")], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def poll_worker(port: int, proc: subprocess.Popen[bytes], log: Path, until: Any, timeout: float = 60) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
                if until(text):
                    return text
            except aiohttp.ClientError:
                pass
            assert asyncio.get_running_loop().time() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.2)


def job_count(text: str, name: str, kind: str) -> float:
    return sum(s.value for s in samples(text, name) if s.labels.get("kind") == kind)


async def test_worker_endpoint_and_names_used_by_dashboard_and_rules(client: Any, stack: Any, settings: Any,
                                                                     make_user: Any, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "worker.log"
    proc = start_worker(stack, settings, port, log)
    try:
        await poll_worker(port, proc, log, lambda text: "taskdeck_queue_depth" in text)
        user = await make_user()
        await create_job(client, user, format="csv")
        worker_text = await poll_worker(
            port, proc, log, lambda text: job_count(text, "taskdeck_jobs_succeeded_total", "export") >= 1
            and sum(s.value for s in samples(text, "taskdeck_emails_sent_total")) >= 1)
        assert WORKER_FAMILIES <= exposed_names(worker_text)
        assert job_count(worker_text, "taskdeck_jobs_started_total", "export") >= 1
        assert job_count(worker_text, "taskdeck_job_duration_seconds_count", "export") >= 1
        web_text = await scrape(client)
        # The web tier sees the worker's heartbeat (finite age) and counted the enqueue.
        assert samples(web_text, "taskdeck_worker_heartbeat_age_seconds")[0].value < 60
        assert job_count(web_text, "taskdeck_jobs_enqueued_total", "export") >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    exposed = exposed_names(web_text) | exposed_names(worker_text) | SCRAPE_SERIES
    used = {(expr, name) for expr in dashboard_exprs() + rule_exprs() for name in promql_names(expr)}
    assert len({name for _, name in used}) >= 20
    missing = {(name, expr) for expr, name in used if name not in exposed}
    assert not missing, missing


def test_promql_name_extraction_catches_a_typo() -> None:
    """The check above is only as good as its parser: a misspelt or invented name must show up."""
    names = promql_names('sum(rate(taskdeck_http_request_total{route="/x"}[5m])) / up{job="taskdeck_x"}')
    assert names == {"taskdeck_http_request_total", "up"}
    assert "taskdeck_http_request_total" not in exposed_names("# TYPE taskdeck_http_requests_total counter\n")


def test_dashboard_covers_the_required_panels() -> None:
    titles = " | ".join(panel["title"].lower() for panel in json.loads(DASHBOARD.read_text())["panels"])
    for topic in ("request rate", "error rate", "p99", "pool saturation", "cache hit ratio", "429", "queue depth",
                  "job duration", "failed", "replica lag", "heartbeat"):
        assert topic in titles, topic
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert {"TaskdeckHighErrorRate", "TaskdeckSlowRequests", "TaskdeckQueueGrowing", "TaskdeckNoWorkerHeartbeat",
            "TaskdeckReplicaLagging", "TaskdeckSmtpFailures"} <= alerts


def promtool() -> str | None:
    return os.environ.get("PROMTOOL") or shutil.which("promtool")


@pytest.mark.skipif(promtool() is None, reason="promtool not installed (Debian package `prometheus`)")
def test_promtool_accepts_rules_and_config_and_rule_tests_pass() -> None:
    for args in (["check", "rules", str(RULES)], ["check", "config", str(RULES.parent / "prometheus.yml")],
                 ["test", "rules", str(RULES.parent / "alerts_test.yml")]):  # the alerts fire when they should
        result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_several_processes_are_merged(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR: counters add up, livesum gauges drop a process once it is marked dead."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    child = textwrap.dedent("""
        import os
        from shared.observability import metrics
        metrics.HTTP_REQUESTS.labels("GET", "/health", "200").inc()
        metrics.DB_POOL_SIZE.labels("primary").set(3)
        print(os.getpid())
    """)
    pids = [subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True,
                           timeout=60).stdout.strip() for _ in range(2)]
    reader = textwrap.dedent("""
        import sys
        from prometheus_client import generate_latest
        from shared.observability import metrics
        for pid in sys.argv[1:]:
            metrics.process_exited(int(pid))
        sys.stdout.write(generate_latest(metrics.registry()).decode())
    """)

    def merged(*dead: str) -> str:
        return subprocess.run([sys.executable, "-c", reader, *dead], env=env, capture_output=True, text=True,
                              check=True, timeout=60).stdout

    text = merged()
    requests = [s.value for s in samples(text, "taskdeck_http_requests_total") if s.labels["route"] == "/health"]
    assert requests == [2.0]
    assert [s.value for s in samples(text, "taskdeck_db_pool_size")] == [6.0]
    text = merged(pids[0])
    assert [s.value for s in samples(text, "taskdeck_db_pool_size")] == [3.0]
    assert [s.value for s in samples(text, "taskdeck_http_requests_total") if s.labels["route"] == "/health"] == [2.0]


async def test_worker_metrics_endpoint_needs_the_metrics_token_when_set() -> None:
    from worker.metrics_server import serve_metrics

    port, token = free_port(), "ops-token-0123456789abcdef"
    runner = await serve_metrics(port, host="127.0.0.1", token=token)
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer é"}):
                async with session.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response:
                    assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
                    assert response.content_type == "application/problem+json"
            async with session.get(f"http://127.0.0.1:{port}/metrics",
                                   headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status == 200 and "taskdeck_" in await response.text()
    finally:
        await runner.cleanup()
