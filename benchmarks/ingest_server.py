"""The census service plus a no-op endpoint on the same app, for `benchmarks.ingest` (run as a process).

    python -m benchmarks.ingest_server --database-url URL --port P --admin-token-file F [--ingest-workers N]

``POST /bench/noop`` reads the body and answers ``{}``: the same server, routing, middleware and body
reading as ``POST /v1/reports``, without validation, authentication or storage.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from fastapi import Request

from api.app import create_app
from api.settings import Settings


def main() -> None:
    """Build the app with the no-op route and serve it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--admin-token-file", type=Path, required=True)
    parser.add_argument("--ingest-workers", type=int, help="pricing workers (default: the service's)")
    args = parser.parse_args()
    settings = Settings(database_url=args.database_url, port=args.port, admin_token_file=args.admin_token_file,
                        log_level="WARNING", ingest_workers=args.ingest_workers)  # fmt: skip
    app = create_app(settings)

    @app.post("/bench/noop", include_in_schema=False)
    async def noop(request: Request) -> dict[str, str]:
        await request.body()
        return {}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
