"""Fixtures for the dashboard tests: one real census service (uvicorn, SQLite) holding a generated fleet whose
totals are known by construction, with history snapshots and queued jobs, and one headless Debian Chromium
driven by Playwright (no browser download; it never leaves 127.0.0.1: requests elsewhere are aborted).

Nothing here mocks the service or the browser; the scheduler is configured with a Ray address where nothing
listens, so jobs are accepted and wait, each with the dispatcher's real why-pending reason.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Route,
    sync_playwright,
)

from tests.fleet import FleetNode, generate_fleet, post_fleet, reports
from tests.integration.service.helpers import create_token
from tests.servers import free_port, wait_for
from tests.service import ServiceProcess

CHROMIUM = "/usr/bin/chromium"
FLEET_SIZE = 120  # six times the 20-node mix: 48 general, 12 ai, 18 hpc, 42 edge
STAGES = (48, 84, FLEET_SIZE)  # posted in three steps, a history snapshot after each: the growth chart rises
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"


@dataclass
class Deployment:
    """The running service, its fleet and a token per role the tests use."""

    service: ServiceProcess
    fleet: list[FleetNode]
    tokens: dict[str, str]

    @property
    def origin(self) -> str:
        """Where the page and every request it makes must come from."""
        return self.service.url


def _last_snapshot_counts(client: httpx.Client, nodes: int) -> bool:
    """Whether the newest history snapshot counts `nodes` nodes."""
    response = client.get("/v1/census/history")
    assert response.status_code == 200, response.text
    points: list[dict[str, Any]] = response.json()["points"]
    return bool(points) and points[-1]["nodes"] == nodes


def _submit_jobs(client: httpx.Client) -> None:
    """A few jobs of every class; one is cancelled so the recent list shows an ended job too."""
    specs = [
        {"name": "cfd-wing", "class": "hpc", "entrypoint": "mpirun ./cfd", "resources": {"cpus": 64, "nodes": 2}},
        {
            "name": "llm-finetune",
            "class": "ai",
            "entrypoint": "python train.py",
            "resources": {"gpus": 8},
            "priority": 10,
        },
        {"name": "traffic-cams", "class": "edge", "entrypoint": "./detect", "region": "440106"},
        {"name": "nightly-etl", "class": "general", "entrypoint": "./etl.sh", "organisation": "sysu"},
        {
            "name": "graph-analytics",
            "class": "in-memory",
            "entrypoint": "./pagerank",
            "resources": {"memory_bytes": 256 * 2**30},
        },
    ]
    ids = []
    for spec in specs:
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        ids.append(response.json()["job_id"])
    assert client.post(f"/v1/jobs/{ids[3]}/cancel").status_code == 200


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The service on SQLite with the fleet posted in three stages (a snapshot after each), five jobs submitted
    (waiting: no Ray listens where the scheduler looks), and planner and user tokens."""
    workdir = tmp_path_factory.mktemp("dashboard-service")
    scheduler = workdir / "scheduler.toml"
    scheduler.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n')
    service = ServiceProcess(
        f"sqlite:///{workdir / 'suanli.db'}",
        workdir,
        scheduler_config=str(scheduler),
        snapshot_interval_seconds="1",
        sweep_interval_seconds="0.3",
        stale_after_seconds="3600",  # the fleet reports once: it must stay active however long the package runs
    ).start()
    try:
        fleet = generate_fleet(FLEET_SIZE)
        with service.client() as admin:
            posted = 0
            for stage in STAGES:
                post_fleet(admin, reports(fleet[posted:stage]))
                posted = stage
                wait_for(partial(_last_snapshot_counts, admin, posted), 20, f"a history snapshot of {posted} nodes")
            _submit_jobs(admin)
            tokens = {role: create_token(admin, role)["token"] for role in ("planner", "user", "operator")}
        tokens["admin"] = service.admin_token
        yield Deployment(service, fleet, tokens)
    finally:
        service.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (root needs --no-sandbox)."""
    assert shutil.which(CHROMIUM), "Debian chromium is needed at /usr/bin/chromium (scripts/test installs it)"
    playwright: Playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@dataclass
class Visit:
    """A browser tab on the dashboard with a record of what it asked for and what went wrong in it."""

    page: Page
    origin: str
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def sign_in(self, token: str) -> None:
        """Open the page and sign in with `token`."""
        self.page.goto(self.origin + "/")
        self.page.fill("#token", token)
        self.page.click("#sign-in")

    def wait_loaded(self) -> None:
        """Until every view has answered (the page marks <body data-loaded="true">)."""
        self.page.wait_for_selector("body[data-loaded='true']", timeout=20_000)

    def problems(self) -> list[str]:
        """Uncaught errors, Content-Security-Policy violations and requests off the service's origin."""
        csp = [m for m in self.console_errors if "Content Security Policy" in m or "Refused to" in m]
        return [
            *(f"page error: {e}" for e in self.page_errors),
            *(f"CSP: {m}" for m in csp),
            *(f"off-origin request: {u}" for u in self.blocked),
        ]


@pytest.fixture
def visit(browser: Browser, deployment: Deployment) -> Iterator[Visit]:
    """A fresh browser context (empty sessionStorage) at 1440x900 in English; every request is recorded and any
    request that is not to the service's origin is aborted and recorded as blocked."""
    context: BrowserContext = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    page = context.new_page()
    seen = Visit(page, deployment.origin)

    def gate(route: Route, request: Request) -> None:
        seen.requests.append(request.url)
        if request.url == deployment.origin or request.url.startswith(deployment.origin + "/"):
            route.continue_()
        else:
            seen.blocked.append(request.url)
            route.abort()

    context.route("**/*", gate)
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    page.on("console", console)
    yield seen
    context.close()
