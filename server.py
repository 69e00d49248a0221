"""Command line and wiring: settings → database → context → Tornado application.

    python server.py [--host H] [--port P] [--data-dir D] [--mongo-url URL] [--workers N]
                     [--executor local|dask://HOST:8786]
    python server.py create-admin USERNAME --password PASSWORD [--data-dir D | --mongo-url URL]

Without a MongoDB URL the embedded secantusdb server is started as a child process
under ``<data-dir>/db`` and stopped again on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import conf
from conf import Settings
from engine.dispatch import Dispatcher, LocalDispatcher
from handlers import make_app
from services.accounts import username_key
from services.context import AppContext
from storage.database import connect, ensure_indexes
from storage.embedded import EmbeddedMongo

log = logging.getLogger("faceswap")


def cookie_secret(settings: Settings) -> str:
    """The configured secret, else one generated once and kept (0600) in the data dir."""
    if settings.cookie_secret:
        return settings.cookie_secret
    path = settings.data_path / "cookie_secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@contextlib.asynccontextmanager
async def open_context(
        settings: Settings) -> AsyncIterator[tuple[AppContext, EmbeddedMongo | None]]:
    """Start the embedded database if no URL is configured, connect, create indexes."""
    settings.data_path.mkdir(parents=True, exist_ok=True)
    embedded = None
    url = settings.mongo_url
    if not url:
        embedded = EmbeddedMongo(settings.data_path)
        url = await asyncio.to_thread(embedded.start)
    db = connect(url, settings.db_name, settings.db_timeout_ms)
    ctx = None
    try:
        await ensure_indexes(db, username_key)
        if settings.executor == "local":
            dispatcher: Dispatcher = LocalDispatcher(settings.workers,
                                                     memory_mb=settings.worker_memory_mb)
        else:  # imported here: the local default never loads distributed
            from engine.dask_dispatch import DaskDispatcher

            dispatcher = await DaskDispatcher.connect(settings.executor)
        ctx = AppContext.build(settings, db, dispatcher, embedded.alive if embedded else None)
        yield ctx, embedded
    finally:
        if ctx is not None:
            await ctx.close()
        db.client.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def housekeeping(ctx: AppContext, interval: float = 600.0) -> None:
    """Periodic clean-up: expired resumable uploads, results past their retention,
    expired previews and the kept faces of files that are gone."""
    while True:
        try:
            removed = await ctx.uploads.expire_partial()
            expired = await ctx.tasks.expire_results(ctx.settings.result_retention_days)
            await ctx.previews.expire()
            await ctx.faces.sweep()
            if removed or expired:
                log.info("removed %d expired partial upload(s), %d expired result(s)",
                         removed, expired)
        except Exception:
            log.exception("housekeeping failed")
        await asyncio.sleep(interval)


async def watch_embedded(embedded: EmbeddedMongo) -> None:
    """Restart the embedded database if it dies; /healthz reports it down meanwhile."""
    while True:
        await asyncio.sleep(1.0)
        if embedded.alive():
            continue
        log.error("embedded database process died; restarting it")
        try:
            await asyncio.to_thread(embedded.start)
        except RuntimeError:
            log.exception("embedded database failed to restart; retrying in 5 s")
            await asyncio.sleep(5.0)


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_context(settings) as (ctx, embedded):
        app = make_app(ctx, cookie_secret(settings))
        # 1 MiB body chunks instead of Tornado's 64 KiB: the per-chunk Python work was the
        # upload bottleneck (a 1 GB upload went from ~330 to ~670 MB/s on loopback).
        server = app.listen(settings.port, settings.host, max_body_size=1024 * 1024,
                            chunk_size=1024 * 1024, idle_connection_timeout=120)
        ctx.uploads.remove_stale_temp()
        await ctx.tasks.recover()
        if added := await ctx.tasks.backfill_results():
            log.info("recorded %d result(s) made before the file list", added)
        # Warm in the background: the server answers meanwhile (a call waits for it).
        background_start = asyncio.create_task(ctx.start_workers())
        background = [asyncio.create_task(housekeeping(ctx)), background_start]
        if embedded:
            background.append(asyncio.create_task(watch_embedded(embedded)))
        log.info("listening on http://%s:%d (data in %s)", settings.host, settings.port,
                 settings.data_path)
        await stop.wait()
        log.info("shutting down")
        for job in background:
            job.cancel()
        server.stop()
        await server.close_all_connections()


async def create_admin(settings: Settings, username: str, password: str) -> None:
    """Create or promote an administrator. With the embedded database and a server
    running on the same data dir, its live database is used (never stopped or started)."""
    if not settings.mongo_url:
        live = EmbeddedMongo(settings.data_path).live_url()
        if live is not None:
            settings = dataclasses.replace(settings, mongo_url=live, workers=1)
    async with open_context(settings) as (ctx, _):
        user_id, created = await ctx.accounts.ensure_admin(username, password)
    print(f"{'created' if created else 'promoted'} administrator {username} (id {user_id})")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["create-admin"]:
        parser = argparse.ArgumentParser(prog="server.py create-admin")
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        conf.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        try:
            asyncio.run(create_admin(conf.load(args), args.username, args.password))
        except Exception as exc:  # a clear line, not a trace, for a command-line user
            print(f"create-admin failed: {getattr(exc, 'msg', exc)}", file=sys.stderr)
            return 2
        return 0
    parser = argparse.ArgumentParser(prog="server.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    conf.add_arguments(parser)
    try:
        asyncio.run(serve(conf.load(parser.parse_args(argv))))
    except RuntimeError as exc:  # e.g. the data dir's database belongs to a running server
        print(f"server.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
