"""`taskdeck web`: one process (aiohttp's run_app), or N processes on one port under gunicorn's arbiter.

Why gunicorn (``aiohttp.GunicornWebWorker``) rather than N ``reuse_port`` processes under a parent of
our own: the arbiter binds the port once and the processes share that one listening socket, so a
process that dies loses no queued connection and the port keeps answering while it is replaced; it
already restarts dead processes, stops them gracefully on SIGTERM and reports boot failures. A
hand-written parent would have to do all that. See docs/scale-out.md.

Both paths drain on SIGTERM: the listening socket closes at once, requests in flight get up to
DRAIN_SECONDS to finish, then the pools close and the process exits 0.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from aiohttp.worker import GunicornWebWorker
from gunicorn.app.base import BaseApplication

from shared.config import Settings

logger = logging.getLogger("app.web.serve")

DRAIN_SECONDS = 30
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(settings: Settings, *, host: str, port: int, procs: int = 1, reuse_port: bool = False) -> None:
    if procs == 1:
        _serve_one(settings, host, port, reuse_port)
        return
    created = _prepare_metrics_dir()  # before prometheus_client is imported: it picks its storage then
    arbiter = os.getpid()
    try:
        _Gunicorn(settings, host=host, port=port, procs=procs).run()
    finally:
        # Forked processes unwind through here too when they exit: only the arbiter may remove the directory.
        if created is not None and os.getpid() == arbiter:
            shutil.rmtree(created, ignore_errors=True)


def _serve_one(settings: Settings, host: str, port: int, reuse_port: bool) -> None:
    from aiohttp import web

    from web.app import create_app

    web.run_app(create_app(settings), host=host, port=port, reuse_port=reuse_port, access_log=None,
                shutdown_timeout=DRAIN_SECONDS, print=lambda message: logger.info(message.strip()))


def _prepare_metrics_dir() -> Path | None:
    """Each process writes its samples under PROMETHEUS_MULTIPROC_DIR and /metrics merges them.

    An operator's directory is emptied (samples of an earlier run would be added to ours); without one, a
    temporary directory is made for this run and removed after. Returns the directory made, if any.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        return None
    made = Path(tempfile.mkdtemp(prefix="taskdeck-metrics-"))
    os.environ[MULTIPROC_ENV] = str(made)
    return made


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # drop its "live" gauges (replica lag) from /metrics


class _WebWorker(GunicornWebWorker):  # type: ignore[misc]
    """aiohttp's gunicorn worker, serving the listening sockets themselves rather than gunicorn's wrappers.

    On uvloop, closing a server closes the socket's descriptor in libuv and then calls ``close()`` on the
    object it was given; on gunicorn's wrapper that second close fails and every process logged "Error while
    closing socket [Errno 9] Bad file descriptor" when it stopped. A plain socket object knows it is closed.
    """

    def run(self) -> None:
        self.sockets = [getattr(listener, "sock", listener) for listener in self.sockets]
        super().run()


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    """gunicorn configured in code: no config file, no command line of its own, no control socket."""

    def __init__(self, settings: Settings, *, host: str, port: int, procs: int) -> None:
        self.settings, self.options = settings, {
            "bind": f"{host}:{port}", "workers": procs, "worker_class": _WebWorker,
            "graceful_timeout": DRAIN_SECONDS, "timeout": DRAIN_SECONDS + 30, "keepalive": 75,
            "control_socket_disable": True,  # else it creates ~/.gunicorn/gunicorn.ctl
            "accesslog": None, "child_exit": _child_exit, "proc_name": "taskdeck-web",
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        settings = self.settings

        async def factory() -> Any:  # called in each process after the fork
            from web.app import create_app

            return create_app(settings)

        return factory
