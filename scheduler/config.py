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
from typing import Any

from census_agent.labels import TIER_LABEL
from census_agent.models import Tier
from scheduler.models import TierTarget
from scheduler.policy import Policy


@dataclass(frozen=True)
class SchedulerConfig:
    """Where each served tier's jobs go, and the policy."""

    targets: dict[Tier, TierTarget]
    policy: Policy
    lost_after_seconds: float = 120.0

    @classmethod
    def parse(cls, text: str) -> SchedulerConfig:
        """From TOML text; ValueError naming the key on a mistake."""
        data = tomllib.loads(text)
        unknown = set(data) - {"ray", "tiers", "policy", "dispatch"}
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))} (expected ray, tiers, policy, dispatch)")
        shared = _address(data.get("ray", {}), "ray")
        tiers = data.get("tiers", {})
        if not isinstance(tiers, dict):
            raise ValueError("tiers: a table of [tiers.<tier>] tables")
        targets: dict[Tier, TierTarget] = {}
        for name, entry in tiers.items():
            try:
                tier = Tier(name)
            except ValueError:
                raise ValueError(f"tiers.{name}: not a tier (general, ai, hpc, edge)") from None
            own = _address(entry, f"tiers.{name}")
            if own is not None:
                targets[tier] = TierTarget(own, None)
        if shared is not None:
            for tier in Tier:
                targets.setdefault(tier, TierTarget(shared, {TIER_LABEL: tier.value}))
        if not targets:
            raise ValueError("no tier is served: give [ray] address or at least one [tiers.<tier>] address")
        policy_table = data.get("policy", {})
        if not isinstance(policy_table, dict):
            raise ValueError("policy: a table")
        policy = Policy.from_mapping(policy_table)
        return cls(targets, policy, _lost_after(data.get("dispatch", {})))

    @classmethod
    def load(cls, path: Path) -> SchedulerConfig:
        """From a file; ValueError saying which file and key on a mistake."""
        try:
            return cls.parse(path.read_text(encoding="utf-8"))
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from None


def _lost_after(table: Any) -> float:  # noqa: ANN401 - parsed TOML
    if not isinstance(table, dict):
        raise ValueError("dispatch: a table")
    unknown = set(table) - {"lost_after_seconds"}
    if unknown:
        raise ValueError(f"dispatch: unknown keys {', '.join(sorted(unknown))} (expected lost_after_seconds)")
    value = table.get("lost_after_seconds", 120.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"dispatch.lost_after_seconds: a positive number of seconds, not {value!r}")
    return float(value)


def _address(entry: Any, where: str) -> str | None:  # noqa: ANN401 - parsed TOML
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: a table")
    extra = set(entry) - {"address"}
    if extra:
        raise ValueError(f"{where}: unknown keys {', '.join(sorted(extra))}")
    address = entry.get("address")
    if address is None:
        return None
    if not isinstance(address, str) or not address.startswith(("http://", "https://")):
        raise ValueError(f"{where}.address: the Ray dashboard URL, e.g. http://127.0.0.1:8265")
    return address.rstrip("/")
