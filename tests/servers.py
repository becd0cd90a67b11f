"""A real HTTP report sink on 127.0.0.1 for agent tests: it can be stopped and restarted on the same port.

It stores reports the way the census service must (idempotent by report id) and can be told to answer
with a given status instead, to exercise the agent's error paths.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` until true or fail after `timeout` seconds, naming what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process(popen: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, wait `timeout`, then SIGKILL: `popen` is gone when this returns."""
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ReportSink:
    """POST /v1/reports stores the JSON body, deduplicated by ``report_id``, and answers 200."""

    def __init__(self, port: int | None = None, token: str | None = None) -> None:
        self.port = port or free_port()
        self.token = token
        self.received: list[dict[str, Any]] = []  # every stored report, in arrival order, no duplicates
        self.receipts = 0  # every POST, duplicates included
        self.status_override: int | None = None
        self.headers_seen: list[dict[str, str]] = []
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL of the sink."""
        return f"http://127.0.0.1:{self.port}"

    def sequences(self) -> list[int]:
        """Sequence numbers of the stored reports, in arrival order."""
        with self._lock:
            return [int(r["sequence"]) for r in self.received]

    def start(self) -> ReportSink:
        """Listen (again) on the sink's port."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = sink._handle(self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"detail": "test sink"}')

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sink-{self.port}", daemon=True
        ).start()
        return self

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self.receipts += 1
            self.headers_seen.append(headers)
            if self.status_override is not None:
                return self.status_override
            if path != "/v1/reports":
                return 404
            if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
                return 401
            try:
                report = json.loads(body)
            except ValueError:
                return 400
            if report["report_id"] not in self._ids:
                self._ids.add(report["report_id"])
                self.received.append(report)
            return 200

    def stop(self) -> None:
        """Stop listening; connections are refused until `start` is called again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
