"""The routing policy: which tier and nodes a job goes to, as a pure function of the job and the nodes' state.

Per workload class the policy names the tiers to try, in order, and how to pick nodes in them (the defaults
follow DESIGN.md: hpc -> hpc, ai -> ai, edge -> edge with the job's region first, in-memory -> the best memory
fit in any tier with ai last, general -> general then idle capacity elsewhere with ai last). Every answer
carries a sentence a user can read. `feasible` says at submission whether a job could ever run, so an
impossible job is refused then and never waits forever.

Pure: no I/O, no Ray, no clock. `Pool` is the free capacity of one scheduling pass; the queue (`scheduler.queue`)
drives it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, ValidationError

from census_agent.models import Tier
from scheduler.models import NodeView, Resources, WorkloadClass
from scheduler.tables import ClassName, TierName, refusal

GiB = 2**30
OUTSIDE = "held by work outside Suanli"  # how a reason names what Ray holds for others on a node


class Placement(StrEnum):
    """How nodes are picked inside a tier."""

    FIRST_FIT = "first-fit"
    BEST_MEMORY_FIT = "best-memory-fit"  # the node whose free memory exceeds the request by the least
    REGION_FIRST = "region-first"  # nodes in the job's region first, then the rest


@dataclass(frozen=True, slots=True)
class ClassPolicy:
    """Where one workload class goes: its tiers in order of preference and how nodes are picked.

    The first tier is the class's home; the others are spill targets, used only while idle (no job waiting
    whose home they are)."""

    tiers: tuple[Tier, ...]
    placement: Placement = Placement.FIRST_FIT


DEFAULT_CLASSES: Mapping[WorkloadClass, ClassPolicy] = {
    WorkloadClass.GENERAL: ClassPolicy((Tier.GENERAL, Tier.HPC, Tier.EDGE, Tier.AI)),
    WorkloadClass.IN_MEMORY: ClassPolicy((Tier.GENERAL, Tier.HPC, Tier.EDGE, Tier.AI), Placement.BEST_MEMORY_FIT),
    WorkloadClass.HPC: ClassPolicy((Tier.HPC,)),
    WorkloadClass.AI: ClassPolicy((Tier.AI,)),
    WorkloadClass.EDGE: ClassPolicy((Tier.EDGE,), Placement.REGION_FIRST),
}


@dataclass(frozen=True, slots=True)
class Quota:
    """An organisation's ceiling in one tier (None: no ceiling)."""

    cpus: float | None = None
    gpus: float | None = None
    jobs: int | None = None


@dataclass(frozen=True)
class Policy:
    """The whole routing and queueing policy: per-class routes and per-organisation quotas per tier."""

    classes: Mapping[WorkloadClass, ClassPolicy] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    # (organisation, tier) -> quota; organisation "*" applies to every organisation without its own entry.
    quotas: Mapping[tuple[str, Tier], Quota] = field(default_factory=dict)
    backfill: bool = True

    def quota(self, organisation: str, tier: Tier) -> Quota | None:
        """The quota that binds `organisation` in `tier`, if any."""
        return self.quotas.get((organisation, tier)) or self.quotas.get(("*", tier))

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        """A policy from TOML text (the ``[policy]`` table of the scheduler's file, see `scheduler.config`)."""
        return cls.from_mapping(tomllib.loads(text))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Policy:
        """A policy from parsed TOML; what it leaves out keeps the default. ValueError names the offending key."""
        try:
            table = PolicyTable.model_validate(data)
        except ValidationError as exc:
            raise refusal(exc, PolicyTable, unknown="unknown policy keys") from None
        classes = dict(DEFAULT_CLASSES)
        for klass, entry in table.classes.items():
            default = classes[klass]
            tiers = tuple(entry.tiers) if entry.tiers is not None else default.tiers
            classes[klass] = ClassPolicy(tiers, entry.placement or default.placement)
        quotas = {
            (organisation, tier): Quota(limits.cpus, limits.gpus, limits.jobs)
            for organisation, per_tier in table.quotas.items()
            for tier, limits in per_tier.items()
        }
        return cls(classes, quotas, table.backfill)


def _at_least_one(tiers: list[Tier]) -> list[Tier]:
    if not tiers:
        raise ValueError("at least one tier")
    return tiers


class ClassTable(BaseModel):
    """``[policy.classes.<class>]``: the class's tiers in order and its placement (each absent one: the default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tiers: Annotated[list[TierName], AfterValidator(_at_least_one)] | None = None
    placement: Placement | None = None


class QuotaTable(BaseModel):
    """``[policy.quotas.<organisation>.<tier>]``: CPUs and GPUs held at once, running jobs (absent: no ceiling)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpus: Annotated[float, Field(strict=True)] | None = None
    gpus: Annotated[float, Field(strict=True)] | None = None
    jobs: Annotated[int, Field(strict=True)] | None = None


