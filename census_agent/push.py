"""Sending one report to the census service over HTTP(S): the agent's only network code.

Classifies every outcome so the loop knows what to do: stored (drop it from the spool), invalid (set it
aside, never resend), unauthorised (keep it, retry later, shout), or try again later (keep it, back off).
The bearer token is read from its file on each push so a rotated token is picked up; it is never logged.
With an enrolment token (a fleet's shared one), the first push trades it for this node's own agent token
(``POST /v1/agents/enrol``) and keeps that in the token file (mode 0600) before sending the report.
"""

from __future__ import annotations

import enum
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from census_agent import __version__

REPORTS_PATH = "/v1/reports"
ENROL_PATH = "/v1/agents/enrol"


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

    def __init__(
        self,
        server: str,
        token_file: Path | None,
        *,
        ca_file: Path | None,
        timeout: float,
        enrol_token_file: Path | None = None,
    ) -> None:
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._token_file = token_file
        self._enrol_token_file = enrol_token_file
        self._client = httpx.Client(
            base_url=server.rstrip("/"),
            verify=verify,
            timeout=timeout,
            headers={"User-Agent": f"suanli-census-agent/{__version__}", "Content-Type": "application/json"},
        )

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
            response = self._client.post(REPORTS_PATH, content=document, headers=headers)
        except httpx.HTTPError as exc:
            return PushResult(Outcome.RETRY, None, f"{type(exc).__name__}: {exc}")
        outcome = classify_status(response.status_code)
        detail = "" if outcome is Outcome.STORED else response.text[:500]
        return PushResult(outcome, response.status_code, detail)

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
            response = self._client.post(
                ENROL_PATH, json={"node_id": node_id}, headers={"Authorization": f"Bearer {enrol_token}"}
            )
        except httpx.HTTPError as exc:
            return PushResult(Outcome.RETRY, None, f"enrolment: {type(exc).__name__}: {exc}")
        if response.status_code != 201:
            outcome = classify_status(response.status_code)
            if response.status_code == 409 or outcome is Outcome.INVALID:
                outcome = Outcome.UNAUTHORISED  # keep the reports: an admin can fix this (revoke, new token)
            return PushResult(outcome, response.status_code, f"enrolment refused: {response.text[:500]}")
        try:
            token = str(response.json()["token"])
            token_file.parent.mkdir(parents=True, exist_ok=True)
            partial = token_file.with_name(token_file.name + ".partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(token + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, token_file)
        except (ValueError, KeyError, OSError) as exc:
            return PushResult(Outcome.RETRY, response.status_code, f"enrolled, but could not keep the token: {exc}")
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
