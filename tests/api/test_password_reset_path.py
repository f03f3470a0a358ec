"""Password reset does the same work in the request whatever the address: one job, no lookup.

Shown structurally, not by the clock: the app under test has no reachable database at all, so any
lookup before the answer would be a 5xx; and the queue holds the same job for a known and an unknown
address. The worker then sends for the one and does nothing for the other.
"""
from __future__ import annotations

from shared import jobs
from launcher.devstack import free_port
from tests.helpers import assert_problem, mailed_tokens
from tests.worker_helpers import run_burst
from web.app import create_app


async def test_known_and_unknown_addresses_take_the_same_path(aiohttp_client, settings, make_user, arq_redis,
                                                              stack, db):
    await make_user("known@example.com")
    await make_user("inactive@example.com", active=False)
    # No PostgreSQL behind this app (nothing listens there; the pool opens no connection until asked).
    no_database = settings.with_(database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/none", db_pool_min=0)
    client = await aiohttp_client(create_app(no_database))
    assert (await client.get("/ready")).status == 503  # the database really is unreachable for this app

    addresses = ("known@example.com", "nobody@example.com", "inactive@example.com")
    for email in addresses:
        response = await client.post("/api/v1/auth/password-reset", json={"email": email},
                                     headers={"X-Request-ID": f"req-{email[:4]}"})
        assert response.status == 202 and await response.read() == b""
    queued = sorted(await arq_redis.queued_jobs(), key=lambda job: job.args[1])
    assert [(job.function, job.args, job.kwargs) for job in queued] == [
        (jobs.PASSWORD_RESET, ("inactive@example.com", "req-inac"), {}),
        (jobs.PASSWORD_RESET, ("known@example.com", "req-know"), {}),
        (jobs.PASSWORD_RESET, ("nobody@example.com", "req-nobo"), {}),
    ]

    await run_burst(settings)  # the real worker, with the real database
    assert len(mailed_tokens(stack, "/reset-password")) == 1
    [recipient] = [m["To"] for m in stack.smtp.messages()]
    assert recipient == "known@example.com"
    assert await db.fetchval("SELECT count(*) FROM one_time_tokens WHERE purpose = 'password_reset'") == 1


async def test_a_job_run_twice_mails_once(settings, make_user, stack, db, database, arq_redis):
    from tests.worker_helpers import job_ctx
    from worker.jobs.accounts import password_reset

    await make_user("known@example.com")
    ctx = job_ctx(settings, database, job_id="job-1", redis=arq_redis)
    assert await password_reset(ctx, "known@example.com") == "queued"
    assert await password_reset(ctx, "known@example.com") == "nothing"  # arq re-ran it: no second token
    assert await password_reset(ctx, "nobody@example.com") == "nothing"
    assert await db.fetchval("SELECT count(*) FROM one_time_tokens WHERE used_at IS NULL") == 1
    await run_burst(settings)
    assert len(mailed_tokens(stack, "/reset-password")) == 1


async def test_reset_request_when_redis_is_down_is_503_for_everyone(aiohttp_client, settings, make_user):
    await make_user("known@example.com")
    client = await aiohttp_client(create_app(settings.with_(redis_url=f"redis://127.0.0.1:{free_port()}/0")))
    for email in ("known@example.com", "nobody@example.com"):
        await assert_problem(await client.post("/api/v1/auth/password-reset", json={"email": email}), 503)
