"""The archive's database: its engine from ERPSYNC_ARCHIVE_URL, its migrations, and the check at worker start.

PostgreSQL (`postgresql://` or `postgresql+psycopg://`, driven by psycopg 3) in production; an SQLite file by
default, so that a machine with nothing but Python keeps an archive too. Alembic migrates the schema:
`erpsync archive migrate` on PostgreSQL, before the workers start (they refuse to run on another revision); an
SQLite file is migrated by the first process that opens it (under a file lock: the workers of one machine start
together), since nobody else shares it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from worker.errors import ArchiveError, ArchiveUnavailable, ConfigurationError
from worker.redaction import redact_url
from worker.settings import Settings

__all__ = ["check_schema", "engine_for", "head_revision", "migrate", "ready_engine", "shown_url"]

MIGRATIONS = Path(__file__).with_name("migrations")


def shown_url(settings: Settings) -> str:
    """The archive's URL as logs and errors may show it (password masked)."""
    return redact_url(settings.archive_url)


def _normalized(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy's default driver for it is psycopg2, not installed)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


@lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    """One pooled engine per URL and process. SQLite: WAL (readers never block the archiver) and a busy timeout."""
    try:
        parsed = make_url(_normalized(url))
    except ArgumentError as exc:
        raise ConfigurationError(f"ERPSYNC_ARCHIVE_URL {redact_url(url)!r} is not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ConfigurationError(f"ERPSYNC_ARCHIVE_URL {redact_url(url)!r}: the archive runs on PostgreSQL or SQLite")
    return create_engine(parsed, pool_pre_ping=True, pool_size=4, max_overflow=4)


def _config(engine: Engine | None = None) -> Config:
    """Alembic's configuration: our migrations, run on `engine` (migrations/env.py takes it from here)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The schema revision this code writes."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the archive has no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(settings: Settings) -> tuple[str | None, str]:
    """Bring the archive's schema to this code's revision; (revision before, revision now)."""
    engine = engine_for(settings.archive_url)
    try:
        with _migration_lock(engine):
            before = current_revision(engine)
            command.upgrade(_config(engine), "head")
            return before, head_revision()
    except SQLAlchemyError as exc:
        raise ArchiveError(f"cannot migrate the archive at {shown_url(settings)}: {_short(exc)}") from None
    except CommandError as exc:  # a revision this code does not know: written by a newer erpsync
        raise ArchiveError(f"cannot migrate the archive at {shown_url(settings)}: {exc}") from None


def check_schema(settings: Settings) -> str:
    """The archive's revision, if it is this code's; else an ArchiveError that says to migrate."""
    engine = engine_for(settings.archive_url)
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        raise ArchiveUnavailable(f"cannot reach the archive at {shown_url(settings)}: {_short(exc)}") from None
    head = head_revision()
    if current != head:
        raise ArchiveError(
            f"the archive at {shown_url(settings)} is at schema revision {current or 'none'}, this code writes "
            f"{head}: run `erpsync archive migrate`"
        )
    return current


def ready_engine(settings: Settings) -> Engine:
    """The archive's engine, its schema checked: an SQLite file is migrated on first use, PostgreSQL must be."""
    engine = engine_for(settings.archive_url)
    if engine.dialect.name == "sqlite":
        try:
            check_schema(settings)
        except ArchiveError:
            migrate(settings)
    check_schema(settings)
    return engine


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """SQLite: one migrating process at a time (an advisory lock beside the file). PostgreSQL's migrations run
    in one transaction each, and are run by one operator command."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = Path(database).with_suffix(Path(database).suffix + ".lock")
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _short(exc: SQLAlchemyError) -> str:
    """A database error in one line, without SQL or parameters (they may hold document content)."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc).strip().splitlines()
    return redact_url(text[0] if text else type(exc).__name__)
