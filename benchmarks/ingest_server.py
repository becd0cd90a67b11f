"""The census service plus a no-op endpoint on the same app, for `benchmarks.ingest` (run as a process).

    python -m benchmarks.ingest_server --database-url URL --port P --admin-token-file F [--ingest-workers N]
                                       [--uvicorn-workers N]

``POST /bench/noop`` reads the body and answers ``{}``: the same server, routing, middleware and body
reading as ``POST /v1/reports``, without validation, authentication or storage.

``--uvicorn-workers N`` (N > 1) serves with uvicorn's own worker processes instead, each a full copy of the app
(lifespan included: its own housekeeper, writer and pricing workers), for comparison with the pricing pool.  The
database is migrated and the admin token made here once first, so the copies do not race to make them.  This is
a measurement only: the service itself runs one uvicorn worker (its dispatcher and housekeeper must run once).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request

from api.app import create_app, ensure_admin_token
from api.db.engine import make_engine, migrate
from api.db.seed import seed_regions
from api.settings import Settings


def bench_app(settings: Settings | None = None) -> FastAPI:
    """The service's app for `settings` (default: from the ``SUANLI_`` environment) with the no-op route."""
    app = create_app(settings or Settings())

    @app.post("/bench/noop", include_in_schema=False)
    async def noop(request: Request) -> dict[str, str]:
        await request.body()
        return {}

    return app


def prepare(settings: Settings) -> None:
    """Migrate and seed the database and make the admin token, once, before uvicorn's workers start."""
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            seed_regions(conn)
        ensure_admin_token(engine, settings)
    finally:
        engine.dispose()


def main() -> None:
    """Build the app with the no-op route and serve it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-token-file", type=Path, required=True)
    parser.add_argument("--ingest-workers", type=int, help="pricing workers (default: the service's)")
    parser.add_argument("--uvicorn-workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    args = parser.parse_args()
    settings = Settings(
        database_url=args.database_url,
        port=args.port,
        admin_token_file=args.admin_token_file,
        log_level="WARNING",
        ingest_workers=args.ingest_workers,
    )
    if args.uvicorn_workers <= 1:
        uvicorn.run(bench_app(settings), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
        return
    prepare(settings)
    os.environ |= {
        "SUANLI_DATABASE_URL": args.database_url,
        "SUANLI_ADMIN_TOKEN_FILE": str(args.admin_token_file),
        "SUANLI_LOG_LEVEL": "WARNING",
        "SUANLI_PORT": str(args.port),
    }
    if args.ingest_workers is not None:
        os.environ["SUANLI_INGEST_WORKERS"] = str(args.ingest_workers)
    # A copy of the service takes longer than uvicorn's default 5 s to start on a busy machine (imports, the compute
    # model), and uvicorn kills and restarts a worker that has not answered its health check by then, forever.
    uvicorn.run(
        "benchmarks.ingest_server:bench_app",
        factory=True,
        workers=args.uvicorn_workers,
        timeout_worker_healthcheck=120,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
