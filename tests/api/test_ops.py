"""/health, /ready, /metrics, the OpenAPI document and the docs page."""
from __future__ import annotations

from openapi_spec_validator import validate

from launcher.devstack import free_port
from web.app import create_app

OPS_TOKEN = "ops-token-0123456789abcdef"
OPS_HEADERS = {"Authorization": f"Bearer {OPS_TOKEN}"}


async def test_health_answers_even_when_redis_is_gone(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")))
    response = await client.get("/health")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_ready_reports_every_dependency(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_(metrics_token=OPS_TOKEN)))
    response = await client.get("/ready", headers=OPS_HEADERS)
    body = await response.json()
    assert response.status == 200 and body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "up" and body["checks"]["redis"]["status"] == "up"
    assert body["checks"]["replicas"] == []
    assert body["checks"]["worker"] == {"status": "down", "error": "LookupError", "alive": 0}  # no worker runs here
    assert body["checks"]["storage"]["status"] == "up"


async def test_ready_counts_live_worker_heartbeats(aiohttp_client, settings):
    import time

    from redis.asyncio import Redis

    from shared.observability import heartbeats

    redis = Redis.from_url(settings.redis_url)
    try:
        await heartbeats.beat(redis, "host-1-aaa")
        await heartbeats.beat(redis, "host-2-bbb")
        await heartbeats.beat(redis, "host-3-dead", now=time.time() - 3600)  # killed long ago: expired
        client = await aiohttp_client(create_app(settings.with_(metrics_token=OPS_TOKEN)))
        body = await (await client.get("/ready", headers=OPS_HEADERS)).json()
        assert body["checks"]["worker"]["status"] == "up" and body["checks"]["worker"]["alive"] == 2
        await heartbeats.forget(redis, "host-1-aaa")  # one clean stop leaves the other listed
        body = await (await client.get("/ready", headers=OPS_HEADERS)).json()
        assert body["checks"]["worker"]["alive"] == 1
    finally:
        await redis.aclose()


async def test_ready_is_503_when_redis_is_down(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")))
    response = await client.get("/ready")
    body = await response.json()
    assert response.status == 503 and body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "up"


async def test_ready_reports_replicas_by_name_with_their_lag(aiohttp_client, replica_settings, replica):
    client = await aiohttp_client(create_app(replica_settings.with_(metrics_token=OPS_TOKEN)))
    body = await (await client.get("/ready", headers={"Authorization": f"Bearer {OPS_TOKEN}"})).json()
    [state] = body["checks"]["replicas"]
    assert state["name"] == "replica-0" and state["status"] == "up" and state["lag_seconds"] == 0
    assert "/" in state["replay_lsn"]
    assert "127.0.0.1" not in str(body) and str(replica.port) not in str(body)  # no host names, ports, users
    text = await (await client.get("/metrics", headers={"Authorization": f"Bearer {OPS_TOKEN}"})).text()
    assert 'taskdeck_replica_lag_seconds{replica="replica-0"} 0.0' in text


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


async def test_docs_page_is_served_from_local_files_and_loads_the_one_document(client):
    response = await client.get("/api/docs")
    page = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    assert "swagger-ui" in page and "cdn" not in page.lower() and "unpkg" not in page.lower()
    assert 'url: "/api/v1/openapi.json"' in page and "swagger.json" not in page
    asset = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert asset.status == 200
    # Nothing serves a second copy of the document.
    for copy in ("/api/docs/swagger.json", "/api/docs/openapi.json", "/api/docs/editor"):
        assert (await client.get(copy)).status == 404, copy




async def test_metrics_token_guards_metrics(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_(metrics_token=OPS_TOKEN)))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer é"},
                    {"Authorization": f"Basic {OPS_TOKEN}"}):
        response = await client.get("/metrics", headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert response.status == 200 and "taskdeck_http_requests_total" in await response.text()


async def test_ready_without_the_token_says_only_up_or_down(aiohttp_client, settings, replica_settings):
    client = await aiohttp_client(create_app(replica_settings.with_(metrics_token=OPS_TOKEN)))
    host = settings.database_url.split("@")[-1].split("/")[0]
    response = await client.get("/ready")
    body = await response.json()
    assert response.status == 200
    assert body == {"status": "ok", "checks": {"database": {"status": "up"}, "replicas": [{"status": "up"}],
                                               "redis": {"status": "up"}, "worker": {"status": "down"},
                                               "storage": {"status": "up"}}}
    assert host not in await response.text()
    detailed = await (await client.get("/ready", headers={"Authorization": f"Bearer {OPS_TOKEN}"})).json()
    assert detailed["checks"]["replicas"][0]["name"] == "replica-0" and host not in str(detailed)
    assert "latency_ms" in detailed["checks"]["database"] and detailed["checks"]["worker"]["error"]


async def test_ready_without_any_token_configured_hides_detail_outside_development(client, aiohttp_client, settings):
    assert "latency_ms" not in str(await (await client.get("/ready")).json())
    dev = await aiohttp_client(create_app(settings.with_(environment="development")))
    assert "latency_ms" in str(await (await dev.get("/ready")).json())


def test_strip_details_keeps_only_shape_and_status():
    from web.ops_access import strip_details

    body = {"status": "ok", "checks": {"storage": {"status": "up", "bucket": "b", "objects": 3},
                                       "workers": [{"status": "up", "host": "w1", "jobs": 2}], "count": 4}}
    assert strip_details(body) == {"status": "ok", "checks": {"storage": {"status": "up"},
                                                              "workers": [{"status": "up"}]}}
