"""`erpsync archive ...`: the archive's schema, its archiver process, the index restore and the retention."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from typing import Any

from worker.archive import Archiver, IndexState, check_index, check_schema, migrate, ready_engine, restore_index
from worker.archive.database import shown_url
from worker.archive.retention import prune
from worker.celery_app.enqueue import publish
from worker.celery_app.priority import lower_priority
from worker.cli.console import EXIT_OK, EXIT_USAGE, out, plural
from worker.errors import ArchiveUnavailable, UserError
from worker.observability import logs
from worker.ops.overview import archive
from worker.pipeline.intake import request_intake
from worker.settings import Settings, get_settings
from worker.store import client as redis_client
from worker.store.outbox import Outbox

__all__ = ["add_archive_commands"]

log = logging.getLogger(__name__)


def _settings() -> Settings:
    settings = get_settings()
    if not settings.archive_enabled:
        raise UserError("the archive is off (ERPSYNC_ARCHIVE_URL=off): set ERPSYNC_ARCHIVE_URL to use it")
    return settings


def _outbox(settings: Settings) -> Outbox:
    return Outbox(redis_client.get_redis(settings), settings)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    before, now = migrate(settings)
    if before == now:
        out.print(f"archive at {shown_url(settings)}: schema revision {now}, nothing to do")
    else:
        out.print(f"archive at {shown_url(settings)}: schema revision {before or 'none'} -> {now}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings()
    logs.setup(settings)
    done = lower_priority(args.nice)
    if done:
        log.info("CPU priority lowered: %s", ", ".join(done))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("archiver started: archive at %s", shown_url(settings))
    engine = None
    while engine is None and not stop.is_set():
        try:
            engine = ready_engine(settings)
        except ArchiveUnavailable as exc:  # a database not up yet: wait for it, the outbox keeps everything
            log.warning("archiving waits 2s: %s", exc)
            stop.wait(2.0)
    if engine is not None:
        Archiver(_outbox(settings), engine, settings).run(stop)
    return EXIT_OK


def cmd_restore_index(args: argparse.Namespace) -> int:
    settings = _settings()
    engine = ready_engine(settings)
    outbox = _outbox(settings)
    if outbox.epoch() is not None and not args.force:
        raise UserError(
            "the duplicate index is in Redis (its epoch is there): nothing to restore; --force writes the archive's "
            "entries over it"
        )
    written = restore_index(outbox, engine, settings)
    request_intake(publish, settings.intake_chunk_docs)  # what waited for the index is claimed now
    out.print(f"duplicate index restored from the archive: {plural(written, 'entry', 'entries')}; intake goes on")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    settings = _settings()
    pruned = prune(ready_engine(settings), settings)
    if args.json:
        print(json.dumps(pruned))
    elif not pruned:
        out.print("retention is 0 (keep everything): nothing pruned")
    else:
        out.print("pruned: " + ", ".join(f"{name} {n}" for name, n in pruned.items()))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings()
    data = archive(redis_client.get_redis(settings), settings)
    data["url"] = shown_url(settings)
    data["schema"] = check_schema(settings)
    if args.check_index:
        data["index"] = check_index(_outbox(settings), ready_engine(settings), settings).value
    if args.json:
        print(json.dumps(data))
        return EXIT_OK
    out.print(f"archive {data['url']} (schema {data['schema']}): lag {plural(int(data['lag']), 'entry', 'entries')}"
              + (f", oldest {data['oldest_seconds']:.1f}s" if data["oldest_seconds"] is not None else "")
              + f"; duplicate index {data['index']}")  # fmt: skip
    if data["error"]:
        out.print(f"  last error: {data['error']}")
    return EXIT_OK if data["index"] != IndexState.LOST else EXIT_USAGE


def add_archive_commands(sub: Any) -> None:
    parser = sub.add_parser("archive", help="the archive: migrate its schema, run the archiver, restore the index")
    commands = parser.add_subparsers(dest="archive_command", required=True)
    p = commands.add_parser("migrate", help="create or upgrade the archive's schema (run before the workers)")
    p.set_defaults(func=cmd_migrate)
    p = commands.add_parser("run", help="the archiver: move recorded outcomes from Redis into the archive")
    p.add_argument(
        "--nice",
        type=int,
        default=10,
        help="run at this CPU priority (default 10): the archive takes the CPU the workers leave, and catches up "
        "when a burst ends (0: no change)",
    )
    p.set_defaults(func=cmd_run)
    p = commands.add_parser(
        "restore-index", help="rebuild the duplicate index in Redis from the archive after Redis lost its data"
    )
    p.add_argument("--force", action="store_true", help="restore even though Redis still has the index")
    p.set_defaults(func=cmd_restore_index)
    p = commands.add_parser("prune", help="delete what is older than ERPSYNC_ARCHIVE_RETENTION_DAYS now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prune)
    p = commands.add_parser("status", help="the archive's lag, schema and the duplicate index's state")
    p.add_argument("--check-index", action="store_true", help="decide the index's state now (as a worker would)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
