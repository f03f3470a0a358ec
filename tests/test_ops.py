"""/health, /ready, /metrics, the OpenAPI document and the docs page."""
from __future__ import annotations

from openapi_spec_validator import validate

from shared.devstack import free_port
from web.app import create_app


async def test_health_answers_even_when_redis_is_gone(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")))
    response = await client.get("/health")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_ready_reports_every_dependency(client):
    response = await client.get("/ready")
    body = await response.json()
    assert response.status == 200 and body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "up" and body["checks"]["redis"]["status"] == "up"
    assert body["checks"]["replicas"] == []
    assert body["checks"]["worker"] == {"status": "down", "error": "LookupError", "alive": 0}  # no worker runs here
    assert body["checks"]["storage"]["status"] == "up"


async def test_ready_counts_live_worker_heartbeats(client, settings):
    import time

    from redis.asyncio import Redis

    from shared import workers

    redis = Redis.from_url(settings.redis_url)
    try:
        await workers.beat(redis, "host-1-aaa")
        await workers.beat(redis, "host-2-bbb")
        await workers.beat(redis, "host-3-dead", now=time.time() - 3600)  # killed long ago: expired
        body = await (await client.get("/ready")).json()
        assert body["checks"]["worker"]["status"] == "up" and body["checks"]["worker"]["alive"] == 2
        await workers.forget(redis, "host-1-aaa")  # one clean stop leaves the other listed
        body = await (await client.get("/ready")).json()
        assert body["checks"]["worker"]["alive"] == 1
    finally:
        await redis.aclose()


async def test_ready_is_503_when_redis_is_down(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")))
    response = await client.get("/ready")
    body = await response.json()
    assert response.status == 503 and body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "up"


async def test_ready_reports_replicas(aiohttp_client, settings):
    # The primary doubles as a "replica" here; the streaming-replica setup is exercised with scale-out.
    client = await aiohttp_client(create_app(settings.with_(database_replica_urls=(settings.database_url,))))
    body = await (await client.get("/ready")).json()
    assert [r["status"] for r in body["checks"]["replicas"]] == ["up"]
    assert "postgres@" not in str(body)  # no credentials or user names leak


async def test_metrics_count_requests_by_route_template(client, make_user):
    user = await make_user()
    await client.get(f"/api/v1/admin/users/{user.id}", headers=user.headers)
    text = await (await client.get("/metrics")).text()
    assert 'route="/api/v1/admin/users/{id}"' in text and 'status="403"' in text
    assert "taskdeck_http_request_duration_seconds_bucket" in text
    assert f"/api/v1/admin/users/{user.id}\"" not in text


async def test_openapi_document_is_valid_3_1_and_covers_every_api_route(client):
    response = await client.get("/api/v1/openapi.json")
    spec = await response.json()
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    app_routes = {(r.method.lower(), r.resource.canonical) for r in client.app.router.routes()
                  if r.resource is not None and r.resource.canonical.startswith("/api/v1/") and r.method != "HEAD"}
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert app_routes - {("get", "/api/v1/openapi.json")} <= documented
    register = spec["paths"]["/api/v1/auth/register"]["post"]
    assert register["responses"]["422"]["$ref"] == "#/components/responses/Problem422"
    assert "password" not in spec["components"]["schemas"]["UserOut"]["properties"]


async def test_docs_page_is_served_from_local_files(client):
    page = await (await client.get("/api/docs")).text()
    assert "swagger-ui" in page and "cdn" not in page.lower() and "unpkg" not in page.lower()
    asset = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert asset.status == 200
