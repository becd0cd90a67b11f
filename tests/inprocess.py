"""The census service's application in the test process: ``create_app(settings)`` with its lifespan running (migrations,
seeding, the admin token, the pricing worker, the housekeeper, the dispatcher when configured) on an event loop
thread of its own, reached through httpx's ASGI transport.

It serves the route, auth and validation tests, which are about what the application answers and stores, without
paying a uvicorn subprocess's start-up (importing the service's stack again) for each of them. Tests about the
server itself (signals, TLS, disconnects, workers, clients in other processes) use `tests.service.ServiceProcess`,
a real uvicorn on 127.0.0.1. This module must not open a socket, and its clients must reach the application only
on the lifespan's own event loop (the pricing pool's pipes and the engines belong to it).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, ExitStack
from pathlib import Path
from typing import Any, cast

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI

from api.app import create_app
from api.settings import Settings

BASE_URL = "http://suanli.test"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # what `suanli serve` logs (api/cli/main.py)


class PortalTransport(httpx.BaseTransport):
    """A synchronous httpx transport that runs each request through httpx's ASGI transport on `portal`'s loop.

    The application's exceptions become 500 answers, as under uvicorn; a body is read whole before it is sent,
    and an answer (its bytes as sent: compressed ones stay so until the client decodes them) whole before it is
    returned."""

    def __init__(self, app: FastAPI, portal: BlockingPortal) -> None:
        self._portal = portal
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 49152))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        status, headers, content = self._portal.call(self._send, request.method, request.url, request.headers, body)
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def _send(
        self, method: str, url: httpx.URL, headers: httpx.Headers, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        response = await self._asgi.handle_async_request(httpx.Request(method, url, headers=headers, content=body))
        content = b"".join([chunk async for chunk in response.aiter_raw()])  # as sent: the client decodes it
        return response.status_code, response.headers.multi_items(), content


@contextlib.contextmanager
def _without_suanli_environment() -> Iterator[None]:
    """Hide this process's SUANLI_ settings while `Settings` reads the environment (a test gives every setting)."""
    hidden = {k: v for k, v in os.environ.items() if k.startswith("SUANLI_")}
    for name in hidden:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(hidden)


@contextlib.contextmanager
def _service_log(path: Path) -> Iterator[None]:
    """Write the process's INFO and higher log records to `path`, as `suanli serve` writes them to its standard
    error (``logging.basicConfig(level=INFO)``, httpx's own lines quieted to warnings)."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    httpx_log = logging.getLogger("httpx")
    before, httpx_before = root.level, httpx_log.level
    root.addHandler(handler)
    httpx_log.setLevel(logging.WARNING)
    if before == logging.NOTSET or before > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
        httpx_log.setLevel(httpx_before)
        handler.close()


class AppService:
    """The service application on `database_url` with its admin token in ``workdir/admin.token`` and its log in
    ``workdir/service.log``; `settings` are `api.settings.Settings` fields (strings, as in the environment)."""

    def __init__(self, database_url: str, workdir: Path, **settings: str) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.admin_token_file = workdir / "admin.token"
        self.log = workdir / "service.log"
        self.settings = settings
        self.url = BASE_URL
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None
        self._app: FastAPI | None = None

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def start(self) -> AppService:
        """Build the application and run its lifespan's start-up; returns when it is ready to serve."""
        with _without_suanli_environment():
            fields: dict[str, Any] = {"database_url": self.database_url, "admin_token_file": self.admin_token_file}
            settings = Settings.model_validate(fields | self.settings)
        try:
            self._stack.enter_context(_service_log(self.log))
            portal = self._stack.enter_context(start_blocking_portal("asyncio", {"use_uvloop": True}))
            app = create_app(settings)
            lifespan = cast(AbstractAsyncContextManager[None], app.router.lifespan_context(app))
            self._stack.enter_context(portal.wrap_async_context_manager(lifespan))
        except BaseException:
            self._stack.close()
            raise
        self._portal, self._app = portal, app
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client for the application with `token` (the admin token by default; "" for none)."""
        if self._portal is None or self._app is None:
            raise RuntimeError("the application is not started")
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = PortalTransport(self._app, self._portal)
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, transport=transport)

    def stop(self) -> None:
        """Run the lifespan's shutdown (workers and threads stopped, engine disposed) and stop the loop."""
        self._portal, self._app = None, None
        self._stack.close()