class PolicyTable(BaseModel):
    """The ``[policy]`` table as written in the scheduler's file (`Policy.from_mapping` builds the `Policy`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: dict[ClassName, ClassTable] = {}
    quotas: dict[str, dict[TierName, QuotaTable]] = {}  # organisation ("*": every other) -> tier -> quota
    backfill: StrictBool = True


def fits(node: NodeView, r: Resources) -> bool:
    """Whether `node` could ever hold one of the job's per-node shares (by its totals)."""
    return node.cpus >= r.cpus and node.gpus >= r.gpus and node.memory_bytes >= r.memory_bytes


def feasible(
    resources: Resources, organisation: str, klass: WorkloadClass, nodes: Iterable[NodeView], policy: Policy
) -> str | None:
    """None if some tier of the class could ever run the job (by node totals and quotas), else why not."""
    route = policy.classes[klass]
    by_tier: dict[Tier, list[NodeView]] = {t: [] for t in route.tiers}
    for node in nodes:
        if node.tier in by_tier:
            by_tier[node.tier].append(node)
    reasons = []
    for tier in route.tiers:
        quota = policy.quota(organisation, tier)
        over = _over_quota(resources, quota)
        if over:
            reasons.append(f"{tier}: {over} exceeds {organisation}'s quota")
            continue
        tier_nodes = by_tier[tier]
        big_enough = sum(1 for n in tier_nodes if fits(n, resources))
        if big_enough >= resources.nodes:
            return None
        reasons.append(f"{tier}: {_largest(tier_nodes)}; {big_enough} of {len(tier_nodes)} node(s) big enough")
    return f"no tier can ever run it ({describe(resources)}): " + "; ".join(reasons)


def _over_quota(r: Resources, quota: Quota | None) -> str | None:
    if quota is None:
        return None
    if quota.cpus is not None and r.cpus * r.nodes > quota.cpus:
        return f"{r.cpus * r.nodes:g} CPUs"
    if quota.gpus is not None and r.gpus * r.nodes > quota.gpus:
        return f"{r.gpus * r.nodes} GPUs"
    if quota.jobs is not None and quota.jobs < 1:
        return "any job"
    return None


def _largest(nodes: Sequence[NodeView]) -> str:
    if not nodes:
        return "no nodes"
    return (
        f"largest node {max(n.cpus for n in nodes):g} CPUs, {max(n.gpus for n in nodes):g} GPUs, "
        f"{max(n.memory_bytes for n in nodes) / GiB:.1f} GiB"
    )


def describe(r: Resources) -> str:
    """A job's request in words: '2 nodes x (4 CPUs, 1 GPU, 8.0 GiB)'."""
    parts = [f"{r.cpus:g} CPU{'s' if r.cpus != 1 else ''}"]
    if r.gpus:
        parts.append(f"{r.gpus} GPU{'s' if r.gpus != 1 else ''}")
    if r.memory_bytes:
        parts.append(f"{r.memory_bytes / GiB:.1f} GiB")
    share = ", ".join(parts)
    return f"{r.nodes} nodes x ({share})" if r.nodes > 1 else share


