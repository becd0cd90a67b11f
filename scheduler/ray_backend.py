"""The tiers as Ray Jobs API targets: submit, follow, stop and read jobs, and list each tier's alive nodes with
what Ray says is available on each.

A tier is either a label selector inside one shared Ray cluster (``{"suanli.io/tier": "hpc"}``) or a whole Ray
cluster of its own (``label_selector=None``); `TierTarget` names the cluster's dashboard either way. The values
this module answers with (`RayNode`, `RayJobStatus`, the `RayBackendError`s) are plain data in `scheduler.models`.
Jobs are Ray submissions whose submission id is Suanli's job id, so a retried dispatch is
recognised instead of run twice.

Every call carries the target's Ray token (``Authorization: Bearer``; `TierTarget.token`), from the scheduler
config; a cluster with ``RAY_AUTH_MODE=token`` answers a call without it 401 and one with a wrong token 403, which
are `RayRequestFailed` with that status (a configuration error, not an outage).

A tier's nodes are read from the dashboard's state API once per dispatch pass (`begin_pass`) and cluster, however
many tiers it serves (each tier's are those matching its selector). Free capacity is Ray's own accounting: once per
dispatch pass and cluster as well, one read-only gRPC call to its GCS (`TierTarget.gcs`),
``AutoscalerStateService.GetClusterResourceState``, with the same token as ``authorization`` metadata
(`available`). Ray's dashboard has no structured per-node *available* figure: its
``/api/cluster_status`` and ``/nodes?view=summary`` carry the autoscaler's report, refreshed every 5 s, keyed by
node IP (so the raylets of one machine are merged) or as formatted text.

Must not: log a target's token or put it in an error message; give Ray a runtime environment naming a local path
(Ray's client would zip and upload the service's own files: `submit_arguments` refuses ``working_dir`` and
``py_modules``), call `ray.init` (the service is not a Ray driver; everything goes through the dashboard's HTTP
APIs, but for the one read-only GCS call above), import `api`, or raise Ray's own exceptions to callers: an
unreachable cluster is `RayUnavailable` (keep the job queued and retry), an error answer is `RayRequestFailed`.

What Ray 2.60 does (observed with `scheduler.local_cluster`, 5 raylets and a 0-CPU head on 2 cores):

- With ``entrypoint_label_selector`` the job's supervisor actor, and so the entrypoint process, runs on a node of
  that tier even when no CPUs are asked for: ``JobDetails.driver_node_id`` is a node of the tier. If the
  entrypoint itself calls ``ray.init()``, its driver attaches to the head's raylet (same IP; Ray prefers the head),
  so the tasks and placement groups it makes must carry the tier's label selector too (a 2-bundle STRICT_SPREAD
  group with ``bundle_label_selector`` lands on the two hpc raylets).
- `submit_job` takes 0.02-0.05 s on a warm client; PENDING -> RUNNING 3.5-4.5 s; a trivial job ends 4-5 s after
  submission. Every node carries the label ``ray.io/node-id``, so a selector can also pin the entrypoint to one
  chosen node (`submit`'s `node_id`).
- A non-zero exit gives FAILED, ``driver_exit_code`` N and the message "Job entrypoint command failed with exit
  code N, last available logs ..." (the code is taken from that message when the field is empty).
- `stop_job` on a RUNNING job answers at once and the job is STOPPED ("Job was intentionally stopped.") about
  1.5 s later. A job whose resources no node of the selector can ever offer stays PENDING, and `stop_job` on it
  answers True yet leaves it PENDING: check feasibility before submitting.
- A job's log (`logs`, `tail_logs`) holds Ray's own "Runtime env is setting up." and "Running entrypoint for job
  ..." lines besides the entrypoint's output; the tail ends when the job does (a few seconds after it).
- `JobSubmissionClient` and `StateApiClient` ignore the address they are given when ``RAY_API_SERVER_ADDRESS``
  or ``RAY_ADDRESS`` is set (a Ray job has ``RAY_ADDRESS``: there, a client "for another cluster" reached its
  own), so `RayJobsBackend` refuses to start with either in its environment.
- Ray answers a second submission with the same submission id with HTTP 500 (not 409), and an unknown
  submission with 404; an invalid label selector is a 500 as well. `JobSubmissionClient` sets no HTTP timeout of
  its own, hence `_TimedJobClient`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

import aiohttp
import grpc  # type: ignore[import-untyped]  # ships no type information
from ray.core.generated import autoscaler_pb2, autoscaler_pb2_grpc
from ray.exceptions import AuthenticationError
from ray.job_submission import JobDetails, JobStatus, JobSubmissionClient, JobType
from ray.util.state import StateApiClient
from ray.util.state.common import ListApiOptions, NodeState, StateResource
from ray.util.state.exception import RayStateApiException, ServerUnavailable

from census_agent.labels import TIER_LABEL
from census_agent.models import Tier
from scheduler.models import (
    RayBackendError,
    RayJobState,
    RayJobStatus,
    RayNode,
    RayRequestFailed,
    RayUnavailable,
    TierTarget,
)

NODE_ID_LABEL = "ray.io/node-id"  # set by Ray on every node
# Ray's SDK (JobSubmissionClient, StateApiClient) replaces the address it is given by these variables' value
# (ray.dashboard.utils.get_address_for_submission_client), so with either set every target would be that one.
ADDRESS_OVERRIDES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
_EXIT_CODE = re.compile(r"failed with exit code (-?\d+)")
_HTTP_STATUS = re.compile(r"status code (\d{3})")
_UNAVAILABLE_STATUSES = frozenset({502, 503, 504})


def status_from_details(details: JobDetails) -> RayJobStatus:
    """Ray's job details as a `RayJobStatus` (times from ms to s; the exit code from the field or from the failure
    message)."""
    message = details.message or ""
    exit_code = details.driver_exit_code
    if exit_code is None and details.status == JobStatus.FAILED:
        match = _EXIT_CODE.search(message)
        exit_code = int(match.group(1)) if match else None
    return RayJobStatus(
        state=RayJobState(details.status.value),
        message=message,
        driver_node_id=details.driver_node_id or None,
        exit_code=exit_code,
        start_time=details.start_time / 1000 if details.start_time else None,
        end_time=details.end_time / 1000 if details.end_time else None,
    )


MISSING = RayJobStatus(RayJobState.MISSING, "Ray has no such submission")


UPLOADING_KEYS = frozenset({"working_dir", "py_modules"})  # local paths Ray's client zips and uploads


def submit_arguments(
    *,
    job_id: str,
    tier: str,
    entrypoint: str,
    cpus: float,
    gpus: float,
    memory_bytes: int,
    runtime_env: Mapping[str, Any] | None,
    metadata: Mapping[str, str] | None,
    selector: Mapping[str, str],
) -> dict[str, Any]:
    """The keyword arguments of `JobSubmissionClient.submit_job` for one submission.

    Refuses (`ValueError`) a runtime environment naming a local path or file Ray's client would read on this
    machine (``working_dir``, ``py_modules``; ``pip`` or ``conda`` as a file name): the service must never upload
    its own files for a job. A job's working directory is run into on the node instead
    (`scheduler.dispatcher.submission`)."""
    env = dict(runtime_env or {})
    uploading = sorted(UPLOADING_KEYS & env.keys())
    uploading += [key for key in ("pip", "conda") if isinstance(env.get(key), str)]  # a local file's name, read here
    if uploading:
        raise ValueError(f"runtime_env {', '.join(uploading)} refused: the service uploads nothing for a job")
    return {
        "entrypoint": entrypoint,
        "submission_id": job_id,
        "runtime_env": env or None,
        "metadata": {**(metadata or {}), TIER_LABEL: str(tier)},
        "entrypoint_num_cpus": cpus,
        "entrypoint_num_gpus": gpus,
        "entrypoint_memory": memory_bytes,
        "entrypoint_label_selector": dict(selector) or None,
    }


Free = tuple[float, float, float]  # what Ray says is available on a node: CPUs, GPUs, memory bytes
GRPC_MAX_MESSAGE_BYTES = 256 * 2**20  # a GCS answer for tens of thousands of nodes exceeds gRPC's 4 MiB default


# Ray's generated protobuf modules carry no type information: they are used through Any, in the two functions
# below only, and what they answer is read into plain values there.
_PROTO: Any = autoscaler_pb2
_GRPC: Any = autoscaler_pb2_grpc


def available_by_node(state: Any) -> dict[str, Free]:  # noqa: ANN401 - a ClusterResourceState message
    """What Ray says is available on each alive node of a `ClusterResourceState` (node id hex -> CPUs, GPUs,
    memory bytes). Ray leaves a resource with nothing available out of the map: absent is 0. Dead nodes are
    left out (a node Ray does not list is one Suanli places nothing on)."""
    found = {}
    for node in state.node_states:
        if node.status == _PROTO.NodeStatus.DEAD:
            continue
        available = node.available_resources
        found[node.node_id.hex()] = (
            float(available.get("CPU", 0.0)),
            float(available.get("GPU", 0.0)),
            float(available.get("memory", 0.0)),
        )
    return found


def cluster_resource_state(gcs: str, token: str | None, timeout_s: float) -> Any:  # noqa: ANN401 - a message
    """Ray's own accounting of every node's total and available resources, from the GCS
    (``AutoscalerStateService.GetClusterResourceState``, the call Ray's autoscaler reads: one unary RPC that the
    GCS answers from memory, kept current by each raylet's resource reports), with the cluster's token as
    ``authorization: Bearer`` metadata (how Ray's own clients send it). Read only; grpc's exceptions."""
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    options = [("grpc.max_receive_message_length", GRPC_MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(gcs, options=options) as channel:
        reply = _GRPC.AutoscalerStateServiceStub(channel).GetClusterResourceState(
            _PROTO.GetClusterResourceStateRequest(), timeout=timeout_s, metadata=metadata
        )
    return reply.cluster_resource_state


def auth_headers(token: str | None) -> dict[str, str]:
    """The HTTP header that carries a Ray cluster's token (what Ray's dashboard checks); none without a token.

    Passed explicitly to every client: Ray's SDK would otherwise add a token of its own only when *this* process
    runs with ``RAY_AUTH_MODE=token``, from ``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH``/``~/.ray/auth_token`` - one
    token for every cluster, where each target has its own."""
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def list_node_states(address: str, token: str | None, timeout_s: int = 30) -> list[NodeState]:
    """Every node Ray knows of (state API, details included), asked with the cluster's token; Ray's exceptions."""
    client = StateApiClient(address=address, headers={"Content-Type": "application/json", **auth_headers(token)})
    listed = client.list(
        StateResource.NODES,
        options=ListApiOptions(limit=10_000, timeout=timeout_s, detail=True),
        raise_on_missing_output=False,
    )
    return [state for state in listed if isinstance(state, NodeState)]


class _TimedJobClient(JobSubmissionClient):
    """`JobSubmissionClient` with a timeout on every HTTP request (the SDK leaves `requests` without one) and the
    cluster's token on every request (`requests` and `aiohttp` alike)."""

    def __init__(self, address: str, timeout_s: float, token: str | None = None) -> None:
        self._timeout_s = timeout_s  # before super().__init__, which already checks the version over HTTP
        super().__init__(address, headers=auth_headers(token))

    def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:  # noqa: ANN401 - requests.Response
        kwargs.setdefault("timeout", self._timeout_s)
        return super()._do_request(method, endpoint, **kwargs)


def _status_code(exc: BaseException) -> int | None:
    """The HTTP status in the SDK's "Request failed with status code N: ..." errors."""
    match = _HTTP_STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def _short(exc: BaseException) -> str:
    """The gist of an error: Ray's 500 answers carry a whole server traceback; keep its last line."""
    text = str(exc).strip().rstrip(".")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0][:120]} ... {lines[-1][:300]}"
    return text[:400]


