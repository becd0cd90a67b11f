"""The agent's HTTP transport against real servers on 127.0.0.1: keep-alive, a server that drops idle
connections, long answers, a real forward proxy (absolute URIs for HTTP, CONNECT for HTTPS) and real TLS."""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler, ThreadingTCPServer
from typing import Any

import pytest
import trustme

from census_agent.push import Outcome, Pusher

TOKEN = "agent-token-for-transport-tests"
REPORT = json.dumps({"report_id": "r-1", "inventory": {"host": {"node_id": "n-1"}}}).encode()


class Service:
    """An HTTP/1.1 server that records each POST's path and the client port it came on, and answers 200.

    ``drop_after_answer`` closes each connection right after its answer without saying so (as a server's
    idle timeout does); ``drop_unanswered`` closes the connection of the next request without answering it
    (the race where the server's idle timeout fires as the request arrives); ``answer_bytes`` makes every
    answer a 400 that long.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.posts: list[tuple[str, int, dict[str, str]]] = []
        self.drop_after_answer = False
        self.drop_unanswered = 0
        self.answer_bytes = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if service.drop_unanswered:
                    service.drop_unanswered -= 1
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                service.posts.append((self.path, self.client_address[1], dict(self.headers)))
                body = b"x" * service.answer_bytes if service.answer_bytes else b'{"stored": true}'
                self.send_response(400 if service.answer_bytes else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if service.drop_after_answer:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ForwardProxy:
    """A real forward proxy: CONNECT tunnels bytes both ways; an absolute-URI request is relayed upstream."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []  # (method, target, Proxy-Authorization)
        proxy = self

        class Handler(BaseRequestHandler):
            def handle(self) -> None:
                reader = self.request.makefile("rb")
                line = reader.readline().decode("latin-1").strip()
                method, target, _ = line.split(" ", 2)
                headers: dict[str, str] = {}
                while (header := reader.readline().decode("latin-1").strip()) != "":
                    name, _, value = header.partition(":")
                    headers[name.strip().lower()] = value.strip()
                proxy.requests.append((method, target, headers.get("proxy-authorization")))
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    upstream = socket.create_connection((host, int(port)))
                    self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    pipe(self.request, upstream)
                    return
                host_port = target.split("/")[2]
                path = "/" + target.split("/", 3)[3]
                body = reader.read(int(headers.get("content-length", "0")))
                upstream = socket.create_connection((host_port.split(":")[0], int(host_port.split(":")[1])))
                forwarded = {k: v for k, v in headers.items() if k not in ("proxy-authorization", "connection")}
                head = "".join(f"{k}: {v}\r\n" for k, v in forwarded.items())
                upstream.sendall(f"{method} {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode() + body)
                pipe(self.request, upstream)

        self.server = ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    try:
        while True:
            ready, _, _ = select.select([a, b], [], [], 10)
            if not ready:
                return
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                (b if source is a else a).sendall(data)
    finally:
        b.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def service() -> Iterator[Service]:
    server = Service()
    yield server
    server.stop()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_service(ca: trustme.CA) -> Iterator[Service]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = Service(tls=context)
    yield server
    server.stop()


def push_three(service: Service, token_file: Path) -> list[Outcome]:
    """Three pushes of the report through one `Pusher`, without proxies; their outcomes."""
    pusher = Pusher(service.url(), token_file, ca_file=None, timeout=5, environ={})
    try:
        return [pusher.push(REPORT).outcome for _ in range(3)]
    finally:
        pusher.close()


def test_pushes_share_one_kept_alive_connection_and_carry_the_token(service: Service, token_file: Path) -> None:
    """Three reports arrive on one TCP connection (one client port), each with the bearer token from the file."""
    assert push_three(service, token_file) == [Outcome.STORED] * 3
    assert len({port for _, port, _ in service.posts}) == 1
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for _, _, h in service.posts)
    assert all(h["User-Agent"].startswith("suanli-census-agent/") for _, _, h in service.posts)


def test_a_connection_the_server_closed_while_idle_is_not_written_to(service: Service, token_file: Path) -> None:
    """When the server closes each connection after answering, the agent sees it and opens a new one first:
    every report is posted once, each on its own connection."""
    service.drop_after_answer = True
    assert push_three(service, token_file) == [Outcome.STORED] * 3
    assert len(service.posts) == 3
    assert len({port for _, port, _ in service.posts}) == 3


def test_a_kept_connection_dropped_as_the_request_arrives_is_retried_once_on_a_new_one(
    service: Service, token_file: Path
) -> None:
    """The server closes a reused connection without answering: the push is sent again on a new connection and
    stored; a new connection dropped the same way is not retried (RETRY, kept in the spool)."""
    pusher = Pusher(service.url(), token_file, ca_file=None, timeout=5, environ={})
    try:
        assert pusher.push(REPORT).outcome is Outcome.STORED
        service.drop_unanswered = 1
        retried = pusher.push(REPORT)
        pusher.close()
        service.drop_unanswered = 1
        fresh = pusher.push(REPORT)
    finally:
        pusher.close()
    assert retried.outcome is Outcome.STORED
    assert len({port for _, port, _ in service.posts}) == 2
    assert fresh.outcome is Outcome.RETRY
    assert "RemoteDisconnected" in fresh.detail or "ConnectionResetError" in fresh.detail
    assert len(service.posts) == 2


