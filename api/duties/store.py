"""The ``leases`` rows: acquire, renew and release by compare-and-set, and the fence a duty's writes take.

Every comparison of time uses the database's clock (`database_now`), so replicas on hosts whose clocks differ
still agree on whether a lease has expired. On PostgreSQL each statement is one conditional UPDATE of one row
(concurrent ones are serialised on the row lock and re-checked); on SQLite the same statements run inside
``BEGIN IMMEDIATE`` (`api.db.engine.write_transaction`), one writer at a time.

Must not: decide when to ask (`api.duties.lease` does) or hold state between calls.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, Float, cast, literal_column, select, update
from sqlalchemy.sql.elements import ColumnElement

from api.db.engine import write_transaction
from api.db.tables import leases
from api.duties.lease import LeaseLost


def database_now(dialect: str) -> ColumnElement[Any]:
    """The database's clock in seconds since the epoch, as an SQL expression (millisecond resolution or better)."""
    if dialect == "postgresql":
        return cast(literal_column("extract(epoch from clock_timestamp())"), Float)
    return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Float)


def acquire(engine: Engine, duty: str, holder: str, lease_seconds: float) -> int | None:
    """Take `duty`'s lease if it has expired (whoever held it): the term grows by one. Returns the new term, or
    None when another process holds it."""
    now = database_now(engine.dialect.name)
    statement = (
        update(leases)
        .where(leases.c.duty == duty, leases.c.expires_at <= now)
        .values(holder=holder, term=leases.c.term + 1, expires_at=now + lease_seconds, acquired_at=now)
        .returning(leases.c.term)
    )
    with write_transaction(engine) as conn:
        term = conn.execute(statement).scalar()
    return None if term is None else int(term)


def renew(engine: Engine, duty: str, holder: str, term: int, lease_seconds: float) -> bool:
    """Extend the lease this process holds under `term`, only while it has not expired by the database's clock
    (an expired lease is never revived: the holder asks for a new term). False: not held any more."""
    now = database_now(engine.dialect.name)
    statement = (
        update(leases)
        .where(leases.c.duty == duty, leases.c.holder == holder, leases.c.term == term, leases.c.expires_at > now)
        .values(expires_at=now + lease_seconds)
    )
    with write_transaction(engine) as conn:
        return bool(conn.execute(statement).rowcount)


def release(engine: Engine, duty: str, holder: str, term: int) -> bool:
    """End the lease now (at shutdown) so another process need not wait for it to expire."""
    now = database_now(engine.dialect.name)
    statement = (
        update(leases)
        .where(leases.c.duty == duty, leases.c.holder == holder, leases.c.term == term, leases.c.expires_at > now)
        .values(expires_at=now)
    )
    with write_transaction(engine) as conn:
        return bool(conn.execute(statement).rowcount)


def check(conn: Connection, duty: str, holder: str, term: int) -> None:
    """Inside a write transaction: `LeaseLost` unless `holder` holds `duty` under `term`, unexpired by the
    database's clock. On PostgreSQL the row is then locked FOR SHARE until the transaction ends, so no other
    process can take the lease (a new term) while this transaction's writes are pending; on SQLite the
    transaction's write lock already keeps every other writer out."""
    now = database_now(conn.dialect.name)
    found = conn.execute(
        select(leases.c.term)
        .where(leases.c.duty == duty, leases.c.holder == holder, leases.c.term == term, leases.c.expires_at > now)
        .with_for_update(read=True)
    ).first()
    if found is None:
        raise LeaseLost(duty, term)


def holders(conn: Connection) -> dict[str, tuple[str, int, float]]:
    """Every duty's (holder, term, seconds until expiry by the database's clock; negative: expired)."""
    now = database_now(conn.dialect.name)
    rows = conn.execute(select(leases.c.duty, leases.c.holder, leases.c.term, leases.c.expires_at - now))
    return {duty: (holder, int(term), float(left)) for duty, holder, term, left in rows}
