"""Sending one report to the census service over HTTP(S): the agent's only network code.

Classifies every outcome so the loop knows what to do: stored (drop it from the spool), invalid (set it
aside, never resend), unauthorised (keep it, retry later, shout), or try again later (keep it, back off).
The bearer token is read from its file on each push so a rotated token is picked up; it is never logged.
With an enrolment token (a fleet's shared one), the first push trades it for this node's own agent token
(``POST /v1/agents/enrol``) and keeps that in the token file (mode 0600) before sending the report.

The transport is the standard library's ``http.client`` on one kept-alive connection (an HTTP client
library cost the agent about 8 MiB of resident memory for one POST a minute).  It honours the usual proxy
variables (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``, with ``NO_PROXY``; http:// proxies only), tunnelling
HTTPS through the proxy with ``CONNECT``, so the certificate checked is always the census service's own.
This module must not follow redirects (a report is never re-posted elsewhere) nor read more of an answer
than ``MAX_ANSWER_BYTES``.
"""

from __future__ import annotations

import base64
import enum
import http.client
import json
import os
import select
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from census_agent import __version__

REPORTS_PATH = "/v1/reports"
ENROL_PATH = "/v1/agents/enrol"
MAX_ANSWER_BYTES = 64 * 1024  # an answer longer than this is cut, and its connection not reused
DEFAULT_PORTS = {"http": 80, "https": 443}
# A connection idle this long is closed rather than reused: servers drop idle ones (uvicorn after 5 s), and a
# request sent on a dropped connection is sent twice.  Agents reporting every 30 s thus connect per report.
KEEPALIVE_EXPIRY_S = 5.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect: scheme, host, port, and (for the service) the path prefix its routes live under."""

    scheme: str
    host: str
    port: int
    path: str = ""
    authorization: str | None = None  # a proxy's Proxy-Authorization header value, from user:password@

    @property
    def netloc(self) -> str:
        """``host:port`` as a Host header or CONNECT target writes it (IPv6 literals in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(url: str, *, what: str = "server") -> Endpoint:
    """The `Endpoint` in an ``http://`` or ``https://`` URL; ValueError naming `what` otherwise."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{what} URL must be http:// or https:// with a host, not {url!r}")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:  # a port out of range or not a number
        raise ValueError(f"{what} URL {url!r}: {exc}") from exc
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    return Endpoint(scheme, parts.hostname, port, parts.path.rstrip("/"), authorization)


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names `host`: ``*``, a host, a domain suffix (``.example`` or ``example``), host:port."""
    host = host.lower().rstrip(".")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip(".").rstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(target: Endpoint, environ: Mapping[str, str]) -> Endpoint | None:
    """The proxy the environment names for `target`, or None to connect directly (curl's rules, roughly).

    ``https_proxy``/``HTTPS_PROXY`` for an https target, ``http_proxy``/``HTTP_PROXY`` for http (the upper-case
    HTTP_PROXY is ignored when REQUEST_METHOD says this is a CGI script, as everyone does), ``ALL_PROXY``
    for either; ``NO_PROXY`` lists hosts reached directly.  The proxy itself is spoken to in plain HTTP or TLS
    as its own URL says.
    """

    def env(name: str) -> str:
        lower = environ.get(name.lower())
        if lower is not None:
            return lower
        if name == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            return ""
        return environ.get(name, "")

    if _bypassed(target.host, target.port, env("NO_PROXY")):
        return None
    url = env(f"{target.scheme.upper()}_PROXY") or env("ALL_PROXY")
    if not url:
        return None
    if "://" not in url:
        url = "http://" + url
    return parse_endpoint(url, what="proxy")


class Outcome(enum.Enum):
    """What happened to one push."""

    STORED = "stored"  # 2xx: the server has the report (a duplicate of one it had counts too)
    INVALID = "invalid"  # 4xx other than auth and throttling: resending the same bytes cannot help
    UNAUTHORISED = "unauthorised"  # 401/403: the token is wrong or revoked
    RETRY = "retry"  # network error, timeout, 408, 429, 5xx


@dataclass(frozen=True, slots=True)
class PushResult:
    """Outcome of one push, with the status code and a short explanation."""

    outcome: Outcome
    status: int | None
    detail: str


def classify_status(status: int) -> Outcome:
    """The outcome an HTTP status code means for a report."""
    if 200 <= status < 300:
        return Outcome.STORED
    if status in (401, 403):
        return Outcome.UNAUTHORISED
    if status in (408, 425, 429) or status >= 500:
        return Outcome.RETRY
    if 400 <= status < 500:
        return Outcome.INVALID
    return Outcome.RETRY


class TokenError(OSError):
    """The token file is missing, unreadable or empty."""


def read_token(path: Path) -> str:
    """The bearer token in `path` (surrounding whitespace removed)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"cannot read token file {path}: {exc.strerror}") from exc
    if not token:
        raise TokenError(f"token file {path} is empty")
    return token


class Pusher:
    """A keep-alive HTTP(S) client for one census server, through the environment's proxy if it names one."""

    def __init__(
        self,
        server: str,
        token_file: Path | None,
        *,
        ca_file: Path | None,
        timeout: float,
        enrol_token_file: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._server = parse_endpoint(server)
        self._proxy = proxy_for(self._server, os.environ if environ is None else environ)
        if self._proxy is not None and self._proxy.scheme != "http":
            raise ValueError(f"proxy {self._proxy.netloc}: only http:// proxies are supported (HTTPS is tunnelled)")
        self._tls = (
            ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            if self._server.scheme == "https"
            else None
        )
        self._timeout = timeout
        self._token_file = token_file
        self._enrol_token_file = enrol_token_file
        self._connection: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def push(self, document: bytes) -> PushResult:
        """POST one report document to ``/v1/reports``."""
        headers = {}
        if self._enrol_token_file is not None and self._token_file is not None and not self._token_file.exists():
            failed = self._enrol(self._enrol_token_file, self._token_file, document)
            if failed is not None:
                return failed
        if self._token_file is not None:
            try:
                headers["Authorization"] = f"Bearer {read_token(self._token_file)}"
            except TokenError as exc:
                return PushResult(Outcome.UNAUTHORISED, None, str(exc))
        try:
            status, answer = self._post(REPORTS_PATH, document, headers)
        except (OSError, http.client.HTTPException) as exc:
            return PushResult(Outcome.RETRY, None, f"{type(exc).__name__}: {exc}")
        outcome = classify_status(status)
        detail = "" if outcome is Outcome.STORED else answer[:500].decode("utf-8", "replace")
        return PushResult(outcome, status, detail)

    def _enrol(self, enrol_token_file: Path, token_file: Path, document: bytes) -> PushResult | None:
        """Trade the enrolment token for this node's agent token and keep it; None when done, else why not."""
        try:
            enrol_token = read_token(enrol_token_file)
            node_id = json.loads(document)["inventory"]["host"]["node_id"]
        except TokenError as exc:
            return PushResult(Outcome.UNAUTHORISED, None, str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return PushResult(Outcome.INVALID, None, f"cannot read the node id from the report: {exc}")
        try:
            body = json.dumps({"node_id": node_id}).encode()
            status, answer = self._post(ENROL_PATH, body, {"Authorization": f"Bearer {enrol_token}"})
        except (OSError, http.client.HTTPException) as exc:
            return PushResult(Outcome.RETRY, None, f"enrolment: {type(exc).__name__}: {exc}")
        text = answer[:500].decode("utf-8", "replace")
        if status != 201:
            outcome = classify_status(status)
            if status == 409 or outcome is Outcome.INVALID:
                outcome = Outcome.UNAUTHORISED  # keep the reports: an admin can fix this (revoke, new token)
            return PushResult(outcome, status, f"enrolment refused: {text}")
        try:
            token = str(json.loads(answer)["token"])
            token_file.parent.mkdir(parents=True, exist_ok=True)
            partial = token_file.with_name(token_file.name + ".partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(token + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, token_file)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            return PushResult(Outcome.RETRY, status, f"enrolled, but could not keep the token: {exc}")
        return None

    # ---- the transport -------------------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        """A new connection to the service, or to the proxy (tunnelled with CONNECT for an https service).

        Through a proxy, ``set_tunnel`` sends CONNECT first and only then starts TLS, with the service's
        name: the certificate checked is the service's, and the proxy sees only ciphertext.
        """
        first = self._proxy or self._server
        connection: http.client.HTTPConnection
        if self._server.scheme == "https":
            connection = http.client.HTTPSConnection(first.host, first.port, timeout=self._timeout, context=self._tls)
            if self._proxy is not None:
                auth = self._proxy.authorization
                connection.set_tunnel(
                    self._server.host, self._server.port, headers={"Proxy-Authorization": auth} if auth else None
                )
        else:
            connection = http.client.HTTPConnection(first.host, first.port, timeout=self._timeout)
        return connection

    def _post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST `body` to the service's `path`: (status, at most MAX_ANSWER_BYTES of the answer).

        A kept connection idle past `KEEPALIVE_EXPIRY_S`, or seen closed by the server, is not reused. One still
        dropped as the request arrives fails on first use; that failure is retried once on a new connection (a
        report is idempotent by its id, an enrolment by its node); a new connection's is not.
        """
        if self._connection is not None and (
            time.monotonic() - self._last_used > KEEPALIVE_EXPIRY_S or _dropped(self._connection)
        ):
            self.close()
        reused = self._connection is not None
        try:
            return self._exchange(path, body, headers)
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
            self.close()
            if not reused:
                raise
        except BaseException:
            self.close()
            raise
        try:
            return self._exchange(path, body, headers)
        except BaseException:
            self.close()
            raise

    def _exchange(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        target = self._server.path + path
        all_headers = {
            "User-Agent": f"suanli-census-agent/{__version__}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            **headers,
        }
        if self._proxy is not None and self._server.scheme == "http":
            target = f"http://{self._server.netloc}{target}"  # a plain-HTTP proxy takes the absolute URL
            if self._proxy.authorization:
                all_headers["Proxy-Authorization"] = self._proxy.authorization
        connection.request("POST", target, body=body, headers=all_headers)
        response = connection.getresponse()
        answer = response.read(MAX_ANSWER_BYTES)
        if response.will_close or not response.isclosed():
            self.close()  # the server will close it, or the answer was longer than we read: start afresh
        self._last_used = time.monotonic()
        return response.status, answer

    def close(self) -> None:
        """Close the kept connection (the next push opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle kept connection was closed by the server (its socket is readable: EOF or an alert)."""
    sock = connection.sock
    if sock is None:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
