"""Real servers from launcher.devstack: no mocks, no other project modules."""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import pytest
import redis

from launcher.devstack import DevStackError, PostgresServer, RedisServer, SmtpSink, free_port


def _query(dsn: str, sql: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            if ";" in sql:  # several statements: simple query protocol, no result
                return await conn.execute(sql)
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_postgres_start_query_and_restart_keeps_data(tmp_path: Path) -> None:
    pg = PostgresServer(tmp_path / "pg")
    try:
        pg.start()
        pg.create_database("taskdeck")
        pg.create_database("taskdeck")  # idempotent
        assert _query(pg.dsn(), "SELECT 1") == 1
        _query(pg.dsn(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        assert pg.dsn().startswith("postgresql://postgres@127.0.0.1:")
    finally:
        pg.stop()
    pg.stop()  # idempotent

    again = PostgresServer(tmp_path / "pg")  # new port, same data
    try:
        again.start()
        assert _query(again.dsn(), "SELECT v FROM kept") == 42
    finally:
        again.stop()


def test_create_database_from_inside_a_running_loop(tmp_path: Path) -> None:
    async def inside_loop(pg: PostgresServer) -> str:
        pg.create_database("other db")  # sync API called while a loop runs (async fixtures do this)
        conn = await asyncpg.connect(pg.dsn("other db"))
        try:
            return str(await conn.fetchval("SELECT current_database()"))
        finally:
            await conn.close()

    pg = PostgresServer(tmp_path / "pg")
    pg.start()
    try:
        assert asyncio.run(inside_loop(pg)) == "other db"
    finally:
        pg.stop()


def test_postgres_recovers_from_a_crashed_session(tmp_path: Path) -> None:
    first = PostgresServer(tmp_path / "pg")
    second = PostgresServer(tmp_path / "pg")
    first.start()
    try:
        # The "crashed" session never called stop(): a fresh launcher must take over.
        second.start()
        assert second.port != first.port
        assert _query(second.dsn("postgres"), "SELECT 1") == 1
    finally:
        second.stop()
        first.stop()


def test_postgres_ignores_stale_pidfile(tmp_path: Path) -> None:
    pg = PostgresServer(tmp_path / "pg")
    pg.start()
    pg.stop()
    pidfile = tmp_path / "pg" / "postmaster.pid"
    pidfile.write_text("999999\n")  # a pid that does not run
    try:
        pg.start()
        assert _query(pg.dsn("postgres"), "SELECT 1") == 1
    finally:
        pg.stop()


def test_redis_ping_set_get(tmp_path: Path) -> None:
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    try:
        assert srv.url == f"redis://127.0.0.1:{srv.port}/0"
        client = redis.Redis.from_url(srv.url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(srv.url, socket_connect_timeout=0.5).ping()


def test_smtp_sink_stores_messages(tmp_path: Path) -> None:
    sink = SmtpSink(tmp_path / "mail")
    sink.start()
    try:
        assert sink.url == f"smtp://127.0.0.1:{sink.port}"
        for n in range(2):
            msg = EmailMessage()
            msg["From"] = "app@taskdeck.test"
            msg["To"] = "user@example.test"
            msg["Subject"] = f"Hello {n} ✓"
            msg.set_content("Body text ✓")
            with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
                smtp.send_message(msg, to_addrs=["user@example.test", "hidden@example.test"])
        got = sink.messages()
        assert [m["Subject"] for m in got] == ["Hello 0 ✓", "Hello 1 ✓"]
        assert got[0].get_content().strip() == "Body text ✓"
        assert "hidden@example.test" in got[0]["X-Envelope-To"]
        assert len(list((tmp_path / "mail").glob("*.eml"))) == 2
        sink.clear()
        assert sink.messages() == []
    finally:
        sink.stop()


def test_redis_start_failure_reports_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        srv = RedisServer(tmp_path / "redis", port=taken.getsockname()[1])
        with pytest.raises(DevStackError, match="did not answer PING"):
            srv.start()


def test_postgres_start_failure_reports_log(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        pg = PostgresServer(tmp_path / "pg", port=taken.getsockname()[1])
        with pytest.raises(DevStackError, match="(?s)pg_ctl.*tail of .*pg.log.*could not"):
            pg.start()
    pg.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs postgres as nobody")
def test_root_refuses_data_dir_nobody_cannot_enter(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    os.chown(private, 12345, 12345)  # not ours, so the launcher must not chmod it
    with pytest.raises(DevStackError, match="cannot enter .*private"):
        PostgresServer(private / "pg").start()
    assert private.stat().st_mode & 0o777 == 0o700
