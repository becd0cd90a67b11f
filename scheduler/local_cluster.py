"""A local multi-raylet Ray cluster on this one machine, one raylet per tier slice, for `suanli up` and the tests.

A head with no CPUs (so no job lands on it by accident) runs the GCS and the dashboard (the Jobs API), and each
`RayletSpec` (`scheduler.slicing`, which also shares a machine out among them) becomes one more `ray start` labelled
``suanli.io/tier=<tier>``. Every port Ray would otherwise take from a fixed default (6379, 8265, 10001, 52365, the
10002-19999 worker range) is chosen free or left to the OS, so several clusters can share the machine. `stop` ends
exactly the processes this cluster started.

Every process runs with Ray's token authentication (``RAY_AUTH_MODE=token``) and a token this cluster generates
(256 bits) and keeps in ``<workdir>/ray-auth.token`` (0600), which Ray reads through ``RAY_AUTH_TOKEN_PATH``: the
GCS, raylets and dashboard refuse a caller without it. `token`, `token_file` and `target` give it to the scheduler.

Must not: run `ray stop` or touch any Ray process it did not start; call `ray.init` (this module only launches
and inspects through the dashboard); import `api`; decide how a machine is sliced (`scheduler.slicing` does);
log the token or put it on a command line (where any local user could read it in ps); start Ray without it.

What Ray 2.60 does here (observed on a 2-core machine, see the tests in tests/integration/ray):

- ``--node-ip-address=127.0.0.1`` is replaced by the primary interface's address (Ray turns loopback into a
  "remotely reachable" IP on purpose, ray-project/ray#26293), and the GCS, raylet and object manager gRPC servers
  listen on all interfaces whatever the node IP. Only the dashboard honours ``--dashboard-host=127.0.0.1``. The
  flag is still passed; `address` names 127.0.0.1, which reaches the GCS as well.
- Node resources must be whole numbers ("Resource quantities must all be whole numbers"), so a raylet gets an
  integer number of logical CPUs and GPUs; logical GPUs need no real GPU.
- All nodes share one Ray temp dir, as `ray.cluster_utils.Cluster` does: the Jobs API reads a job's log through the
  head's agent from the session's logs folder, so with a temp dir per node `logs` showed only the head's
  "Runtime env is setting up." line. Sharing it, two `ray start`s launched together pick the same names for their
  unix sockets (both took sockets/raylet.1 and one raylet died with "bind: Address already in use"), so a raylet
  is launched only once the previous one has created its sockets, and at most `parallel` start at a time
  (sequential: about 8.5 s a raylet; two at a time: about 5-6 s a raylet on 2 cores).
- A `ray start` gives up if its raylet has not registered within 30 s (hard-coded in ``ray._private.node``), which
  happens under load; the failed start's processes are killed and it is retried once. The head is tried up to
  three times: with a load of 8-15 on 2 cores its raylet was seen to give up waiting 15 s (hard-coded) for the
  dashboard agent to write its port file, the agent's Python imports alone taking longer.
- SIGTERM leaves the raylet, ``gcs_server`` and the autoscaler monitor running; they need SIGKILL.
- With ``RAY_AUTH_MODE=token`` the token comes from ``RAY_AUTH_TOKEN``, else the file ``RAY_AUTH_TOKEN_PATH``,
  else ``~/.ray/auth_token`` (in that order), so an inherited ``RAY_AUTH_TOKEN`` is dropped. Every worker, job
  supervisor and job entrypoint inherits the raylet's environment, hence the path, and can read the token: a job
  holds its cluster's token (docs/security.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from scheduler.models import TierTarget
from scheduler.slicing import (
    DEFAULT_OBJECT_STORE_BYTES,
    RayletSpec,
    raylet_names,
)

log = logging.getLogger(__name__)

# Every process of a cluster inherits this variable (set on each `ray start`); `stop` finds strays by it.
CLUSTER_ENV = "SUANLI_RAY_CLUSTER"
TOKEN_FILE_NAME = "ray-auth.token"  # noqa: S105 - a file name; in the workdir: the cluster's Ray authentication token, 0600

# Ray puts its unix sockets in <temp dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store.<n>, up to 66
# characters more than the temp dir, and a unix socket path may not exceed 107 bytes: so the temp dir is a short
# fresh folder under /tmp, never a (long) pytest or work dir.
_TEMP_ROOT = "/tmp"  # noqa: S108 - a private mkdtemp folder, not a predictable file
_MAX_TEMP_DIR_CHARS = 107 - 66
_SOCKETS_WAIT_S = 30  # how long the next raylet's launch waits for the previous one's sockets


class LocalClusterError(RuntimeError):
    """The local Ray cluster could not be started; the message carries the tail of Ray's logs."""


