"""`suanli serve --role` (setting ``serve_role``): ``dispatcher`` answers its probes and metrics and no other route,
and holds the duties; ``api`` serves the API and holds none; ``all`` does both. `/readyz` names the role and the
duties held with their terms, `/metrics` has ``suanli_leader{duty}``; a role or a lease timing that is not one
of the allowed is refused before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.db.engine import make_engine
from api.duties.store import holders
from api.settings import Settings
from tests.inprocess import AppService

pytestmark = pytest.mark.integration


def _leader_lines(text: str) -> dict[str, float]:
    return {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("suanli_leader{")
    }


def test_a_dispatcher_only_process_serves_probes_and_metrics_and_nothing_else_and_holds_the_duties(
    tmp_path: Path,
) -> None:
    """Role dispatcher: /healthz and /readyz answer (role dispatcher, housekeeping held under term 1), /metrics
    (an operator route) says it leads housekeeping; the census, reports, tokens and jobs routes are not there
    (404) even for the admin, so nothing but the probes can be asked of it."""
    app = AppService(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path, serve_role="dispatcher").start()
    try:
        with app.client() as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz").json()
            assert ready == {"status": "ready", "role": "dispatcher", "duties": {"housekeeping": 1}}
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            assert _leader_lines(metrics.text) == {"housekeeping": 1.0}
            for method, path in (
                ("GET", "/v1/census"),
                ("POST", "/v1/reports"),
                ("GET", "/v1/tokens"),
                ("GET", "/v1/jobs"),
            ):
                assert client.request(method, path).status_code == 404, path
        with app.client(token="") as anonymous:
            assert anonymous.get("/metrics").status_code == 401
    finally:
        app.stop()


def test_an_api_only_process_serves_the_api_and_holds_no_duty(tmp_path: Path) -> None:
    """Role api: the census answers; /readyz names role api and no duty; /metrics has no leader gauge (it stands
    for none), and the housekeeping lease is left for another process (term 0 in the database: never taken)."""
    app = AppService(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path, serve_role="api").start()
    try:
        with app.client() as client:
            assert client.get("/v1/census").status_code == 200
            assert client.get("/readyz").json() == {"status": "ready", "role": "api", "duties": {}}
            assert _leader_lines(client.get("/metrics").text) == {}
    finally:
        app.stop()

    engine = make_engine(f"sqlite:///{tmp_path / 'suanli.db'}")
    with engine.connect() as conn:
        assert holders(conn)["housekeeping"][1] == 0
    engine.dispose()


def test_the_default_role_serves_the_api_and_holds_its_duties_alone_on_sqlite(tmp_path: Path) -> None:
    """Role all (the default), one process on SQLite: the API answers and it holds housekeeping from its start;
    stopped, it releases the lease (another process need not wait for it to expire)."""
    url = f"sqlite:///{tmp_path / 'suanli.db'}"
    app = AppService(url, tmp_path).start()
    try:
        with app.client() as client:
            assert client.get("/v1/census").status_code == 200
            assert client.get("/readyz").json() == {"status": "ready", "role": "all", "duties": {"housekeeping": 1}}
    finally:
        app.stop()

    engine = make_engine(url)
    with engine.connect() as conn:
        _, term, left = holders(conn)["housekeeping"]
    engine.dispose()
    assert term == 1
    assert left <= 0  # released: expired now


@pytest.mark.parametrize(
    "settings",
    [
        {"serve_role": "leader"},
        {"lease_seconds": 4.0, "lease_renew_seconds": 3.0},
        {"lease_seconds": 15.0, "lease_margin_seconds": 15.0},
    ],
)
def test_an_unknown_role_or_an_unsafe_lease_timing_is_refused(settings: dict[str, object]) -> None:
    """A role other than all, api or dispatcher, a renewal too slow for the lease, or a margin as long as the lease:
    the settings are refused (the service does not start)."""
    with pytest.raises(ValidationError):
        Settings(**settings)  # type: ignore[arg-type]


def test_serve_refuses_an_unknown_role_flag() -> None:
    """``suanli serve --role leader`` exits 2 naming the choices, before anything starts."""
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve", "--role", "leader"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "'all', 'api', 'dispatcher'" in done.stderr
