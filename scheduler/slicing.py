"""Slicing one machine into per-tier raylets: how many CPUs, GPUs and bytes each local raylet gets, and its labels.

`split_machine` shares a machine out so that the raylets' resources add up to what was given (the figures stay
honest); `RayletSpec` is one raylet's slice; `raylet_names` numbers them within each tier. `scheduler.local_cluster`
starts a raylet per spec.

Pure: no processes, no Ray, no I/O (`scheduler.local_cluster` does those).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from census_agent.labels import TIER_LABEL
from census_agent.models import Tier

MIB = 2**20
# Ray refuses an object store under 75 MiB (ray_constants.OBJECT_STORE_MINIMUM_MEMORY_BYTES).
MIN_OBJECT_STORE_BYTES = 75 * MIB
DEFAULT_OBJECT_STORE_BYTES = 80 * MIB
DEFAULT_MEMORY_BYTES = 512 * MIB


@dataclass(frozen=True)
class RayletSpec:
    """One raylet: the tier it serves and the slice of this machine it may schedule."""

    tier: str  # general | ai | hpc | edge
    cpus: int  # --num-cpus (logical; Ray takes whole numbers only)
    gpus: int = 0  # --num-gpus (logical GPUs are allowed on a machine without any)
    memory_bytes: int = DEFAULT_MEMORY_BYTES  # --memory: what tasks and jobs may reserve
    object_store_bytes: int = DEFAULT_OBJECT_STORE_BYTES  # --object-store-memory
    labels: Mapping[str, str] = field(default_factory=dict)  # extra labels, e.g. {REGION_LABEL: "440106"}

    def __post_init__(self) -> None:
        if self.tier not in {t.value for t in Tier}:
            raise ValueError(f"unknown tier {self.tier!r}: expected one of {', '.join(t.value for t in Tier)}")
        if self.cpus < 0 or self.gpus < 0 or self.memory_bytes < 0:
            raise ValueError("cpus, gpus and memory_bytes must not be negative")
        if self.object_store_bytes < MIN_OBJECT_STORE_BYTES:
            raise ValueError(f"object_store_bytes must be at least {MIN_OBJECT_STORE_BYTES} (Ray's minimum)")
        if TIER_LABEL in self.labels:
            raise ValueError(f"{TIER_LABEL} comes from `tier`, not from `labels`")
        for key, value in self.labels.items():
            if any(c in key + value for c in ",= "):
                raise ValueError(f"label {key}={value} may not contain ',', '=' or spaces")

    def all_labels(self) -> dict[str, str]:
        """The labels the raylet starts with: the tier label and the extra ones."""
        return {TIER_LABEL: self.tier, **self.labels}


def split_machine(
    cpus: int,
    memory_bytes: int,
    tiers: Sequence[str],
    gpus_for_ai: int = 0,
    *,
    object_store_fraction: float = 0.2,
    labels: Mapping[str, str] | None = None,
) -> list[RayletSpec]:
    """One raylet per tier so that the raylets' CPUs, and memory plus object store, add up to what is given.

    CPUs and memory are shared out as evenly as whole units allow (earlier tiers get the remainder); each raylet's
    share of memory is split into an object store (`object_store_fraction` of it, at least Ray's minimum) and
    schedulable memory. All `gpus_for_ai` go to the ai raylet. Ray node resources are whole numbers, so `cpus` must
    be at least the number of tiers: pass a larger, deliberately overcommitted count to run every tier on fewer
    cores.
    """
    if not tiers:
        raise ValueError("at least one tier is needed")
    if len(set(tiers)) != len(tiers):
        raise ValueError(f"tiers must be distinct, got {list(tiers)}")
    if cpus < len(tiers):
        raise ValueError(
            f"{cpus} CPU(s) cannot be split over {len(tiers)} tiers: Ray node CPUs are whole numbers, so give "
            f"at least one logical CPU per tier (an overcommitted count is fine for a demo)"
        )
    if gpus_for_ai and Tier.AI.value not in tiers:
        raise ValueError("gpus_for_ai needs an ai tier")
    if not 0 < object_store_fraction < 1:
        raise ValueError("object_store_fraction must be between 0 and 1")
    cpu_shares = _shares(cpus, len(tiers))
    memory_shares = _shares(memory_bytes, len(tiers))
    specs = []
    for tier, cpu_share, memory_share in zip(tiers, cpu_shares, memory_shares, strict=True):
        object_store = max(MIN_OBJECT_STORE_BYTES, int(memory_share * object_store_fraction))
        if memory_share - object_store < MIN_OBJECT_STORE_BYTES:
            raise ValueError(
                f"{memory_bytes} bytes over {len(tiers)} tiers leaves {memory_share} per raylet: too little for an "
                f"object store of {object_store} and schedulable memory"
            )
        specs.append(
            RayletSpec(
                tier=tier,
                cpus=cpu_share,
                gpus=gpus_for_ai if tier == Tier.AI.value else 0,
                memory_bytes=memory_share - object_store,
                object_store_bytes=object_store,
                labels=dict(labels or {}),
            )
        )
    return specs


def _shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` whole shares that differ by at most one, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def raylet_names(raylets: Sequence[RayletSpec]) -> list[str]:
    """Node names, one per raylet, numbered within each tier: general-0, hpc-0, hpc-1, ..."""
    counts: dict[str, int] = {}
    names = []
    for spec in raylets:
        index = counts.get(spec.tier, 0)
        counts[spec.tier] = index + 1
        names.append(f"{spec.tier}-{index}")
    return names
