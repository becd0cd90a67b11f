"""The census service's application in the test process: ``create_app(settings)`` with its lifespan running (migrations,
seeding, the admin token, the pricing worker, the housekeeper, the dispatcher when configured) on an event loop
thread of its own, reached through httpx's ASGI transport.

It serves the route, auth and validation tests, which are about what the application answers and stores, without
paying a uvicorn subprocess's start-up (importing the service's stack again) for each of them. Tests about the
server itself (signals, TLS, disconnects, workers, clients in other processes) use `tests.service.ServiceProcess`,
a real uvicorn on 127.0.0.1. This module must not listen on a socket, and its clients must reach the application only
on the lifespan's own event loop (the pricing pool's pipes and the engines belong to it).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, ExitStack
from pathlib import Path
from typing import Any, cast

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from api.app import create_app
from api.settings import Settings

BASE_URL = "http://suanli.test"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # what `suanli serve` logs (api/cli/main.py)


class PortalTransport(httpx.BaseTransport):
    """A synchronous httpx transport that runs each request through httpx's ASGI transport on `portal`'s loop.

    The application's exceptions become 500 answers, as under uvicorn; a body is read whole before it is sent,
    and an answer (its bytes as sent: compressed ones stay so until the client decodes them) whole before it is
    returned."""

    def __init__(self, app: FastAPI, portal: BlockingPortal, client: tuple[str, int] = ("127.0.0.1", 49152)) -> None:
        self._portal = portal
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client)

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


class GivenSettings(Settings):
    """`Settings` from the values a test gives alone: this process's SUANLI_ environment is not read (a uvicorn
    subprocess of `tests.service` is started without it, too)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


_log_lock = threading.Lock()
_log_users = 0  # services alive now: the root logger stays at INFO until the last one stops
_levels_before = (logging.NOTSET, logging.NOTSET)  # the root's and httpx's, restored by the last one


@contextlib.contextmanager
def _service_log(path: Path) -> Iterator[None]:
    """Write the process's INFO and higher log records to `path`, as `suanli serve` writes them to its standard
    error (``logging.basicConfig(level=INFO)``, httpx's own lines quieted to warnings)."""
    global _log_users, _levels_before  # noqa: PLW0603 - one root logger per process
    root, httpx_log = logging.getLogger(), logging.getLogger("httpx")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    with _log_lock:
        if _log_users == 0:
            _levels_before = (root.level, httpx_log.level)
            if root.level == logging.NOTSET or root.level > logging.INFO:
                root.setLevel(logging.INFO)
            httpx_log.setLevel(logging.WARNING)
        _log_users += 1
        root.addHandler(handler)
    try:
        yield
    finally:
        with _log_lock:
            root.removeHandler(handler)
            _log_users -= 1
            if _log_users == 0:
                root.setLevel(_levels_before[0])
                httpx_log.setLevel(_levels_before[1])
        handler.close()


class AppService:
    """The service application on `database_url` with its admin token in ``workdir/admin.token`` and its log in
    ``workdir/service.log``; `settings` are `api.settings.Settings` fields (strings, as in the environment).

    The failed-authentication limit is off unless a test sets ``auth_failure_burst``: every client of a test
    comes from one address, and tests that walk every route with bad tokens would otherwise be refused 429."""

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
        fields: dict[str, Any] = {
            "database_url": self.database_url,
            "admin_token_file": self.admin_token_file,
            "auth_failure_burst": "0",
        }
        settings = GivenSettings.model_validate(fields | self.settings)
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

    @property
    def app(self) -> FastAPI:
        """The running application (its ``state.service`` holds what the service holds)."""
        if self._app is None:
            raise RuntimeError("the application is not started")
        return self._app

    def client(self, token: str | None = None, address: str = "127.0.0.1") -> httpx.Client:
        """An HTTP client for the application with `token` (the admin token by default; "" for none), connecting
        from `address` (what the application sees as the peer)."""
        if self._portal is None or self._app is None:
            raise RuntimeError("the application is not started")
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = PortalTransport(self._app, self._portal, (address, 49152))
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, transport=transport)

    def stop(self) -> None:
        """Run the lifespan's shutdown (workers and threads stopped, engine disposed) and stop the loop."""
        self._portal, self._app = None, None
        self._stack.close()