def label_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether node `labels` satisfy a Ray label selector: ``v``, ``!v``, ``in(a,b)`` and ``!in(a,b)`` values."""
    for key, wanted in selector.items():
        value = labels.get(key)
        negate = wanted.startswith("!")
        spec = wanted[1:] if negate else wanted
        if spec.startswith("in(") and spec.endswith(")"):
            ok = value in {v.strip() for v in spec[3:-1].split(",")}
        else:
            ok = value == spec
        if ok == negate:
            return False
    return True


_Key = tuple[str, str | None]  # a cluster's (address, token)
_Read = TypeVar("_Read")


class RayJobsBackend:
    """Ray Jobs API calls per tier, one cached `JobSubmissionClient` per dashboard address; thread-safe."""

    def __init__(self, targets: Mapping[str, TierTarget] | Mapping[Tier, TierTarget], *, timeout_s: float = 10) -> None:
        overriding = [name for name in ADDRESS_OVERRIDES if os.environ.get(name)]
        if overriding:
            raise ValueError(
                f"{' and '.join(overriding)} set in the service's environment: Ray's SDK would send every tier's "
                "calls (and tokens) there instead of the scheduler config's addresses; unset it"
            )
        self.targets: dict[str, TierTarget] = {str(tier): target for tier, target in targets.items()}
        self.timeout_s = timeout_s
        self._clients: dict[tuple[str, str | None], _TimedJobClient] = {}  # by (address, token)
        self._available: dict[tuple[str, str | None], dict[str, Free]] = {}  # this pass's, by (GCS, token)
        self._listed: dict[tuple[str, str | None], list[NodeState]] = {}  # this pass's, by (dashboard, token)
        self._lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------------------------

    def _target(self, tier: str) -> TierTarget:
        try:
            return self.targets[str(tier)]
        except KeyError:
            raise ValueError(f"tier {tier!r} is not served (served: {', '.join(sorted(self.targets))})") from None

    def _client(self, tier: str) -> _TimedJobClient:
        target = self._target(tier)
        key = (target.address, target.token)
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        with self._errors(tier, "connect"):
            client = _TimedJobClient(target.address, self.timeout_s, target.token)
        with self._lock:
            return self._clients.setdefault(key, client)

    @contextlib.contextmanager
    def _errors(self, tier: str, what: str) -> Iterator[None]:
        """Ray's and the HTTP libraries' exceptions as `RayUnavailable` / `RayRequestFailed`."""
        try:
            yield
        except RayBackendError:
            raise
        except AuthenticationError as exc:  # the SDK's answer to a 401 (no token) or a 403 (a wrong one)
            refused = 401 if exc.message.startswith("Authentication required") else 403
            reason = "no token" if refused == 401 else "a wrong token"
            raise RayRequestFailed(tier, f"{what}: HTTP {refused}: Ray refused {reason}", refused) from None
        except ServerUnavailable as exc:
            raise RayUnavailable(tier, f"{what}: {_short(exc)}") from exc
        except RayStateApiException as exc:
            raise RayRequestFailed(tier, f"{what}: {_short(exc)}") from exc
        except (OSError, aiohttp.ClientConnectionError, TimeoutError) as exc:  # requests' errors are OSErrors
            raise RayUnavailable(tier, f"{what}: {_short(exc)}") from exc
        except aiohttp.ClientResponseError as exc:
            if exc.status in _UNAVAILABLE_STATUSES:
                raise RayUnavailable(tier, f"{what}: HTTP {exc.status}") from exc
            raise RayRequestFailed(tier, f"{what}: HTTP {exc.status} {exc.message}", exc.status) from exc
        except RuntimeError as exc:  # the SDK's "Request failed with status code N: ..."
            status = _status_code(exc)
            if status is None or status in _UNAVAILABLE_STATUSES:
                raise RayUnavailable(tier, f"{what}: {_short(exc)}") from exc
            raise RayRequestFailed(tier, f"{what}: {_short(exc)}", status) from exc

    @staticmethod
    def _details(client: JobSubmissionClient, job_id: str) -> JobDetails | None:
        """The submission's details, or None if Ray has no such submission."""
        try:
            return client.get_job_info(job_id)
        except RuntimeError as exc:
            if _status_code(exc) == 404:
                return None
            raise

    # -- jobs --------------------------------------------------------------------------------------------------

    def submit(
        self,
        *,
        job_id: str,
        tier: str,
        entrypoint: str,
        cpus: float,
        gpus: float,
        memory_bytes: int,
        runtime_env: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        node_id: str | None = None,
    ) -> bool:
        """Submit `entrypoint` as submission `job_id` with the resources its entrypoint reserves, on `tier`'s nodes
        (on node `node_id` when given). False, and nothing submitted, if Ray already has that submission: a retried
        dispatch never runs twice. True when submitted now. `ValueError` for a runtime environment that would
        upload local files (`submit_arguments`).
        """
        selector = dict(self._target(tier).label_selector or {})
        if node_id is not None:
            selector[NODE_ID_LABEL] = node_id
        arguments = submit_arguments(
            job_id=job_id,
            tier=tier,
            entrypoint=entrypoint,
            cpus=cpus,
            gpus=gpus,
            memory_bytes=memory_bytes,
            runtime_env=runtime_env,
            metadata=metadata,
            selector=selector,
        )
        client = self._client(tier)
        with self._errors(tier, f"submit {job_id}"):
            if self._details(client, job_id) is not None:
                return False
            try:
                client.submit_job(**arguments)
            except (RuntimeError, OSError):
                # Refused because it exists (a concurrent or timed-out earlier try got in) is not an error.
                if self._details(client, job_id) is not None:
                    return False
                raise
            return True

    def status(self, job_id: str, tier: str) -> RayJobStatus:
        """Ray's view of submission `job_id`; state MISSING if Ray has none."""
        client = self._client(tier)
        with self._errors(tier, f"status of {job_id}"):
            details = self._details(client, job_id)
        return MISSING if details is None else status_from_details(details)

    def stop(self, job_id: str, tier: str) -> bool:
        """Ask Ray to stop the submission; False if it had already ended or Ray has none."""
        client = self._client(tier)
        with self._errors(tier, f"stop {job_id}"):
            try:
                return client.stop_job(job_id)
            except RuntimeError as exc:
                if _status_code(exc) == 404:
                    return False
                raise

    def logs(self, job_id: str, tier: str) -> str:
        """The submission's output so far (Ray's setup lines included); `RayRequestFailed` (404) if Ray has none."""
        client = self._client(tier)
        with self._errors(tier, f"logs of {job_id}"):
            return client.get_job_logs(job_id)

    async def tail_logs(self, job_id: str, tier: str) -> AsyncIterator[str]:
        """The submission's output in chunks as it is written, ending when the job ends."""
        client = self._client(tier)  # blocking on first use only (a version check over HTTP)
        with self._errors(tier, f"tail logs of {job_id}"):
            async for chunk in client.tail_job_logs(job_id):
                yield chunk

    def jobs(self, tier: str) -> dict[str, RayJobStatus]:
        """The submissions made for `tier` (submission id -> status), to reconcile after a restart."""
        client = self._client(tier)
        with self._errors(tier, "list jobs"):
            listed = client.list_jobs()
        return {
            job.submission_id: status_from_details(job)
            for job in listed
            if job.type == JobType.SUBMISSION
            and job.submission_id is not None
            and (job.metadata or {}).get(TIER_LABEL) == str(tier)
        }

    # -- nodes -------------------------------------------------------------------------------------------------

    def begin_pass(self) -> None:
        """A new dispatch pass: forget the nodes and available resources read for the last one (each cluster's
        are read once per pass, however many tiers it serves)."""
        with self._lock:
            self._available.clear()
            self._listed.clear()

    def node_states(self, tier: str) -> list[NodeState]:
        """Every node of `tier`'s cluster as its dashboard's state API lists it (alive or not, any labels), read
        once per pass (`begin_pass`) and cluster: in single-cluster mode one call serves every tier. A failed read
        is not kept (the next tier asks again)."""
        target = self._target(tier)

        def read() -> list[NodeState]:
            with self._errors(tier, "list nodes"):
                return list_node_states(target.address, target.token, max(1, math.ceil(self.timeout_s)))

        return self._once_per_pass(self._listed, (target.address, target.token), read)

    def available(self, tier: str) -> dict[str, Free]:
        """What Ray says is available on each alive node of `tier`'s cluster (node id -> CPUs, GPUs, memory
        bytes), read from its GCS once per pass (`begin_pass`). A GCS that cannot be asked is `RayRequestFailed`,
        never `RayUnavailable`: the dashboard answered, so the tier's running jobs are not presumed lost; its jobs
        wait until Ray's figures can be read."""
        target = self._target(tier)

        def read() -> dict[str, Free]:
            try:
                state = cluster_resource_state(target.gcs, target.token, self.timeout_s)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else None
                detail = exc.details() if isinstance(exc, grpc.Call) else None
                detail = (detail or "").strip()[:200]
                if target.token:
                    detail = detail.replace(target.token, "***")
                what = f"read available resources from the GCS at {target.gcs}"
                status = 401 if code is grpc.StatusCode.UNAUTHENTICATED else None
                raise RayRequestFailed(tier, f"{what}: {code.name if code else 'error'}: {detail}", status) from None
            return available_by_node(state)

        return self._once_per_pass(self._available, (target.gcs, target.token), read)

    def _once_per_pass(self, cache: dict[_Key, _Read], key: _Key, read: Callable[[], _Read]) -> _Read:
        """`cache`'s value for `key` this pass, read (outside the lock) when there is none; a read that raises
        keeps nothing, so the next caller asks again. Two callers at once may both read: the first kept wins."""
        with self._lock:
            cached = cache.get(key)
        if cached is not None:
            return cached
        found = read()
        with self._lock:
            return cache.setdefault(key, found)

    def nodes(self, tier: str) -> list[RayNode]:
        """The tier's alive nodes: those matching its selector, or, for a cluster of its own, every alive node
        with CPUs or GPUs (a 0-CPU head is left out), each with what Ray says is available on it now
        (`available`; a node Ray's accounting does not list yet has nothing free). Both are read once per pass
        (`node_states`, `available`): call `begin_pass` for a fresh view."""
        target = self._target(tier)
        states = self.node_states(tier)
        free = self.available(tier)
        found = []
        for state in states:
            if state.state != "ALIVE":
                continue
            resources = {str(k): float(v) for k, v in (state.resources_total or {}).items()}
            labels = {str(k): str(v) for k, v in (state.labels or {}).items()}
            cpus, gpus, memory = free.get(state.node_id, (0.0, 0.0, 0.0))
            node = RayNode(
                node_id=state.node_id,
                cpus=resources.get("CPU", 0.0),
                gpus=resources.get("GPU", 0.0),
                memory_bytes=resources.get("memory", 0.0),
                labels=labels,
                name=state.node_name or "",
                free_cpus=cpus,
                free_gpus=gpus,
                free_memory_bytes=memory,
            )
            if target.label_selector is not None:
                if label_matches(target.label_selector, labels):
                    found.append(node)
            elif node.cpus > 0 or node.gpus > 0:
                found.append(node)
        return sorted(found, key=lambda n: (n.name, n.node_id))
