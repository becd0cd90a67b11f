"""The scheduler's one configuration file: where each tier's jobs run (Ray) and the routing/queue policy.

    # One Ray cluster whose nodes carry tier labels (ray start --labels suanli.io/tier=hpc):
    [ray]
    address = "http://127.0.0.1:8265"        # the Ray dashboard (Jobs API)
    token_file = "/etc/suanli/ray/token"     # the cluster's RAY_AUTH_MODE=token token (absolute path; optional)
    gcs_address = "127.0.0.1:6379"           # its GCS, where free resources per node are read (optional:
                                             # default the dashboard's host, port 6379)

    # ...and/or a tier that is a whole Ray cluster of its own (multi-cluster mode):
    [tiers.hpc]
    address = "http://hpc-head.example:8265"
    token_file = "/etc/suanli/ray/hpc/token" # each cluster has its own token

    # Optional: how long a tier's cluster may be unreachable before its running attempts are presumed lost
    # (failed with that reason and retried per their policy; a survivor is stopped when the tier is back).
    [dispatch]
    lost_after_seconds = 120

    # Optional: the policy (see `scheduler.policy.Policy.from_toml`); absent keys keep the defaults.
    [policy]
    backfill = true
    [policy.quotas."*".ai]
    gpus = 8

Every tier is served: by its own ``[tiers.X]`` address when given, else by ``[ray]`` with the tier's label
selector. A tier with neither is not served (its jobs are refused at submission as impossible).

``token_file`` names a file holding the Ray cluster's authentication token (Ray's ``RAY_AUTH_MODE=token``): it is
read once, when the file is loaded, and sent as ``Authorization: Bearer`` on every Jobs and State API call to that
cluster. It must be an absolute path to a non-empty file that other users cannot read (mode ``o-rwx``); a token
file without an address is refused. Without it, calls carry no token (a cluster without authentication). The
token is never logged nor put in an error message.

``gcs_address`` (``host:port``, ``[v6]:port``) names the cluster's GCS, which the dispatcher asks once per pass what
Ray says is available on each node (`scheduler.ray_backend.RayJobsBackend.available`), with the same token. Absent,
it is the dashboard's host on Ray's default GCS port (6379); given without ``address`` it is refused.

Must not: log or echo a token; read anything but this file and the token files it names.
"""

from __future__ import annotations

import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from census_agent.labels import TIER_LABEL
from census_agent.models import Tier
from scheduler.models import TierTarget
from scheduler.policy import Policy
from scheduler.tables import TierName, refusal


def _dashboard_url(address: str) -> str:
    if not address.startswith(("http://", "https://")):
        raise ValueError("the Ray dashboard URL, e.g. http://127.0.0.1:8265")
    return address.rstrip("/")


_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):(\d{1,5})$")


def _gcs_address(address: str) -> str:
    match = _HOST_PORT.match(address)
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise ValueError("the Ray GCS as host:port (no scheme), e.g. 10.0.0.5:6379 or [fd00::5]:6379")
    return address


def _token_file(path: str) -> str:
    if not Path(path).is_absolute():
        raise ValueError("an absolute path to the Ray cluster's token file")
    return path


class ClusterTable(BaseModel):
    """``[ray]`` or ``[tiers.<tier>]``: a Ray cluster's dashboard (absent: that table serves nothing) and the file
    holding its authentication token."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: Annotated[str, AfterValidator(_dashboard_url)] | None = None
    token_file: Annotated[str, AfterValidator(_token_file)] | None = None
    gcs_address: Annotated[str, AfterValidator(_gcs_address)] | None = None


def read_token_file(path: Path) -> str:
    """The Ray token in `path` (surrounding whitespace stripped). ValueError, naming the file but never its
    contents, if it cannot be read, is empty, holds more than one line, or other users may read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"token file {path}: cannot be read ({type(exc).__name__})") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"token file {path}: not a regular file")
    if mode & stat.S_IRWXO:
        raise ValueError(f"token file {path}: other users may read it (mode {stat.S_IMODE(mode):o}); chmod o-rwx")
    token = text.strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"token file {path}: must hold one token (no spaces, not empty)")
    return token


class DispatchTable(BaseModel):
    """``[dispatch]``: how long a tier may be unreachable before its running attempts are presumed lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lost_after_seconds: Annotated[float, Field(gt=0, strict=True)] = 120.0


class SchedulerFile(BaseModel):
    """The file as written; `SchedulerConfig.parse` turns it into targets and a policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ray: ClusterTable = ClusterTable()
    tiers: dict[TierName, ClusterTable] = {}
    policy: dict[str, Any] = {}  # read by `Policy.from_mapping`, which names its own keys
    dispatch: DispatchTable = DispatchTable()


@dataclass(frozen=True)
class SchedulerConfig:
    """Where each served tier's jobs go, and the policy."""

    targets: dict[Tier, TierTarget]
    policy: Policy
    lost_after_seconds: float = 120.0

    @classmethod
    def parse(cls, text: str) -> SchedulerConfig:
        """From TOML text; ValueError naming the key on a mistake."""
        try:
            file = SchedulerFile.model_validate(tomllib.loads(text))
        except ValidationError as exc:
            raise refusal(exc, SchedulerFile) from None
        tokens = {tier: _token(entry, f"tiers.{tier.value}") for tier, entry in file.tiers.items()}
        targets = {
            tier: TierTarget(entry.address, None, tokens[tier], entry.gcs_address)
            for tier, entry in file.tiers.items()
            if entry.address is not None
        }
        token = _token(file.ray, "ray")
        if file.ray.address is not None:
            for tier in Tier:
                target = TierTarget(file.ray.address, {TIER_LABEL: tier.value}, token, file.ray.gcs_address)
                targets.setdefault(tier, target)
        if not targets:
            raise ValueError("no tier is served: give [ray] address or at least one [tiers.<tier>] address")
        return cls(targets, Policy.from_mapping(file.policy), file.dispatch.lost_after_seconds)

    @classmethod
    def load(cls, path: Path) -> SchedulerConfig:
        """From a file; ValueError saying which file and key on a mistake."""
        try:
            return cls.parse(path.read_text(encoding="utf-8"))
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from None


def _token(entry: ClusterTable, table: str) -> str | None:
    """The token of a cluster table, or None without ``token_file``; ValueError naming the key on a mistake."""
    if entry.gcs_address is not None and entry.address is None:
        raise ValueError(f"{table}.gcs_address: given without {table}.address")
    if entry.token_file is None:
        return None
    if entry.address is None:
        raise ValueError(f"{table}.token_file: given without {table}.address")
    try:
        return read_token_file(Path(entry.token_file))
    except ValueError as exc:
        raise ValueError(f"{table}.token_file: {exc}") from None
