"""Engines by URL: SQLite (the embedded default, a file) or PostgreSQL.

SQLite gets WAL and a busy timeout so that several consumer threads can
write to one file; foreign keys are switched on, as SQLite leaves them off.
``synchronous=NORMAL`` is SQLite's advice for WAL: a commit no longer waits for
an fsync (2 ms each here, most of a checkout's cost), a crashed process loses
nothing, and only a power cut can roll back the last commits, never corrupt.
"""

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from couponsim.errors import UnknownDatabaseUrl

DEFAULT_DATABASE_URL = "sqlite:///couponsim.sqlite"
SUPPORTED = ("sqlite", "postgresql")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<malformed URL>"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; a URL of another kind of database is refused at once."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UnknownDatabaseUrl(f"malformed database URL: {exc}") from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise UnknownDatabaseUrl(
            f"unsupported database {parsed.get_backend_name()!r} in {redact(url)}: "
            f"use sqlite:///FILE or postgresql+psycopg://..."
        )
    if parsed.get_backend_name() == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        engine = create_engine(parsed, connect_args={"timeout": 30, "check_same_thread": False},
                               # one connection, or every connection gets its own database
                               poolclass=StaticPool if in_memory else None)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
