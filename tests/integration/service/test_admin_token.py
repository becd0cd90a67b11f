"""The first admin token never reaches a log: given in a file (as the Helm chart's Secret gives it) or generated
into one, it is absent from everything a real `suanli serve` writes on its standard output and error; without a
file and without a terminal the service refuses to start rather than print one; an unfit given token is refused
without being echoed."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.app import AdminTokenNowhere, ensure_admin_token
from api.db.engine import make_engine, migrate
from api.db.tables import tokens
from api.settings import Settings
from tests.integration.service.helpers import clean_env
from tests.service import ServiceProcess


def test_an_admin_token_given_in_a_file_works_and_is_never_in_the_services_output(tmp_path: Path) -> None:
    """A real `suanli serve` whose first admin token comes from a file (the chart's mounted Secret): the token
    is accepted, and neither it nor its tail is anywhere in the service's captured standard output and error,
    which do name the file it was read from."""
    given = "sl_admin_" + secrets.token_urlsafe(32)
    (tmp_path / "admin.token").write_text(given + "\n")
    service = ServiceProcess(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path, log_level="DEBUG").start()
    try:
        with service.client(given) as admin:
            assert admin.get("/v1/tokens").status_code == 200
    finally:
        service.stop()
    output = service.log.read_text()
    assert f"first admin token read from {tmp_path / 'admin.token'}" in output
    assert given not in output
    assert given[-16:] not in output


def test_a_generated_admin_token_goes_to_its_file_only(tmp_path: Path) -> None:
    """With a file path that does not exist yet the service generates the token and writes it there (0600); the
    output says where, never what."""
    service = ServiceProcess(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path).start()
    service.stop()
    written = service.admin_token
    assert written.startswith("sl_admin_")
    assert (service.admin_token_file.stat().st_mode & 0o777) == 0o600
    output = service.log.read_text()
    assert "first admin token written to" in output
    assert written not in output


def test_without_a_token_file_or_a_terminal_the_service_refuses_to_start_and_prints_no_token(tmp_path: Path) -> None:
    """`suanli serve` with no admin token, no SUANLI_ADMIN_TOKEN_FILE and its standard error a pipe (a container's
    log) exits non-zero naming the setting, prints no token, and stores none."""
    database = tmp_path / "suanli.db"
    env = clean_env() | {"SUANLI_DATABASE_URL": f"sqlite:///{database}", "SUANLI_PORT": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "SUANLI_ADMIN_TOKEN_FILE is not set" in output
    assert "sl_admin_" not in output
    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tokens)).scalar_one() == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("given", ["short-secret", "a" * 20 + " " + "b" * 20, ""])
def test_an_unfit_given_admin_token_is_refused_without_echoing_it(tmp_path: Path, given: str) -> None:
    """A token file holding fewer than 32 characters, a space inside or nothing at all stops the start-up with an
    error that says why but does not repeat the file's content, and no admin token is created (an empty file once
    made the service mint a random admin token nobody knew)."""
    path = tmp_path / "admin.token"
    path.write_text(given + "\n")
    engine = make_engine(f"sqlite:///{tmp_path / 'suanli.db'}")
    try:
        migrate(engine)
        with pytest.raises(AdminTokenNowhere, match="at least 32 printable characters") as raised:
            ensure_admin_token(engine, Settings(database_url="sqlite://", admin_token_file=path))
        if given:
            assert given not in str(raised.value)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tokens)).scalar_one() == 0
    finally:
        engine.dispose()
