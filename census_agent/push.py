"""Sending one report to the census service over HTTP(S): the agent's only network code.

Classifies every outcome so the loop knows what to do: stored (drop it from the spool), invalid (set it
aside, never resend), unauthorised (keep it, retry later, shout), or try again later (keep it, back off).
The bearer token is read from its file on each push so a rotated token is picked up; it is never logged.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from census_agent import __version__

REPORTS_PATH = "/v1/reports"


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
    """A keep-alive HTTP client for one census server."""

    def __init__(self, server: str, token_file: Path | None, *, ca_file: Path | None, timeout: float) -> None:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._token_file = token_file
        self._client = httpx.Client(
            base_url=server.rstrip("/"),
            verify=verify,
            timeout=timeout,
            headers={"User-Agent": f"suanli-census-agent/{__version__}", "Content-Type": "application/json"},
        )

    def push(self, document: bytes) -> PushResult:
        """POST one report document to ``/v1/reports``."""
        headers = {}
        if self._token_file is not None:
            try:
                headers["Authorization"] = f"Bearer {read_token(self._token_file)}"
            except TokenError as exc:
                return PushResult(Outcome.UNAUTHORISED, None, str(exc))
        try:
            response = self._client.post(REPORTS_PATH, content=document, headers=headers)
        except httpx.HTTPError as exc:
            return PushResult(Outcome.RETRY, None, f"{type(exc).__name__}: {exc}")
        outcome = classify_status(response.status_code)
        detail = "" if outcome is Outcome.STORED else response.text[:500]
        return PushResult(outcome, response.status_code, detail)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