def test_a_refused_connection_is_a_retry_naming_the_error(token_file: Path) -> None:
    """Nothing listening: the report is kept for later (RETRY), and the detail names the socket error."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pusher = Pusher(f"http://127.0.0.1:{port}", token_file, ca_file=None, timeout=5, environ={})
    result = pusher.push(REPORT)
    assert result.outcome is Outcome.RETRY
    assert result.status is None
    assert "ConnectionRefusedError" in result.detail


def test_a_long_answer_is_cut_and_the_next_push_uses_a_new_connection(service: Service, token_file: Path) -> None:
    """A 1 MiB error answer gives a 500-character detail; the half-read connection is not reused."""
    service.answer_bytes = 1 << 20
    pusher = Pusher(service.url(), token_file, ca_file=None, timeout=5, environ={})
    try:
        first = pusher.push(REPORT)
        service.answer_bytes = 0
        second = pusher.push(REPORT)
    finally:
        pusher.close()
    assert first.outcome is Outcome.INVALID
    assert first.status == 400
    assert first.detail == "x" * 500
    assert second.outcome is Outcome.STORED
    assert len({port for _, port, _ in service.posts}) == 2


def test_reports_to_an_http_service_go_through_http_proxy_with_its_credentials_and_the_path_prefix(
    service: Service, proxy: ForwardProxy, token_file: Path
) -> None:
    """HTTP_PROXY: the proxy gets the absolute URI (path prefix included) with Proxy-Authorization; the service
    gets the report at its prefixed path and never sees the proxy's credentials."""
    environ = {"HTTP_PROXY": f"http://ops:secret@127.0.0.1:{proxy.port}"}
    pusher = Pusher(service.url() + "/census/", token_file, ca_file=None, timeout=5, environ=environ)
    try:
        result = pusher.push(REPORT)
    finally:
        pusher.close()
    assert result.outcome is Outcome.STORED, result.detail
    method, target, auth = proxy.requests[0]
    assert (method, target) == ("POST", f"{service.url()}/census/v1/reports")
    assert auth == "Basic " + base64.b64encode(b"ops:secret").decode()
    assert [path for path, _, _ in service.posts] == ["/census/v1/reports"]
    assert "Proxy-Authorization" not in service.posts[0][2]


def test_an_https_service_is_reached_through_the_proxy_by_connect_and_its_own_certificate_checked(
    tls_service: Service, proxy: ForwardProxy, token_file: Path, ca: trustme.CA, tmp_path: Path
) -> None:
    """HTTPS_PROXY: CONNECT to the service, then TLS with the service, verified against --ca-file; with another
    CA the same push is a RETRY naming CERTIFICATE_VERIFY_FAILED and the service receives nothing."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    environ = {"https_proxy": f"127.0.0.1:{proxy.port}"}
    pusher = Pusher(tls_service.url("https"), token_file, ca_file=ca_file, timeout=5, environ=environ)
    try:
        result = pusher.push(REPORT)
    finally:
        pusher.close()
    assert result.outcome is Outcome.STORED, result.detail
    assert proxy.requests == [("CONNECT", f"127.0.0.1:{tls_service.port}", None)]
    assert [path for path, _, _ in tls_service.posts] == ["/v1/reports"]

    other_ca = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    refused = Pusher(tls_service.url("https"), token_file, ca_file=other_ca, timeout=5, environ=environ).push(REPORT)
    assert refused.outcome is Outcome.RETRY
    assert "CERTIFICATE_VERIFY_FAILED" in refused.detail
    assert len(tls_service.posts) == 1


def test_no_proxy_sends_the_service_direct_and_the_proxy_sees_nothing(
    service: Service, proxy: ForwardProxy, token_file: Path
) -> None:
    """NO_PROXY naming the service's host wins over HTTP_PROXY."""
    environ = {"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": "localhost,127.0.0.1"}
    pusher = Pusher(service.url(), token_file, ca_file=None, timeout=5, environ=environ)
    try:
        assert pusher.push(REPORT).outcome is Outcome.STORED
    finally:
        pusher.close()
    assert proxy.requests == []
    assert len(service.posts) == 1


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HTTPS_PROXY", "socks5://127.0.0.1:1080", "proxy URL must be http://"),
        ("HTTPS_PROXY", "https://127.0.0.1:3128", "only http:// proxies are supported"),
    ],
)
def test_run_with_an_unusable_proxy_variable_exits_2_naming_it_before_collecting(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    """`census-agent run` refuses a proxy it cannot speak to with exit 2 and a one-line reason, instead of
    silently going direct or retrying for ever."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_") and "proxy" not in k.lower()}
    env[variable] = value
    (tmp_path / "token").write_text(TOKEN)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "census_agent.cli",
            "run",
            "--server",
            "https://census.example.cn",
            "--token-file",
            str(tmp_path / "token"),
            "--spool-dir",
            str(tmp_path / "spool"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
