"""The scheduler's values: the job model, the views the policy decides over, and Ray's answers as plain data.

A `JobSpec` is what a user submits (validated here, so the API, the CLI and the SDK share one contract);
`JobState` is the lifecycle the dispatcher persists; `NodeView` and `RunningJob` are the facts the routing
policy and the queue decide over, built by the dispatcher from Ray's live view. `TierTarget` says where a tier's
jobs go; `RayNode`, `RayJobStatus` and the `RayBackendError`s are what a backend (`scheduler.ray_backend`, or a
test's fake) answers the dispatcher, so the dispatcher and the configuration need no Ray to be imported.

Pure: no I/O, no Ray, no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from census_agent.models import RegionCode, ShortText, Tier

# An entrypoint is stored and shown verbatim and only ever run by Ray on a node: no control characters but tab
# and newline (a script may span lines), bounded so a queue of them stays small.
Entrypoint = Annotated[str, StringConstraints(min_length=1, max_length=8192, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
EnvValue = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\x00]*$")]
MAX_WORKING_DIR_LENGTH = 1024


def node_directory(value: str) -> str:
    """A working directory on the node that runs the job: an absolute POSIX path, no ``..``, no control characters.

    Never a path on the service's host and never a package URI: the service does not read its own files for a job
    and fetches nothing for it (Ray would zip a local directory on the submitting machine, the service, and ship
    it to the cluster; docs/security.md)."""
    if "://" in value:
        raise ValueError("must be an absolute directory on the node that runs the job; package URIs are not accepted")
    if not value.startswith("/"):
        raise ValueError("must be an absolute path (a directory on the node that runs the job)")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'")
    return value


WorkingDir = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_WORKING_DIR_LENGTH, pattern=r"^[^\x00-\x1f\x7f]*$"),
    AfterValidator(node_directory),
]
PipRequirement = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]

MAX_CPUS_PER_NODE = 4096.0
MAX_GPUS_PER_NODE = 64
MAX_MEMORY_BYTES = 64 * 2**40  # 64 TiB on one node is beyond any machine built
MAX_NODES = 4096
MAX_TIME_LIMIT_SECONDS = 30 * 24 * 3600
DEFAULT_TIME_LIMIT_SECONDS = 3600


class WorkloadClass(StrEnum):
    """The five services the plan names; each is routed to tiers by the policy."""

    GENERAL = "general"
    IN_MEMORY = "in-memory"
    HPC = "hpc"
    AI = "ai"
    EDGE = "edge"


class JobState(StrEnum):
    """A job's lifecycle: queued -> dispatching -> running -> succeeded | failed | cancelled."""

    QUEUED = "queued"
    DISPATCHING = "dispatching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the job will never change again."""
        return self in TERMINAL


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class Resources(BaseModel):
    """What a job needs on each of its nodes (`nodes` > 1: a gang of that many distinct nodes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpus: float = Field(default=1.0, gt=0, le=MAX_CPUS_PER_NODE, description="logical CPUs per node")
    gpus: int = Field(default=0, ge=0, le=MAX_GPUS_PER_NODE, description="GPUs per node")
    memory_bytes: int = Field(default=0, ge=0, le=MAX_MEMORY_BYTES, description="memory per node, bytes")
    nodes: int = Field(default=1, ge=1, le=MAX_NODES, description="nodes in the gang (hpc); 1 otherwise")


class RuntimeEnv(BaseModel):
    """Where and with what the entrypoint runs: `working_dir` is a directory on the node (the entrypoint is run
    there; it is never given to Ray's ``runtime_env.working_dir``, which would upload a directory of the service's
    own host); `env_vars` and `pip` go to Ray's runtime environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    working_dir: WorkingDir | None = Field(
        default=None, description="an absolute directory on the node that runs the job (nothing is uploaded)"
    )
    env_vars: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=256)
    pip: list[PipRequirement] = Field(default_factory=list, max_length=256)


