"""The Alembic migrations build exactly the schema the code declares (no drift), on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from api.db.engine import make_engine, migrate
from api.db.tables import metadata


def test_migrated_database_matches_the_declared_tables(database_url: str) -> None:
    """After `migrate`, Alembic finds nothing to change between the database and `api.db.tables`."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        engine.dispose()