class _StartFailed(LocalClusterError):
    """One `ray start` failed; `session` is the session id of what it may have left running."""

    def __init__(self, message: str, session: int) -> None:
        super().__init__(message)
        self.session = session


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that nothing listens on right now (held together so they differ)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _ray_executable() -> str:
    """The `ray` command of this interpreter's environment (the one whose Ray version we import)."""
    beside = Path(sys.executable).with_name("ray")
    if beside.is_file():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise LocalClusterError("the `ray` command is not installed (it comes with the `server` extra)")
    return found


def _tail(path: Path, max_chars: int = 2000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-max_chars:]


class LocalRayCluster:
    """A head (0 CPUs by default, GCS + dashboard) and one labelled raylet per `RayletSpec`, all on 127.0.0.1.

    `workdir` receives the output of each `ray start`; Ray's own logs are in `temp_dir` (a short folder under /tmp,
    see above), removed by `stop` unless `keep_logs`.
    """

    def __init__(
        self,
        workdir: Path,
        raylets: Sequence[RayletSpec],
        *,
        head_cpus: int = 0,
        head_object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES,
        parallel: int = 2,
        keep_logs: bool = False,
    ) -> None:
        self.workdir = workdir
        self.raylets = list(raylets)
        self.names = raylet_names(self.raylets)
        self.head_cpus = head_cpus
        self.head_object_store_bytes = head_object_store_bytes
        self.parallel = max(1, parallel)
        self.keep_logs = keep_logs
        self.temp_dir: Path | None = None
        self._mark = secrets.token_hex(8)  # the value of CLUSTER_ENV: not a secret, it marks our processes
        self._auth_token = secrets.token_hex(32)  # Ray's own generator takes 256 bits too
        self._gcs_port: int | None = None
        self._dashboard_port: int | None = None
        self._sessions: set[int] = set()  # session ids of our `ray start`s; their daemons stay in them
        self._started_at = 0.0  # wall clock: none of our processes is older (guards against recycled ids)
        self._lock = threading.Lock()
        self._launch_lock = threading.Lock()  # one `ray start` launching at a time (see _run_ray_start)
        self._added: dict[int, str] = {}  # session id -> name of each raylet started by add_raylet

    # -- addresses ---------------------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The GCS address, ``127.0.0.1:PORT`` (what `ray start --address` and `ray.init` take)."""
        if self._gcs_port is None:
            raise RuntimeError("the cluster is not started")
        return f"127.0.0.1:{self._gcs_port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard, ``http://127.0.0.1:PORT``: what `JobSubmissionClient` and the state API take."""
        if self._dashboard_port is None:
            raise RuntimeError("the cluster is not started")
        return f"http://127.0.0.1:{self._dashboard_port}"

    @property
    def token(self) -> str:
        """The cluster's Ray authentication token (``Authorization: Bearer <token>`` on the dashboard)."""
        return self._auth_token

    @property
    def token_file(self) -> Path:
        """The file holding `token` (0600, written by `start`): what a scheduler config's ``token_file`` names."""
        return self.workdir / TOKEN_FILE_NAME

    def target(self, label_selector: dict[str, str] | None = None) -> TierTarget:
        """A scheduler target on this cluster (its dashboard, token and GCS), for nodes matching `label_selector`."""
        return TierTarget(self.dashboard_url, label_selector, self.token, self.address)

    # -- start -------------------------------------------------------------------------------------------------

    def start(self, timeout_s: float = 180) -> None:
        """Start the head, then the raylets, and wait until every raylet is ALIVE and the Jobs API answers.

        Raises `LocalClusterError` (with the tail of Ray's logs) after stopping whatever was started.
        """
        if self.temp_dir is not None:
            raise RuntimeError("the cluster was already started")
        deadline = time.monotonic() + timeout_s
        self.workdir.mkdir(parents=True, exist_ok=True)
        _write_private(self.token_file, self._auth_token + "\n")
        self._started_at = time.time()
        self.temp_dir = Path(tempfile.mkdtemp(prefix="suanli-", dir=_TEMP_ROOT))
        if len(str(self.temp_dir)) > _MAX_TEMP_DIR_CHARS:  # pragma: no cover - mkdtemp under /tmp is short
            raise LocalClusterError(f"Ray temp dir {self.temp_dir} is too long for its unix sockets")
        try:
            began = time.monotonic()
            self._start_head_retrying(deadline)
            log.info(
                "ray head up in %.1f s (gcs %s, dashboard %s)",
                time.monotonic() - began,
                self.address,
                self.dashboard_url,
            )
            self._start_raylets(deadline)
            self._wait_ready(deadline)
            log.info("ray cluster ready in %.1f s: %d raylet(s)", time.monotonic() - began, len(self.raylets))
        except BaseException:
            self.stop()
            raise

    def _env(self) -> dict[str, str]:
        dropped = {"RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"}
        env = {k: v for k, v in os.environ.items() if k not in dropped}
        env |= {
            "RAY_USAGE_STATS_ENABLED": "0",
            CLUSTER_ENV: self._mark,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_file),
        }
        return env

    def _common_flags(self, name: str, spec_ports: Sequence[int]) -> list[str]:
        node_manager, object_manager, metrics_export, agent_http, agent_grpc, runtime_env = spec_ports
        assert self.temp_dir is not None
        return [
            "--node-ip-address=127.0.0.1",
            f"--node-name={name}",
            f"--temp-dir={self.temp_dir}",
            f"--node-manager-port={node_manager}",
            f"--object-manager-port={object_manager}",
            f"--metrics-export-port={metrics_export}",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}",
            "--min-worker-port=0",  # workers bind ports the OS picks, not the shared 10002-19999 range
            "--max-worker-port=0",
            "--disable-usage-stats",
            "--log-style=record",
            "--log-color=false",
        ]

    def _start_head(self, deadline: float) -> None:
        gcs, dashboard, client, *node_ports = _free_ports(9)
        argv = [
            _ray_executable(),
            "start",
            "--head",
            f"--port={gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}",
            f"--num-cpus={self.head_cpus}",
            "--num-gpus=0",
            "--memory=0",
            f"--object-store-memory={self.head_object_store_bytes}",
            *self._common_flags("head", node_ports),
        ]
        self._gcs_port, self._dashboard_port = gcs, dashboard
        self._run_ray_start("head", argv, deadline)

    def _start_head_retrying(self, deadline: float, attempts: int = 3) -> None:
        """`_start_head`, again on fresh ports while it fails in time (at most `attempts` tries): under load the
        head's raylet gives up waiting 15 s (hard-coded) for its dashboard agent ("Timed out waiting for file
        ... dashboard_agent_listen_port"), and `ray start` then fails."""
        for attempt in range(1, attempts + 1):
            try:
                self._start_head(deadline)
            except _StartFailed as exc:
                if attempt == attempts or time.monotonic() > deadline:
                    raise
                log.warning("the ray head did not start (try %d); cleaning it up and trying again", attempt)
                _terminate([p for p in self._processes() if _sid(p.pid) == exc.session], grace_s=0)
            else:
                return

    def _raylet_argv(self, spec: RayletSpec, name: str) -> list[str]:
        labels = ",".join(f"{k}={v}" for k, v in spec.all_labels().items())
        return [
            _ray_executable(),
            "start",
            f"--address={self.address}",
            f"--labels={labels}",
            f"--num-cpus={spec.cpus}",
            f"--num-gpus={spec.gpus}",
            f"--memory={spec.memory_bytes}",
            f"--object-store-memory={spec.object_store_bytes}",
            "--include-log-monitor=false",  # the head's log monitor reads the shared session's logs
            *self._common_flags(name, _free_ports(6)),
        ]

    def _start_raylets(self, deadline: float) -> None:
        def start_one(spec: RayletSpec, name: str) -> None:
            began = time.monotonic()
            for attempt in (1, 2):
                try:
                    self._run_ray_start(name, self._raylet_argv(spec, name), deadline, staggered=True)
                except _StartFailed as exc:
                    if attempt == 2 or time.monotonic() > deadline:
                        raise
                    log.warning("raylet %s did not start; cleaning it up and trying once more", name)
                    # Kill what the failed start left, so that a late registration cannot make a duplicate node.
                    _terminate([p for p in self._processes() if _sid(p.pid) == exc.session], grace_s=0)
                    continue
                log.info(
                    "raylet %s joined in %.1f s (%s)",
                    name,
                    time.monotonic() - began,
                    ", ".join(f"{k}={v}" for k, v in spec.all_labels().items()),
                )
                return

        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="ray-start") as pool:
            futures = [pool.submit(start_one, spec, name) for spec, name in zip(self.raylets, self.names, strict=True)]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            raise failed[0]

    def add_raylet(self, spec: RayletSpec, name: str, timeout_s: float = 120) -> int:
        """Start one more raylet in the running cluster and wait until it is ALIVE; returns its session id (what
        `kill_raylet` takes).  For growing a local cluster, and for fault tests."""
        if self.temp_dir is None:
            raise RuntimeError("the cluster is not started")
        if name in self.names:
            raise ValueError(f"a raylet is already named {name!r}")
        deadline = time.monotonic() + timeout_s
        session = self._run_ray_start(name, self._raylet_argv(spec, name), deadline, staggered=True)
        self.raylets.append(spec)
        self.names.append(name)
        self._added[session] = name
        self._wait_ready(deadline)
        return session

    def kill_raylet(self, session: int) -> list[int]:
        """SIGKILL one raylet started by `add_raylet` with everything it runs (workers, job drivers): a machine
        lost, as the rest of the cluster sees it.  It leaves `raylets` and `names`.  Returns the pids killed."""
        name = self._added.pop(session, None)
        if name is not None:
            index = self.names.index(name)
            del self.names[index], self.raylets[index]
        ours = [p for p in self._processes() if _sid(p.pid) == session]
        victims = {p.pid: p for p in ours}
        for proc in ours:
            with contextlib.suppress(psutil.Error):
                victims.update({c.pid: c for c in proc.children(recursive=True)})
        _terminate(list(victims.values()), grace_s=0)
        return sorted(victims)

    def _run_ray_start(self, name: str, argv: list[str], deadline: float, *, staggered: bool = False) -> int:
        """Run one `ray start` in a session of its own (whose id marks the daemons it leaves); return that id.

        `staggered`: launch only after the previous raylet has created its sockets, and hold the next one back
        until this one has (they would otherwise pick the same socket names in the shared session).
        """
        log_path = self.workdir / f"ray-start-{name}.log"
        with self._launch_lock:
            sockets_before = self._raylet_sockets()
            with log_path.open("ab") as out:
                proc = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                    start_new_session=True,
                    cwd=self.workdir,
                )
            with self._lock:
                self._sessions.add(proc.pid)
            if staggered:
                settle = min(deadline, time.monotonic() + _SOCKETS_WAIT_S)
                while self._raylet_sockets() <= sockets_before and proc.poll() is None and time.monotonic() < settle:
                    time.sleep(0.1)
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise _StartFailed(f"`ray start` for {name} timed out\n{self._log_tail(log_path)}", proc.pid) from None
        if rc != 0:
            raise _StartFailed(f"`ray start` for {name} exited {rc}\n{self._log_tail(log_path)}", proc.pid)
        return proc.pid

    def _raylet_sockets(self) -> int:
        """How many raylet sockets the shared session has (one per raylet started, the head's included)."""
        assert self.temp_dir is not None
        sockets = self.temp_dir / "session_latest" / "sockets"
        try:
            return sum(1 for p in sockets.iterdir() if p.name.startswith("raylet"))
        except OSError:
            return 0

    def _wait_ready(self, deadline: float) -> None:
        """Every raylet ALIVE with its labels (through the dashboard's state API) and the Jobs API answering."""
        expected = set(self.names)
        seen: set[str] = set()
        last_error = ""
        headers = {"Authorization": f"Bearer {self._auth_token}"}
        with httpx.Client(base_url=self.dashboard_url, timeout=5, headers=headers) as client:
            while time.monotonic() < deadline:
                try:
                    version = client.get("/api/version")
                    nodes = client.get("/api/v0/nodes", params={"limit": 1000, "detail": "true"})
                    if version.status_code == 200 and nodes.status_code == 200:
                        rows = nodes.json()["data"]["result"]["result"]
                        seen = {r["node_name"] for r in rows if r["state"] == "ALIVE" and not r["is_head_node"]}
                        if expected <= seen:
                            return
                    last_error = f"HTTP {version.status_code}/{nodes.status_code}"
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    last_error = repr(exc)
                time.sleep(0.5)
        raise LocalClusterError(
            f"raylets {sorted(expected - seen)} not ALIVE or the Jobs API not answering ({last_error})\n"
            + self._log_tail()
        )

    def _log_tail(self, start_log: Path | None = None) -> str:
        parts = []
        if start_log is not None:
            parts.append(f"--- {start_log.name}\n{_tail(start_log)}")
        if self.temp_dir is not None:
            for pattern in ("gcs_server.err", "raylet*.err", "dashboard.err", "raylet*.out"):
                for path in sorted(self.temp_dir.glob(f"session_latest/logs/{pattern}"))[-3:]:
                    text = _tail(path, 800).strip()
                    if text:
                        parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts)[-6000:]

    # -- stop --------------------------------------------------------------------------------------------------

    def pids(self) -> set[int]:
        """Ids of the processes of this cluster that are running now."""
        return {p.pid for p in self._processes()}

    def _processes(self) -> list[psutil.Process]:
        """Our processes: started since `start` and in one of our `ray start` sessions, naming our temp dir or
        carrying our token in their environment (job entrypoints, which Ray starts in new sessions); and every
        descendant of those."""
        if self.temp_dir is None:
            return []
        me = psutil.Process()
        exclude = {me.pid, *(p.pid for p in me.parents())}
        temp_dir = str(self.temp_dir)
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            if proc.pid in exclude or (proc.info["create_time"] or 0) < self._started_at - 1:
                continue
            with contextlib.suppress(psutil.Error):
                if (
                    _sid(proc.pid) in self._sessions
                    or temp_dir in " ".join(proc.info["cmdline"] or ())
                    or proc.environ().get(CLUSTER_ENV) == self._mark
                ):
                    found[proc.pid] = proc
        for proc in list(found.values()):
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
        return [p for pid, p in found.items() if pid not in exclude and _alive(p)]

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM every process of this cluster, SIGKILL what is left after a grace period; idempotent.

        Looks again until nothing is found (a dying raylet may start a worker) or `timeout_s` has passed.
        """
        if self.temp_dir is None:
            return
        deadline = time.monotonic() + timeout_s
        began = time.monotonic()
        grace = min(2.0, timeout_s / 4)  # then SIGKILL: gcs_server, raylets and the monitor ignore SIGTERM
        count = 0
        while True:
            victims = self._processes()
            if not victims:
                break
            _terminate(victims, grace_s=grace if count == 0 else 0)
            count += len(victims)
            if time.monotonic() > deadline:
                left = sorted(self.pids())
                if left:
                    log.warning("ray processes still running after stop: %s", left)
                break
        log.info("ray cluster stopped in %.1f s (%d process(es))", time.monotonic() - began, count)
        if not self.keep_logs:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.token_file.unlink(missing_ok=True)
        self.temp_dir = None
        self._gcs_port = self._dashboard_port = None

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable and writable by its owner alone (0600 whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def _sid(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _terminate(procs: Sequence[psutil.Process], grace_s: float) -> None:
    """SIGTERM `procs`, wait up to `grace_s`, SIGKILL the rest and reap them."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
    _, alive = psutil.wait_procs(procs, timeout=grace_s) if grace_s > 0 else ([], list(procs))
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
