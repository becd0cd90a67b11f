"""``/healthz`` and ``/readyz``: the process is alive, the database is reachable.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from typing import Literal

from api.schemas.common import Public


class Alive(Public):
    """``GET /healthz``."""

    status: Literal["ok"]


class Ready(Public):
    """``GET /readyz`` when a query succeeds: also this process's role and the singleton duties it holds now, each
    with its lease term (docs/operations.md, "Replicas")."""

    status: Literal["ready"]
    role: Literal["all", "api", "dispatcher"]
    duties: dict[str, int]


class NotReady(Public):
    """``GET /readyz`` (503) when the database cannot be reached: the error's class names why."""

    status: Literal["unavailable"]
    detail: str
