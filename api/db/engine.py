"""Engines for SQLite (embedded default: one file, WAL mode) and PostgreSQL (by URL), write transactions, and
migration at start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str, *, prepared: bool = True) -> Engine:
    """An engine for `url`. SQLite gets WAL, full fsync on commit, foreign keys and a busy timeout, so a
    commit that returned is on disk (nothing acknowledged is lost) and readers never block the writer.

    `prepared` False (PostgreSQL): the driver never turns a statement into a prepared one, so each is planned
    for the table as it is now.  Ingest's writers want that: psycopg prepares a statement after 5 runs, and the
    server may keep the plan it made while a table was new and small (a sequential scan of ``reports`` for each
    batch's known report ids, growing with the table until autovacuum analyses it: measured 330-900 us of server
    CPU per report on a fresh database)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:  # noqa: ANN401 - DB-API objects
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    connect_args = {} if prepared else {"prepare_threshold": None}
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args=connect_args)


def sqlite_file_url(engine: Engine) -> str | None:
    """The URL another process opens `engine`'s SQLite file with; None for in-memory SQLite and other databases."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return engine.url.render_as_string(hide_password=False)


def shared_url(engine: Engine) -> str | None:
    """The URL another process (a storing pricing worker, `api.ingest.pool`) opens `engine`'s database with: an
    SQLite file's (`sqlite_file_url`) or a PostgreSQL server's, password included (it never leaves this host's
    processes: workers get it on a pipe, not a command line); None for a database no second process can open
    (in-memory SQLite)."""
    if engine.dialect.name == "postgresql":
        return engine.url.render_as_string(hide_password=False)
    return sqlite_file_url(engine)


def begin_write(connection: Connection) -> None:
    """Start `connection`'s transaction as a writer.  On SQLite that takes the database's write lock now (``BEGIN
    IMMEDIATE``, waiting up to the busy timeout) rather than at the first write: a transaction that reads, then
    writes, must not see state that another process (a storing pricing worker, `api.ingest.pool`) changes
    before it writes, and SQLite would refuse the late upgrade anyway.  Elsewhere a no-op (PostgreSQL's
    transactions lock the rows they write, and ingest reads node states ``FOR UPDATE``)."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for a transaction that writes (`begin_write`): committed on success, else rolled back."""
    with engine.begin() as connection:
        begin_write(connection)
        yield connection


STARTUP_LOCK = 0x5355414E4C49  # "SUANLI": the PostgreSQL advisory lock replicas take around their start-up


@contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({STARTUP_LOCK})")
        conn.commit()
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({STARTUP_LOCK})")
            conn.commit()


def startup_lock(engine: Engine) -> AbstractContextManager[None]:
    """On PostgreSQL, a session advisory lock held while one replica migrates, seeds and makes its first admin
    token, so replicas started together do these one after the other; elsewhere nothing (one process)."""
    return _advisory_lock(engine) if engine.dialect.name == "postgresql" else nullcontext()


# The PostgreSQL advisory lock that makes replicas starting together migrate one after another (any fixed key).
MIGRATION_LOCK = 0x5375616E6C69  # "Suanli"


def migrate(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied (idempotent).  On PostgreSQL under a transaction-scoped
    advisory lock: replicas that start at once (a Deployment of several) migrate one after another, and each
    after the first finds the schema at head, instead of racing to create the same tables."""
    from alembic import command  # noqa: PLC0415 - 1.5 s of imports that only start-up needs, not pricing workers
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