class Pool:
    """Free capacity during one scheduling pass: nodes by tier, with what each has free.

    Free capacity only shrinks during a pass (`take`), which lets first-fit remember per request shape where
    its last search began (a node that could not hold a shape cannot later), so a pass over a long queue costs
    about one scan of the nodes per distinct shape rather than per job."""

    def __init__(self, nodes: Sequence[NodeView]) -> None:
        self.nodes = list(nodes)
        self.index = {n.node_id: i for i, n in enumerate(self.nodes)}
        self.free_cpus = [n.free_cpus for n in self.nodes]
        self.free_gpus = [n.free_gpus for n in self.nodes]
        self.free_memory = [n.free_memory_bytes for n in self.nodes]
        self.by_tier: dict[Tier, list[int]] = {t: [] for t in Tier}
        for i, n in enumerate(self.nodes):
            self.by_tier[n.tier].append(i)
        self._cursor: dict[tuple[Any, ...], int] = {}  # first-fit: where a shape's last search found room
        self._no_room: set[tuple[Any, ...]] = set()  # best-memory-fit: shapes that found no room this pass
        # nodes on which Ray reports work outside Suanli, per tier (most passes: none, and no note is built)
        self._outside: dict[Tier, list[int]] = {t: [] for t in Tier}
        for i, n in enumerate(self.nodes):
            if n.outside_cpus > 0 or n.outside_gpus > 0 or n.outside_memory_bytes > 0:
                self._outside[n.tier].append(i)
        self._notes: dict[tuple[Any, ...], str | None] = {}

    def fits_now(self, i: int, r: Resources) -> bool:
        """Whether node `i` has room for one per-node share of `r` now."""
        return self.free_cpus[i] >= r.cpus and self.free_gpus[i] >= r.gpus and self.free_memory[i] >= r.memory_bytes

    def take(self, node_ids: Iterable[int], r: Resources) -> None:
        """Reserve one per-node share of `r` on each node."""
        for i in node_ids:
            self.free_cpus[i] -= r.cpus
            self.free_gpus[i] -= r.gpus
            self.free_memory[i] -= r.memory_bytes

    def first_fit(self, tier: Tier, r: Resources, order: Sequence[int] | None = None) -> list[int] | None:
        """`r.nodes` distinct nodes of `tier` with room now, scanning in `order` (default: the tier's order)."""
        candidates = self.by_tier[tier] if order is None else order
        key = (tier, r.cpus, r.gpus, r.memory_bytes, id(order) if order is not None else None)
        start = self._cursor.get(key, 0)
        chosen: list[int] = []
        first: int | None = None
        for position in range(start, len(candidates)):
            i = candidates[position]
            if self.fits_now(i, r):
                if first is None:
                    first = position
                chosen.append(i)
                if len(chosen) == r.nodes:
                    break
        self._cursor[key] = len(candidates) if first is None else first
        return chosen if len(chosen) == r.nodes else None

    def best_memory_fit(self, tier: Tier, r: Resources) -> list[int] | None:
        """`r.nodes` nodes of `tier` with room now, those whose free memory exceeds the request least first."""
        key = (tier, r.cpus, r.gpus, r.memory_bytes, r.nodes)
        if key in self._no_room:  # this shape found no room earlier in the pass: free capacity only shrinks
            return None
        fitting = sorted((self.free_memory[i], i) for i in self.by_tier[tier] if self.fits_now(i, r))
        if len(fitting) < r.nodes:
            self._no_room.add(key)
            return None
        return [i for _, i in fitting[: r.nodes]]

    def outside_note(self, tier: Tier, r: Resources, most: int = 3) -> str | None:
        """The nodes of `tier` that could hold a share of `r` by their totals but lack room now where Ray reports
        work outside Suanli, with what is free and what that work holds ("hpc node hpc-0 (5051f019): 0 CPUs
        free per Ray (2 held by work outside Suanli)"), at most `most` named; None when there are none.
        Computed once per tier and request shape in a pass (free capacity only shrinks)."""
        if not self._outside[tier]:
            return None
        key = (tier, r.cpus, r.gpus, r.memory_bytes)
        if key in self._notes:
            return self._notes[key]
        named = []
        for i in self._outside[tier]:
            n = self.nodes[i]
            if not fits(n, r) or self.fits_now(i, r):
                continue
            short = []
            if self.free_cpus[i] < r.cpus and n.outside_cpus > 0:
                short.append(f"{self.free_cpus[i]:g} CPUs free per Ray ({n.outside_cpus:g} {OUTSIDE})")
            if self.free_gpus[i] < r.gpus and n.outside_gpus > 0:
                short.append(f"{self.free_gpus[i]:g} GPUs free per Ray ({n.outside_gpus:g} {OUTSIDE})")
            if self.free_memory[i] < r.memory_bytes and n.outside_memory_bytes > 0:
                free, held = self.free_memory[i] / GiB, n.outside_memory_bytes / GiB
                short.append(f"{free:.1f} GiB memory free per Ray ({held:.1f} GiB {OUTSIDE})")
            if short:
                named.append(f"{tier} node {n.label}: {', '.join(short)}")
        note = "; ".join(named[:most]) if named else None
        if note is not None and len(named) > most:
            note += f"; and {len(named) - most} more node(s) {OUTSIDE}"
        self._notes[key] = note
        return note

    def region_order(self, tier: Tier, region: str | None) -> list[int]:
        """The tier's nodes with those in `region` (or under it: a district is under its city) first."""
        nodes = self.by_tier[tier]
        if region is None:
            return nodes
        local = [i for i in nodes if _within(self.nodes[i].region, region)]
        return local + [i for i in nodes if not _within(self.nodes[i].region, region)]


def _within(node_region: str | None, region: str) -> bool:
    """Whether a node's region is `region` or lies under it. Six-digit administrative codes: a province is
    PP0000, a city PPCC00, a district PPCCDD; a non-numeric code (the country) holds every region."""
    if node_region is None:
        return False
    if node_region == region or not region.isdigit():
        return True
    if len(region) != 6 or len(node_region) != 6:
        return False
    prefix = region[:2] if region.endswith("0000") else region[:4] if region.endswith("00") else region
    return node_region.startswith(prefix)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a job can start now."""

    tier: Tier
    node_ids: tuple[str, ...]
    reason: str
