"""A small typed client of the Suanli service (census and jobs), used by the `suanli` command and usable as a
Python SDK."""

from __future__ import annotations

import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx


class ApiError(RuntimeError):
    """The service answered with an error; the message is its problem detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class SuanliClient:
    """``SuanliClient("http://127.0.0.1:8080", token)``; every method returns the decoded JSON document."""

    def __init__(
        self, server: str, token: str | None, *, timeout: float = 30.0, verify: ssl.SSLContext | str | bool = True
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout, verify=verify)

    def __enter__(self) -> SuanliClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:  # noqa: ANN401
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach {self._http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            self._raise(response)
        return response

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        try:
            detail = str(response.json().get("detail", response.text))
        except ValueError:
            detail = response.text
        raise ApiError(response.status_code, detail)

    def census(
        self, *, include: str = "active", region: str | None = None, window: int | None = None
    ) -> dict[str, Any]:
        """``GET /v1/census`` (`window`: the utilisation window in seconds; the service's default 24 h if None)."""
        params = {
            "include": include,
            **({"region": region} if region else {}),
            **({"window": window} if window else {}),
        }
        result: dict[str, Any] = self._call("GET", "/v1/census", params=params).json()
        return result

    def census_csv(self, *, include: str = "active", region: str | None = None, window: int | None = None) -> str:
        """``GET /v1/census/export.csv``."""
        params = {
            "include": include,
            **({"region": region} if region else {}),
            **({"window": window} if window else {}),
        }
        return self._call("GET", "/v1/census/export.csv", params=params).content.decode("utf-8-sig")

    def history(self, *, region: str | None = None) -> dict[str, Any]:
        """``GET /v1/census/history``."""
        result: dict[str, Any] = self._call(
            "GET", "/v1/census/history", params={"region": region} if region else {}
        ).json()
        return result

    def plan(self, plan: dict[str, Any], *, include: str = "active", region: str | None = None) -> dict[str, Any]:
        """``POST /v1/census/plan``: the census before and after the planned machines (nothing is stored)."""
        params = {"include": include, **({"region": region} if region else {})}
        result: dict[str, Any] = self._call("POST", "/v1/census/plan", params=params, json=plan).json()
        return result

    def projection(self, **params: str | float | None) -> dict[str, Any]:
        """``GET /v1/census/projection`` (region, include, method, from, to, target_total_flops,
        target_per_capita_flops)."""
        given = {k: v for k, v in params.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/v1/census/projection", params=given).json()
        return result

    def nodes(self, **filters: str | int | None) -> dict[str, Any]:
        """``GET /v1/nodes`` with filters (tier, region, status, organisation, limit, after)."""
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/v1/nodes", params=params).json()
        return result

    def node(self, node_id: str) -> dict[str, Any]:
        """``GET /v1/nodes/{id}``."""
        result: dict[str, Any] = self._call("GET", f"/v1/nodes/{node_id}").json()
        return result

    def regions(self) -> list[dict[str, Any]]:
        """``GET /v1/regions``."""
        result: list[dict[str, Any]] = self._call("GET", "/v1/regions").json()
        return result

    def record_discovered(self, nodes: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /v1/nodes/discovered`` (at most 500 nodes: ``{"name", "inventory", "ready"}`` each)."""
        result: dict[str, Any] = self._call("POST", "/v1/nodes/discovered", json={"nodes": nodes}).json()
        return result

    def create_token(
        self,
        name: str,
        role: str,
        expires_in_seconds: int | None = None,
        organisations: list[str] | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/tokens`` (a user token needs `organisations`, the first its jobs' default)."""
        body: dict[str, Any] = {"name": name, "role": role}
        if expires_in_seconds:
            body["expires_in_seconds"] = expires_in_seconds
        if organisations:
            body["organisations"] = organisations
        result: dict[str, Any] = self._call("POST", "/v1/tokens", json=body).json()
        return result

    def tokens(self) -> list[dict[str, Any]]:
        """``GET /v1/tokens``."""
        result: list[dict[str, Any]] = self._call("GET", "/v1/tokens").json()
        return result

    def revoke_token(self, token_id: int) -> None:
        """``DELETE /v1/tokens/{id}``."""
        self._call("DELETE", f"/v1/tokens/{token_id}")

    def audit(self, **filters: str | int | None) -> dict[str, Any]:
        """``GET /v1/audit`` with filters (action, actor, since, until, limit, before): newest first."""
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/v1/audit", params=params).json()
        return result

    def verify_audit(self, anchor: str | None = None) -> dict[str, Any]:
        """``GET /v1/audit/verify`` (``anchor`` is ``SEQ:HASH`` of an entry kept elsewhere): ``ok``, the first
        break and the mismatching reports.  It walks the whole chain, so it waits without a time limit."""
        params = {"anchor": anchor} if anchor else {}
        result: dict[str, Any] = self._call("GET", "/v1/audit/verify", params=params, timeout=None).json()
        return result

    # --- jobs ------------------------------------------------------------------------------------------------

    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /v1/jobs`` with a job document (`scheduler.models.JobSpec`: name, class, entrypoint, ...).

        The submission is retried once on a lost connection; with an `idempotency_key` (one is made if not
        given) the retry returns the job already queued instead of queueing it twice."""
        key = idempotency_key or uuid.uuid4().hex
        headers = {"Idempotency-Key": key}
        try:
            response = self._call("POST", "/v1/jobs", json=spec, headers=headers)
        except ApiError as exc:
            if exc.status != 0:
                raise
            response = self._call("POST", "/v1/jobs", json=spec, headers=headers)
        result: dict[str, Any] = response.json()
        return result

    def jobs(self, **filters: str | int | None) -> dict[str, Any]:
        """``GET /v1/jobs`` with filters (state, class, tier, organisation, owner, limit, before)."""
        params = {k: v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = self._call("GET", "/v1/jobs", params=params).json()
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``: the job, its events and, while queued, why it waits."""
        result: dict[str, Any] = self._call("GET", f"/v1/jobs/{job_id}").json()
        return result

    def logs(self, job_id: str) -> str:
        """``GET /v1/jobs/{id}/logs``: the output so far."""
        return self._call("GET", f"/v1/jobs/{job_id}/logs").text

    def follow_logs(self, job_id: str) -> Iterator[str]:
        """``GET /v1/jobs/{id}/logs?follow=true``: the output as it is written, until the job ends."""
        try:
            with self._http.stream("GET", f"/v1/jobs/{job_id}/logs", params={"follow": "true"}, timeout=None) as r:
                if r.status_code >= 400:
                    r.read()
                    self._raise(r)
                yield from r.iter_text()
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach {self._http.base_url}: {exc}") from exc

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/jobs/{id}/cancel``."""
        result: dict[str, Any] = self._call("POST", f"/v1/jobs/{job_id}/cancel").json()
        return result

    def tiers(self) -> dict[str, Any]:
        """``GET /v1/tiers``: capacity, free, running and queued per tier."""
        result: dict[str, Any] = self._call("GET", "/v1/tiers").json()
        return result


def wait_until_ready(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> bool:
    """Poll ``url``/readyz until it answers 200 (True), `timeout` passes or `process` exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (process is None or process.poll() is None):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False