class JobSpec(BaseModel):
    """A job as submitted: the contract of `POST /v1/jobs`, the SDK and `suanli submit`. Its JSON names the
    workload class ``class``, as the CLI's ``--class`` does."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True)

    name: ShortText = Field(min_length=1)
    workload_class: WorkloadClass = Field(alias="class")
    entrypoint: Entrypoint = Field(description="shell command run by Ray on the chosen node, stored verbatim")
    runtime_env: RuntimeEnv = Field(default_factory=RuntimeEnv)
    resources: Resources = Field(default_factory=Resources)
    priority: int = Field(default=0, ge=-1000, le=1000, description="higher runs first")
    organisation: ShortText = Field(default="default", min_length=1)
    region: RegionCode | None = Field(default=None, description="edge locality: nodes in this region first")
    time_limit_seconds: int = Field(default=DEFAULT_TIME_LIMIT_SECONDS, gt=0, le=MAX_TIME_LIMIT_SECONDS)
    max_retries: int = Field(default=0, ge=0, le=10)


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node that can run jobs, as the scheduler sees it: its tier, totals and what is free now.

    Built from Ray's node (`scheduler.dispatcher.node_views`) the free figures are what Ray says is available on
    it; `scheduler.queue.net_of_running` turns them into what Suanli may still place there (less its own jobs Ray
    has not accounted for yet) and fills ``outside_*``: what Ray says is held on the node by work Suanli did not
    place (a job submitted straight to Ray, an actor), which a waiting job's reason names."""

    node_id: str
    tier: Tier
    cpus: float
    gpus: float
    memory_bytes: float
    free_cpus: float
    free_gpus: float
    free_memory_bytes: float
    region: str | None = None
    outside_cpus: float = 0.0
    outside_gpus: float = 0.0
    outside_memory_bytes: float = 0.0
    name: str = ""  # Ray's node name (e.g. hpc-0), for reasons; "" when it has none

    @property
    def label(self) -> str:
        """How a reason names the node: its name and the start of its id, or its id."""
        return f"{self.name} ({self.node_id[:8]})" if self.name else self.node_id


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A waiting job as the queue sees it."""

    job_id: str
    spec: JobSpec
    submitted_at: float  # seconds since the epoch; FIFO within a priority and organisation
    attempt: int = 0  # 0 for the first run, +1 for each retry


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A dispatched job holding resources on its nodes until it ends (at the latest at its time limit)."""

    job_id: str
    organisation: str
    tier: Tier
    node_ids: tuple[str, ...]
    resources: Resources
    started_at: float
    time_limit_seconds: int
    # True once Ray was seen running it before this pass's capacity snapshot was read: Ray's free figures then
    # already count what it holds. False (the safe default) while it may not have: Suanli subtracts it itself.
    ray_holds: bool = False

    @property
    def ends_by(self) -> float:
        """When its time limit stops it, at the latest."""
        return self.started_at + self.time_limit_seconds


# -- the Ray side, as plain data ----------------------------------------------------------------------------------


GCS_DEFAULT_PORT = 6379  # Ray's default GCS port (`ray start --head --port`)


@dataclass(frozen=True)
class TierTarget:
    """Where a tier's jobs go: a Ray dashboard URL, in a shared cluster the selector of the tier's nodes, the
    cluster's Ray authentication token (``RAY_AUTH_MODE=token``; None: a cluster without token authentication),
    and its GCS address (``host:port``), where Ray's per-node available resources are read (None: the dashboard's
    host on Ray's default GCS port). The token is left out of the repr, so logging a target never logs it."""

    address: str  # e.g. "http://127.0.0.1:8265"
    label_selector: Mapping[str, str] | None = None  # {"suanli.io/tier": "hpc"}, or None: the whole cluster
    token: str | None = field(default=None, repr=False)
    gcs_address: str | None = None  # e.g. "10.0.0.5:6379"

    @property
    def gcs(self) -> str:
        """The GCS address to ask: `gcs_address`, or the dashboard's host on port 6379."""
        if self.gcs_address is not None:
            return self.gcs_address
        host = urlsplit(self.address).hostname or "127.0.0.1"
        return f"[{host}]:{GCS_DEFAULT_PORT}" if ":" in host else f"{host}:{GCS_DEFAULT_PORT}"


@dataclass(frozen=True)
class RayNode:
    """One alive Ray node serving a tier: the resources it was started with and what Ray says is available on it
    now (``free_*``: Ray's own accounting, whoever holds the rest; None from a backend that does not report it, in
    which case the totals are taken and only Suanli's own jobs are subtracted)."""

    node_id: str
    cpus: float
    gpus: float
    memory_bytes: float
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    free_cpus: float | None = None
    free_gpus: float | None = None
    free_memory_bytes: float | None = None


class RayJobState(StrEnum):
    """A submission's state in Ray; MISSING when Ray has no such submission."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    MISSING = "MISSING"

    @property
    def terminal(self) -> bool:
        """True for the states a submission never leaves."""
        return self in (RayJobState.STOPPED, RayJobState.SUCCEEDED, RayJobState.FAILED)


@dataclass(frozen=True)
class RayJobStatus:
    """Ray's view of one submission."""

    state: RayJobState
    message: str = ""
    driver_node_id: str | None = None
    exit_code: int | None = None  # the entrypoint's exit code once it has exited, when Ray knows it
    start_time: float | None = None  # seconds since the epoch
    end_time: float | None = None


class RayBackendError(Exception):
    """A Ray call for a tier did not do what was asked."""

    def __init__(self, tier: str, reason: str) -> None:
        super().__init__(f"{tier}: {reason}")
        self.tier = tier
        self.reason = reason


class RayUnavailable(RayBackendError):
    """The tier's Ray cluster cannot be reached now (connection refused, timeout, 502-504): try again later."""


class RayRequestFailed(RayBackendError):
    """Ray answered with an error (an unknown submission for logs, a bad request, ...)."""

    def __init__(self, tier: str, reason: str, status_code: int | None = None) -> None:
        super().__init__(tier, reason)
        self.status_code = status_code
