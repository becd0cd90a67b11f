"""The scheduler's configuration file: single-cluster (label selectors), multi-cluster, policy, and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from census_agent.labels import TIER_LABEL
from census_agent.models import Tier
from scheduler.config import SchedulerConfig
from scheduler.models import TierTarget
from scheduler.policy import Quota


def test_one_ray_cluster_serves_every_tier_by_label_selector() -> None:
    """`[ray] address` alone: all four tiers go to that cluster, each with its tier label selector."""
    config = SchedulerConfig.parse('[ray]\naddress = "http://127.0.0.1:8265/"\n')
    assert config.targets == {t: TierTarget("http://127.0.0.1:8265", {TIER_LABEL: t.value}) for t in Tier}


def test_a_tier_with_its_own_address_is_a_whole_cluster() -> None:
    """`[tiers.hpc] address` makes hpc its own cluster (no selector) while the others stay on `[ray]`; with no
    `[ray]`, only the tiers given are served."""
    config = SchedulerConfig.parse('[ray]\naddress = "http://a:8265"\n[tiers.hpc]\naddress = "http://hpc:8265"\n')
    assert config.targets[Tier.HPC] == TierTarget("http://hpc:8265", None)
    assert config.targets[Tier.AI] == TierTarget("http://a:8265", {TIER_LABEL: "ai"})
    only = SchedulerConfig.parse('[tiers.edge]\naddress = "http://edge:8265"\n')
    assert list(only.targets) == [Tier.EDGE]


def test_policy_table_is_read(tmp_path: Path) -> None:
    """`[policy]` in the same file sets quotas and backfill."""
    path = tmp_path / "scheduler.toml"
    path.write_text('[ray]\naddress = "http://a:8265"\n[policy]\nbackfill = false\n[policy.quotas."*".ai]\ngpus = 4\n')
    config = SchedulerConfig.load(path)
    assert config.policy.backfill is False
    assert config.policy.quota("lab", Tier.AI) == Quota(gpus=4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no tier is served"),
        ('[ray]\naddress = "127.0.0.1:8265"\n', "ray.address"),
        ("[ray]\nport = 1\n", "ray: unknown keys port"),
        ('[tiers.quantum]\naddress = "http://q:1"\n', "tiers.quantum: not a tier"),
        ("[scheduler]\nx = 1\n", "unknown keys: scheduler"),
        ('[ray]\naddress = "http://a:1"\n[policy]\nbogus = 1\n', "unknown policy keys: bogus"),
        ('[ray]\naddress = "http://a:1"\n[dispatch]\nlost_after_seconds = 0\n', "dispatch.lost_after_seconds"),
        ('[ray]\naddress = "http://a:1"\n[dispatch]\nlost_after = 5\n', "dispatch: unknown keys lost_after"),
    ],
)
def test_configuration_mistakes_name_the_key(text: str, message: str, tmp_path: Path) -> None:
    """A wrong file is refused at start with the file and key, not half-applied."""
    path = tmp_path / "scheduler.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        SchedulerConfig.load(path)
    assert str(path) in str(caught.value)


def test_every_mistake_of_a_file_is_named_at_once() -> None:
    """Several mistakes are refused together, each with its key, so a file is fixed in one pass; a value that is
    not a table where a table belongs says so."""
    text = "[ray]\naddress = 3\nport = 1\n[scheduler]\nx = 1\n[tiers]\nhpc = 5\n"
    with pytest.raises(ValueError, match=r"ray\.address: Input should be a valid string") as caught:
        SchedulerConfig.parse(text)
    message = str(caught.value)
    assert "ray: unknown keys port" in message
    assert "unknown keys: scheduler (expected ray, tiers, policy, dispatch)" in message
    assert "tiers.hpc: a table" in message
