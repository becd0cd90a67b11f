"""HTTPS end to end with a CA and a server certificate for 127.0.0.1 made on the spot (trustme): the service
serves TLS with ``suanli serve --tls-cert --tls-key``; a real ``census-agent run --ca-file`` delivers its report
verified against that CA, while an agent trusting another CA refuses the server and keeps its report spooled;
the ``suanli`` client commands verify against ``SUANLI_CA_FILE``."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from tests.integration.service.helpers import HOSTS, clean_env, create_token
from tests.servers import free_port, stop_process, wait_for


@dataclass
class TlsService:
    """``suanli serve`` over HTTPS on 127.0.0.1, with the CA that signed its certificate."""

    url: str
    ca_file: Path
    admin_token: str
    log: Path
    proc: subprocess.Popen[bytes]

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTPS client verifying the server against the test CA."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, verify=context, timeout=30)


def write_ca(ca: trustme.CA, path: Path) -> Path:
    """The CA's certificate as a PEM file."""
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsService]:
    """The service with a certificate for 127.0.0.1 signed by a CA made for this module."""
    workdir = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    cert, key = workdir / "server.pem", workdir / "server.key"
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    server.private_key_pem.write_to_path(str(key))
    port = free_port()
    admin_file = workdir / "admin.token"
    env = clean_env() | {
        "SUANLI_DATABASE_URL": f"sqlite:///{workdir / 'suanli.db'}",
        "SUANLI_PORT": str(port),
        "SUANLI_HOST": "127.0.0.1",
        "SUANLI_ADMIN_TOKEN_FILE": str(admin_file),
    }
    log = workdir / "service.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=out,
            stderr=out,
            env=env,
        )
    ca_file = write_ca(ca, workdir / "ca.pem")
    context = ssl.create_default_context(cafile=str(ca_file))

    def ready() -> bool:
        try:
            return httpx.get(f"https://127.0.0.1:{port}/readyz", verify=context, timeout=2).status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None  # gone: stop waiting (checked below)

    try:
        wait_for(ready, 60, "the HTTPS service")
        assert proc.poll() is None, log.read_text()[-3000:]
        yield TlsService(f"https://127.0.0.1:{port}", ca_file, admin_file.read_text().strip(), log, proc)
    finally:
        stop_process(proc)


def run_agent(
    service: TlsService, workdir: Path, node_id: str, ca_file: Path, token: str
) -> tuple[Path, Path, subprocess.Popen[bytes]]:
    """Start `census-agent run` for a fixture host, trusting `ca_file`; returns (its log, its spool, it)."""
    token_file = workdir / f"{node_id}.token"
    token_file.write_text(token + "\n")
    spool, log = workdir / f"{node_id}-spool", workdir / f"{node_id}.log"
    argv = [
        sys.executable,
        "-m",
        "census_agent.cli",
        "run",
        "--server",
        service.url,
        "--token-file",
        str(token_file),
        "--ca-file",
        str(ca_file),
        "--interval",
        "1",
        "--no-nvml",
        "--node-id",
        node_id,
        "--region",
        "440106",
        "--root",
        str(HOSTS / "epyc-9654-zen4"),
        "--spool-dir",
        str(spool),
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, env=clean_env())
    return log, spool, proc


def test_agent_reports_over_https_verified_against_the_ca_file(tls_service: TlsService, tmp_path: Path) -> None:
    """A real `census-agent run --ca-file CA` delivers its reports to the HTTPS service: the node appears with
    the agent's figures, the agent stops cleanly with an empty spool, and its log never shows its token."""
    with tls_service.client() as admin:
        token = create_token(admin, "agent")["token"]
        log, spool, proc = run_agent(tls_service, tmp_path, "tls-node", tls_service.ca_file, token)
        try:
            wait_for(lambda: admin.get("/v1/nodes/tls-node").status_code == 200, 60, "the agent's report over HTTPS")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, log.read_text()[-2000:]
        finally:
            stop_process(proc)
        detail = admin.get("/v1/nodes/tls-node").json()
    assert detail["region_code"] == "440106"
    assert detail["recent_reports"]
    assert list(spool.glob("*.json")) == [], "every report acknowledged and removed from the spool"
    assert token not in log.read_text()


def test_agent_trusting_another_ca_refuses_the_server_and_keeps_its_report(
    tls_service: TlsService, tmp_path: Path
) -> None:
    """An agent whose --ca-file is another CA refuses the service's certificate: its log says
    CERTIFICATE_VERIFY_FAILED and that the report is kept in the spool, the report stays in the spool after it
    stops, and the service never hears of the node."""
    other_ca = write_ca(trustme.CA(), tmp_path / "other-ca.pem")
    with tls_service.client() as admin:
        token = create_token(admin, "agent")["token"]
        log, spool, proc = run_agent(tls_service, tmp_path, "untrusting-node", other_ca, token)
        try:
            wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in log.read_text(errors="replace"), 60, "the TLS refusal")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, log.read_text()[-2000:]
        finally:
            stop_process(proc)
        assert admin.get("/v1/nodes/untrusting-node").status_code == 404
    text = log.read_text(errors="replace")
    refusal = next(line for line in text.splitlines() if "CERTIFICATE_VERIFY_FAILED" in line)
    assert "push of report" in refusal
    assert "kept in the spool" in refusal
    assert len(list(spool.glob("*.json"))) >= 1
    assert token not in text


def test_https_service_refuses_plain_http_and_clients_without_the_ca(tls_service: TlsService) -> None:
    """The port speaks only TLS (a plain-HTTP request gets no HTTP answer), and a client using the system CAs
    refuses the certificate, so nothing is served unverified."""
    port = tls_service.url.rsplit(":", 1)[1]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_service.url}/readyz", timeout=5)


def test_suanli_commands_verify_the_service_against_suanli_ca_file(tls_service: TlsService, tmp_path: Path) -> None:
    """`suanli census --server https://...` succeeds with SUANLI_CA_FILE naming the CA and fails (exit 1,
    naming the certificate error) without it; `suanli serve` with a certificate but no key refuses to start."""
    token_file = tmp_path / "admin.token"
    token_file.write_text(tls_service.admin_token)
    argv = [sys.executable, "-m", "api.cli", "census", "--server", tls_service.url, "--token-file", str(token_file)]
    trusted = subprocess.run(
        argv,
        env=clean_env() | {"SUANLI_CA_FILE": str(tls_service.ca_file)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert trusted.returncode == 0, trusted.stderr
    assert "Headline compute" in trusted.stdout
    untrusted = subprocess.run(argv, env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert untrusted.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    half = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--port",
            str(free_port()),
            "--tls-cert",
            str(tls_service.ca_file),
            "--database-url",
            f"sqlite:///{tmp_path / 'x.db'}",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert half.returncode == 1
    assert "both a certificate and its key" in half.stderr
