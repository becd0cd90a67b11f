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


def test_gcs_address_is_read_per_cluster_and_defaults_to_the_dashboards_host() -> None:
    """`gcs_address` names where a cluster's free resources are read; absent, the dashboard's host on Ray's GCS
    port (6379), an IPv6 host in brackets."""
    config = SchedulerConfig.parse(
        '[ray]\naddress = "http://head.example:8265"\n'
        '[tiers.hpc]\naddress = "http://hpc:8265"\ngcs_address = "10.0.0.5:6390"\n'
        '[tiers.ai]\naddress = "http://[fd00::5]:8265"\n'
    )
    assert config.targets[Tier.HPC].gcs == "10.0.0.5:6390"
    assert config.targets[Tier.GENERAL].gcs == "head.example:6379"
    assert config.targets[Tier.AI].gcs == "[fd00::5]:6379"
    assert (
        SchedulerConfig.parse('[ray]\naddress = "http://a:1"\ngcs_address = "[fd00::1]:7"\n').targets[Tier.EDGE].gcs
        == "[fd00::1]:7"
    )


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
        ('[ray]\naddress = "http://a:1"\ngcs_address = "http://a:6379"\n', "ray.gcs_address"),
        ('[ray]\naddress = "http://a:1"\ngcs_address = "a"\n', "ray.gcs_address"),
        ('[ray]\naddress = "http://a:1"\ngcs_address = "a:70000"\n', "ray.gcs_address"),
        ('[ray]\naddress = "http://a:1"\ngcs_address = "a b:1"\n', "ray.gcs_address"),
        ('[tiers.hpc]\ngcs_address = "a:1"\n[ray]\naddress = "http://a:1"\n', "tiers.hpc.gcs_address: given without"),
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


def private_token(path: Path, text: str = "a" * 64 + "\n") -> Path:
    """`text` in `path`, mode 0600 (what `suanli up` and the chart write)."""
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_each_cluster_table_reads_its_own_token_file(tmp_path: Path) -> None:
    """`token_file` in `[ray]` gives every label-selector tier that cluster's token; a `[tiers.X]` cluster has its
    own; a table without one has none. The token is stripped of its newline and never shown in a target's repr."""
    shared = private_token(tmp_path / "shared.token", "s" * 64 + "\n")
    hpc = private_token(tmp_path / "hpc.token", "h" * 64)
    config = SchedulerConfig.parse(
        f'[ray]\naddress = "http://a:8265"\ntoken_file = "{shared}"\n'
        f'[tiers.hpc]\naddress = "http://hpc:8265"\ntoken_file = "{hpc}"\n'
        '[tiers.edge]\naddress = "http://edge:8265"\n'
    )
    assert config.targets[Tier.AI] == TierTarget("http://a:8265", {TIER_LABEL: "ai"}, "s" * 64)
    assert config.targets[Tier.HPC] == TierTarget("http://hpc:8265", None, "h" * 64)
    assert config.targets[Tier.EDGE].token is None
    assert "s" * 64 not in repr(config.targets[Tier.AI])
    assert "h" * 64 not in repr(config)


@pytest.mark.parametrize(
    ("table", "setup", "message"),
    [
        ('[ray]\ntoken_file = "{path}"\n', "ok", "ray.token_file: given without ray.address"),
        ('[tiers.ai]\ntoken_file = "{path}"\n[ray]\naddress = "http://a:1"\n', "ok", "tiers.ai.token_file: given"),
        ('[ray]\naddress = "http://a:1"\ntoken_file = "relative.token"\n', "ok", "ray.token_file: an absolute path"),
        ('[ray]\naddress = "http://a:1"\ntoken_file = "{path}"\n', "missing", "cannot be read"),
        ('[ray]\naddress = "http://a:1"\ntoken_file = "{path}"\n', "empty", "must hold one token"),
        ('[ray]\naddress = "http://a:1"\ntoken_file = "{path}"\n', "two words", "must hold one token"),
        ('[ray]\naddress = "http://a:1"\ntoken_file = "{path}"\n', "world-readable", "other users may read it"),
        ('[tiers.hpc]\naddress = "http://h:1"\ntoken_file = "{path}"\n', "directory", "tiers.hpc.token_file"),
    ],
)
def test_a_bad_token_file_is_refused_naming_the_key_and_never_the_token(
    table: str, setup: str, message: str, tmp_path: Path
) -> None:
    """A token file that is relative, missing, empty, not one token, readable by other users, or a directory, or
    one given without an address, is refused at load with its key; the file's contents never appear."""
    path = tmp_path / "ray.token"
    secret = "t0ps3cret" * 8
    if setup in ("ok", "world-readable"):
        private_token(path, secret)
    elif setup == "empty":
        private_token(path, "\n")
    elif setup == "two words":
        private_token(path, f"{secret} {secret}")
    elif setup == "directory":
        path.mkdir()
    if setup == "world-readable":
        path.chmod(0o644)
    config = tmp_path / "scheduler.toml"
    config.write_text(table.format(path=path))
    with pytest.raises(ValueError, match=message) as caught:
        SchedulerConfig.load(config)
    assert secret not in str(caught.value)
