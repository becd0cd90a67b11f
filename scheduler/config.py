"""The scheduler's one configuration file: where each tier's jobs run (Ray) and the routing/queue policy.

    # One Ray cluster whose nodes carry tier labels (ray start --labels suanli.io/tier=hpc):
    [ray]
    address = "http://127.0.0.1:8265"        # the Ray dashboard (Jobs API)

    # ...and/or a tier that is a whole Ray cluster of its own (multi-cluster mode):
    [tiers.hpc]
    address = "http://hpc-head.example:8265"

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
"""

from __future__ import annotations

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


class ClusterTable(BaseModel):
    """``[ray]`` or ``[tiers.<tier>]``: a Ray cluster's dashboard (absent: that table serves nothing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: Annotated[str, AfterValidator(_dashboard_url)] | None = None


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
        targets = {
            tier: TierTarget(entry.address, None) for tier, entry in file.tiers.items() if entry.address is not None
        }
        if file.ray.address is not None:
            for tier in Tier:
                targets.setdefault(tier, TierTarget(file.ray.address, {TIER_LABEL: tier.value}))
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
