"""The task API and a worker job through Debian's PgBouncer in transaction pooling, in front of the test PostgreSQL.

scripts/test installs the `pgbouncer` package when it is missing and we are root; only when the binary
cannot be had at all do these tests skip.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest

from shared.db.database import Database
from launcher.devstack import free_port
from web.app import create_app

TASKS = "/api/v1/tasks"


def _binary() -> str | None:
    return shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if os.access(p, os.X_OK)), None)


@pytest.fixture(scope="module")
def pgbouncer(stack):
    binary = _binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed (scripts/test installs it with apt-get when run as root)")
    directory = Path(tempfile.mkdtemp(prefix="taskdeck-pgbouncer-"))  # `nobody` must reach its files
    directory.chmod(0o755)
    port = free_port()
    (directory / "userlist.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(f"""
[databases]
* = host=127.0.0.1 port={stack.postgres.port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
""")
    for path in directory.iterdir():
        path.chmod(0o644)
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
    log = (directory / "pgbouncer.log").open("wb")  # it logs to stderr in the foreground
    process = subprocess.Popen([binary, *as_user, str(directory / "pgbouncer.ini")], stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, (directory / "pgbouncer.log").read_text()
            time.sleep(0.05)
    yield f"postgresql://postgres@127.0.0.1:{port}/{stack.dsn.rsplit('/', 1)[1]}"
    process.terminate()
    process.wait(10)
    log.close()
    shutil.rmtree(directory, ignore_errors=True)


async def test_the_task_api_works_through_pgbouncer(aiohttp_client, settings, pgbouncer, make_user):
    client = await aiohttp_client(create_app(settings.with_(database_url=pgbouncer, database_pooler="pgbouncer")))
    users = [await make_user() for _ in range(3)]
    for round_ in range(3):  # more clients than PgBouncer's 2 server connections, so they get shuffled
        for user in users:
            created = await client.post(TASKS, json={"title": f"t{round_}", "tags": ["x"]}, headers=user.headers)
            assert created.status == 201, await created.text()
            task = await created.json()
            url = f"{TASKS}/{task['id']}"
            assert (await client.get(url, headers=user.headers)).status == 200
            changed = await client.patch(url, json={"status": "done"}, headers=user.headers)
            assert changed.status == 200
            assert (await client.get(TASKS, params={"tag": "x", "status": "done"}, headers=user.headers)).status == 200
            assert (await client.get(f"{TASKS}/stats", headers=user.headers)).status == 200
    for user in users:
        listed = await (await client.get(TASKS, headers=user.headers)).json()
        assert len(listed["items"]) == 3
        deleted = await client.delete(f"{TASKS}/{listed['items'][0]['id']}", headers=user.headers)
        assert deleted.status == 204
    assert (await client.get("/ready")).status == 200


async def test_a_cursor_in_a_transaction_works_through_pgbouncer(settings, pgbouncer, make_user, db):
    # The CSV export reads with a server-side cursor inside one transaction, which PgBouncer keeps on one
    # server connection.
    user = await make_user()
    await db.execute("INSERT INTO tasks (owner_id, title) SELECT $1, 't' || n FROM generate_series(1, 50) n", user.id)
    database = await Database.connect(settings.with_(database_url=pgbouncer, database_pooler="pgbouncer"))
    try:
        async def count_with_cursor(conn: asyncpg.Connection) -> int:
            async with conn.transaction(readonly=True):
                cursor = await conn.cursor("SELECT id FROM tasks WHERE owner_id = $1", user.id)
                seen = 0
                while batch := await cursor.fetch(7):
                    seen += len(batch)
                return seen

        assert await database.read_as(user.id, count_with_cursor) == 50
    finally:
        await database.close()


async def test_without_the_setting_asyncpgs_statement_cache_breaks_behind_pgbouncer(settings, pgbouncer):
    # Why DATABASE_POOLER=pgbouncer exists: named prepared statements live on one server connection.
    async def run(pooler: str) -> None:
        database = await Database.connect(settings.with_(database_url=pgbouncer, database_pooler=pooler,
                                                         db_pool_min=4, db_pool_max=4))

        async def queries(n: int) -> None:
            async with database.write.acquire() as conn:
                for i in range(20):  # each client prepares statements another server connection lacks
                    await conn.fetchval(f"SELECT $1::int + {i}", n)

        try:
            await asyncio.gather(*(queries(n) for n in range(8)))
        finally:
            await database.close()

    # Whether two clients' statements meet on one server connection depends on scheduling: a few tries
    # (on a loaded box one run can happen to stay on one server connection per client).
    broke = []
    for _ in range(5):
        try:
            await run("none")
        except asyncpg.PostgresError as exc:
            broke.append(exc)
            break
    assert broke and "prepared statement" in str(broke[0])
    for _ in range(5):
        await run("pgbouncer")
