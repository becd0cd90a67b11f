"""Real servers for service tests: a throwaway PostgreSQL cluster and the census service under uvicorn.

Both bind 127.0.0.1 on free ports and are stopped by the fixtures that start them; nothing else is touched.
`Service` is what a test needs of a census service, whether a process here or the application in the test
process (`tests.inprocess.AppService`).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Protocol

import httpx

from api.cli.client import wait_until_ready
from tests.servers import free_port, stop_process


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} not found: install the Debian package postgresql (.ci/run does)")
    return path


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the `postgres` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class Service(Protocol):
    """A started census service: its database, admin token, log file and HTTP clients."""

    database_url: str
    workdir: Path
    admin_token_file: Path
    log: Path

    @property
    def url(self) -> str: ...

    @property
    def admin_token(self) -> str: ...

    def client(self, token: str | None = None) -> httpx.Client: ...

    def stop(self) -> None: ...


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a temporary folder, trust auth on 127.0.0.1, fsync off (throwaway)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="suanli-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._databases = 0

    def start(self) -> PostgresCluster:
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [_pg_bin("initdb"), "-D", str(self.data), "--auth=trust", "--no-sync", "-U", "postgres", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.start_server()
        return self

    def start_server(self) -> None:
        """``pg_ctl start`` on the cluster's data (again, after `stop_server`), waiting until it accepts."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} -c fsync=off -c max_connections=200"
        )
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def stop_server(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``: the server goes away (its clients' connections are cut), the data stays."""
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        self._databases += 1
        name = f"suanli_test_{self._databases}"
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]),
            check=False,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(self.root, ignore_errors=True)


class ServiceProcess:
    """``python -m api.cli serve`` on a free port with its own admin token file."""

    def __init__(self, database_url: str, workdir: Path, **settings: str) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.port = free_port()
        self.admin_token_file = workdir / "admin.token"
        self.log = workdir / "service.log"
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()

    def start(self, timeout: float = 180) -> ServiceProcess:
        """Start the service and return once /readyz answers 200; fail at once if it exits first. `timeout` is
        only a ceiling (importing the service's stack takes 5 s on an idle 2-core machine, and over 60 s when
        the machine is shared)."""
        return self.launch().wait_ready(timeout)

    def launch(self) -> ServiceProcess:
        """Start the service's process and return at once (`wait_ready` waits for it): replicas start together."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
        env |= {
            "SUANLI_DATABASE_URL": self.database_url,
            "SUANLI_PORT": str(self.port),
            "SUANLI_HOST": "127.0.0.1",
            "SUANLI_ADMIN_TOKEN_FILE": str(self.admin_token_file),
            # Off unless a test sets it: every test client comes from 127.0.0.1 (see tests.inprocess.AppService).
            "SUANLI_AUTH_FAILURE_BURST": "0",
            **{f"SUANLI_{k.upper()}": v for k, v in self.settings.items()},
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], stdout=log, stderr=log, env=env)
        return self

    def wait_ready(self, timeout: float = 180) -> ServiceProcess:
        """Return once /readyz answers 200; fail at once if the process exits first."""
        assert self.proc is not None, "launch() first"
        if not wait_until_ready(self.url, self.proc, timeout):
            self.stop()
            raise RuntimeError(f"service not ready after {timeout} s:\n{self.log.read_text()[-3000:]}")
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client for the service with `token` (the admin token by default)."""
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
