"""`atlas serve | worker | keys | migrate`: entry points for the API and its offline workers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from atlas import logs
from session_api.config import Settings, get_settings

logger = logging.getLogger("session_api")


def run(command: str, argv: list[str]) -> int:
    handlers = {"serve": _serve, "worker": _worker, "keys": _keys, "migrate": _migrate}
    try:
        return handlers[command](argv)
    except ValueError as exc:  # bad settings (e.g. a placeholder secret outside dev)
        print(f"atlas {command}: {exc}", file=sys.stderr)
        return 2


def _setup_logging() -> None:
    logs.configure(logging.INFO)  # the one format of every Atlas process, `extra=` fields included


# --- serve -----------------------------------------------------------------------------------
def _serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="atlas serve", description="Run the Atlas API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--no-worker", action="store_true", help="do not run the offline worker in-process"
    )
    args = parser.parse_args(argv)
    import uvicorn

    from session_api.main import create_app

    _setup_logging()
    settings = get_settings()
    if "public_url" not in settings.model_fields_set:
        # Links in responses must point at where this server actually listens.
        local = "127.0.0.1" if args.host in {"0.0.0.0", "::"} else args.host
        settings = settings.model_copy(update={"public_url": f"http://{local}:{args.port}"})
    app = create_app(settings, worker=False if args.no_worker else None)
    print(_hint(settings, args.host, args.port), file=sys.stderr, flush=True)
    # log_config=None: uvicorn's records reach the root logger, and so the Atlas format.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
        log_config=None,
        limit_concurrency=settings.max_connections,
    )
    uvicorn.Server(config).run()
    return 0


def _hint(settings: Settings, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    return (
        f"Atlas API on {base} (data in {settings.data_dir.resolve()})\n"
        "  create a key:  atlas keys create --name demo\n"
        f'  submit a job:  curl -H "Authorization: Bearer $KEY" -F audio=@speech.wav '
        f"-F image=@face.jpg {base}/v1/generate\n"
        f'  poll it:       curl -H "Authorization: Bearer $KEY" {base}/v1/jobs/JOB_ID'
    )


# --- worker ----------------------------------------------------------------------------------
def _worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas worker", description="Run offline job workers against the shared database."
    )
    parser.add_argument("--concurrency", type=int, default=None, help="jobs at once (default 1)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULT_DRAIN_S,
        metavar="SECONDS",
        help=(
            "on SIGTERM/SIGINT, stop claiming and let jobs in hand finish for this long, then hand "
            f"them back to the queue; a second signal hands them back at once (default "
            f"{DEFAULT_DRAIN_S:g}, under the usual 30 s kill timeout)"
        ),
    )
    args = parser.parse_args(argv)
    _setup_logging()
    settings = get_settings()
    if args.concurrency is not None:
        settings = settings.model_copy(update={"worker_concurrency": args.concurrency})
    asyncio.run(_run_worker(settings, drain_s=max(0.0, args.drain_timeout)))
    return 0


DEFAULT_DRAIN_S = 25.0


async def _run_worker(settings: Settings, *, drain_s: float = DEFAULT_DRAIN_S) -> None:
    from session_api.datadir import open_data_dir

    settings, scratch = open_data_dir(settings)
    try:
        await _serve_worker(settings, drain_s)
    finally:
        scratch.close()


async def _serve_worker(settings: Settings, drain_s: float) -> None:
    from session_api.services import open_services

    services = await open_services(settings, migrate=False, worker=True, background=True)
    stop = asyncio.Event()
    abort = asyncio.Event()  # a second signal: release the jobs in hand now

    def on_signal() -> None:
        (abort if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    logger.info("worker started", extra={"concurrency": settings.worker_concurrency})
    try:
        await stop.wait()
        logger.info("worker stopping", extra={"drain_timeout_s": drain_s})
        if services.worker is not None:
            await services.worker.drain(drain_s, abort=abort)
    finally:
        await services.aclose()
        logger.info("worker stopped")


# --- migrate ---------------------------------------------------------------------------------
def _migrate(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="atlas migrate", description="Upgrade the schema.").parse_args(
        argv
    )
    revision = asyncio.run(_upgrade(get_settings()))
    print(f"database at revision {revision}")
    return 0


async def _upgrade(settings: Settings) -> str | None:
    from session_api.datadir import prepare_data_dir
    from session_api.db.migrate import current_revision, upgrade
    from session_api.db.session import Database

    if settings.is_embedded:
        prepare_data_dir(settings)
    db = Database(url=settings.resolved_database_url)
    try:
        await upgrade(db)
        return await current_revision(db)
    finally:
        await db.aclose()


# --- keys ------------------------------------------------------------------------------------
def _keys(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="atlas keys", description="Manage API keys.")
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="create a key; prints it once")
    create.add_argument("--name", required=True)
    create.add_argument("--rpm", type=int, default=None, help="requests per minute (default 30)")
    create.add_argument("--monthly-cap", type=int, default=None, help="generations per month")
    create.add_argument(
        "--max-session-seconds",
        type=int,
        default=None,
        help="ceiling on a realtime session's max_duration_seconds (default: the server's)",
    )
    sub.add_parser("list", help="list keys (prefixes only)")
    revoke = sub.add_parser("revoke", help="revoke a key by its prefix (sk_live_XXXX)")
    revoke.add_argument("prefix")
    args = parser.parse_args(argv)
    return asyncio.run(_keys_async(args, get_settings()))


async def _keys_async(args: argparse.Namespace, settings: Settings) -> int:
    from session_api import auth
    from session_api.datadir import prepare_data_dir
    from session_api.db.migrate import upgrade
    from session_api.db.session import Database

    if settings.is_embedded:
        prepare_data_dir(settings)
    db = Database(url=settings.resolved_database_url)
    try:
        if settings.is_embedded:
            await upgrade(db)  # a laptop may create its first key before the first serve
        if args.action == "create":
            rpm = settings.default_rpm if args.rpm is None else args.rpm
            new = await auth.create_key(
                db,
                name=args.name,
                rpm=rpm,
                monthly_cap=args.monthly_cap,
                max_session_s=args.max_session_seconds,
            )
            print(new.key, flush=True)  # line 1 reaches `| head -1` at once
            print(new.webhook_secret)
            print(
                f"Created key {new.key_prefix} ({new.name}): line 1 is the API key, line 2 its "
                "webhook signing secret. Both are shown only now.",
                file=sys.stderr,
            )
            return 0
        if args.action == "list":
            for row in await auth.list_keys(db):
                state = "revoked" if row.revoked_at else "active"
                cap = "-" if row.monthly_cap is None else str(row.monthly_cap)
                created = row.created_at.strftime("%Y-%m-%d")
                print(f"{row.key_prefix}\t{state}\t{row.rpm}rpm\tcap={cap}\t{created}\t{row.name}")
            return 0
        try:
            count = await auth.revoke_key(db, args.prefix)
        except auth.AmbiguousPrefix as exc:
            print(f"atlas keys revoke: {exc}; pass the full key instead", file=sys.stderr)
            return 1
        if count == 0:
            print(f"atlas keys revoke: no active key with prefix {args.prefix}", file=sys.stderr)
            return 1
        print(f"revoked {args.prefix}")
        return 0
    finally:
        with contextlib.suppress(Exception):
            await db.aclose()
