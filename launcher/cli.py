"""The `taskdeck` command: web, worker, migrate, create-admin, dev, mail."""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from shared import eventloop
from shared.config import ConfigError, Settings, load_dotenv_file
from shared.observability.logs import configure_logging


def load_settings() -> Settings:
    """Settings from the environment (and .env); a bad configuration exits 2 with one line per problem."""
    load_dotenv_file()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"taskdeck: configuration error: {problem}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


@contextmanager
def storage_errors_exit() -> Iterator[None]:
    """EXPORT_STORAGE that cannot work (no bucket, refused credentials) stops web and worker at start: exit 2."""
    from shared.storage import StorageError

    try:
        yield
    except StorageError as exc:
        print(f"taskdeck: export storage error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_web(args: argparse.Namespace) -> None:
    from web.serve import serve

    with storage_errors_exit():
        serve(load_settings(), host=args.host, port=args.port, procs=args.procs, reuse_port=args.reuse_port)


def cmd_worker(args: argparse.Namespace) -> None:
    from worker.settings import run_worker_process

    settings = load_settings()
    with storage_errors_exit():
        run_worker_process(settings)


def cmd_migrate(args: argparse.Namespace) -> None:
    from shared.db.migrate import migrate

    applied = asyncio.run(migrate(load_settings().database_url))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")


def cmd_create_admin(args: argparse.Namespace) -> None:
    from launcher.bootstrap import create_admin

    settings = load_settings()
    try:
        created = asyncio.run(create_admin(settings, email=args.email, password=args.password))
    except ValueError as exc:
        print(f"taskdeck: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{'created' if created else 'promoted'} admin {args.email.lower()}")


def cmd_dev(args: argparse.Namespace) -> None:
    from launcher.dev import Topology, run_dev

    topology = Topology(replica=args.replica, web_procs=args.web_procs, worker_procs=args.worker_procs,
                        s3=args.s3, ha=args.ha)
    raise SystemExit(run_dev(host=args.host, port=args.port, var_dir=args.var, topology=topology))


def _caught_mails(mail_dir: Path, to: str | None) -> list[tuple[Path, Any]]:
    """(path, headers) of each mail in the dev sink's directory, oldest first; only those to ``to`` if given."""
    import email.parser
    import email.policy

    parser = email.parser.BytesParser(policy=email.policy.default)
    mails = []
    for path in sorted(mail_dir.glob("*.eml")):  # names sort oldest first
        headers = parser.parsebytes(path.read_bytes(), headersonly=True)
        if not to or to.lower() in str(headers["X-Envelope-To"] or headers["To"] or "").lower():
            mails.append((path, headers))
    return mails


def cmd_mail(args: argparse.Namespace) -> None:
    """What `taskdeck dev`'s SMTP sink received (var/mail): a list, or the newest mail decoded (--last)."""
    from launcher.devstack import mail_text

    mail_dir = Path(args.var) / "mail"
    deadline = time.monotonic() + args.wait
    while not (mails := _caught_mails(mail_dir, args.to)) and time.monotonic() < deadline:
        time.sleep(0.2)  # --wait: the worker sends a moment after the request that caused the mail
    if not mails:
        print(f"taskdeck: no mail{' to ' + args.to if args.to else ''} in {mail_dir}", file=sys.stderr)
        raise SystemExit(1)
    if args.last:
        print(mail_text(mails[-1][0].read_bytes()), end="")
        return
    for path, headers in mails:
        print(f"{path.name}  {headers['To']}  {headers['Subject']}")


def _positive(raw: str) -> int:
    value = int(raw) if raw.isdigit() else 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 64, got {raw!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskdeck", description="Taskdeck task-management service")
    sub = parser.add_subparsers(dest="command", required=True)
    web = sub.add_parser("web", help="serve HTTP")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8080)
    web.add_argument("--procs", type=_positive, default=1,
                     help="serve the port from N processes (gunicorn; /metrics merges them)")
    web.add_argument("--reuse-port", action="store_true", help="let several processes share the port")
    web.set_defaults(func=cmd_web)
    sub.add_parser("worker", help="run one arq worker process").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply pending sql/ migrations").set_defaults(func=cmd_migrate)
    admin = sub.add_parser("create-admin", help="create an admin, or promote an existing user")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.set_defaults(func=cmd_create_admin)
    dev = sub.add_parser("dev", help="embedded PostgreSQL, Redis, SMTP sink, web and worker under ./var")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--var", default="var", help="data directory (default ./var)")
    # The scale-out topology on one machine: what docker-compose.yml runs, without Docker.
    dev.add_argument("--replica", action="store_true", help="add an embedded streaming replica for reads")
    dev.add_argument("--web-procs", type=_positive, default=1, help="web processes on the one port")
    dev.add_argument("--worker-procs", type=_positive, default=1, help="arq worker processes")
    # --s3 (exports on S3): an embedded moto endpoint unless EXPORT_STORAGE is already s3://...
    dev.add_argument("--s3", action="store_true", help="store exports on an embedded S3 endpoint (moto)")
    dev.add_argument("--ha", action="store_true",
                     help="no single point of failure: etcd + 2 Patroni PostgreSQL nodes, Redis + replica + 3 sentinels")
    dev.set_defaults(func=cmd_dev)
    mail = sub.add_parser("mail", help="the mails `taskdeck dev` caught (var/mail): list them, or print the newest")
    mail.add_argument("--var", default="var", help="data directory of `taskdeck dev` (default ./var)")
    mail.add_argument("--to", help="only mails to this address")
    mail.add_argument("--last", action="store_true", help="print the newest mail, decoded: headers and text")
    mail.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                      help="wait up to SECONDS for a (matching) mail when there is none yet")
    mail.set_defaults(func=cmd_mail)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    eventloop.install()
    args.func(args)


if __name__ == "__main__":
    main()
