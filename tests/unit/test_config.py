"""Agent settings: file < environment < flags, and every bad setting named in one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from census_agent.config import ConfigError, load_config
from census_agent.models import Tier

CONFIG = """
server = "https://census.example:8443"
interval_seconds = 60
spool_dir = "/var/tmp/spool"

[labels]
region = "440106"
organisation = "file-org"
tier = "hpc"

[labels.declared_peaks]
fp64 = 1.5e15

[[accelerators]]
vendor = "Huawei"
model = "Ascend 910"
count = 8
"""


def _file(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_file_settings_are_read(tmp_path: Path) -> None:
    """Scalars, labels, declared peaks and declared accelerators all come through from the TOML file."""
    config = load_config(_file(tmp_path), environ={})
    assert str(config.server) == "https://census.example:8443/"
    assert config.interval_seconds == 60
    assert config.labels.region == "440106"
    assert config.labels.tier is Tier.HPC
    assert config.labels.declared_peaks.fp64 == 1.5e15
    assert config.accelerators[0].count == 8
    assert config.accelerators[0].model == "Ascend 910"


def test_environment_overrides_file_and_flags_override_both(tmp_path: Path) -> None:
    """SUANLI_AGENT_* beats the file; a flag beats the environment; untouched labels keep the file's value."""
    env = {"SUANLI_AGENT_INTERVAL_SECONDS": "45", "SUANLI_AGENT_REGION": "440105", "SUANLI_AGENT_SITE": "env-site"}
    config = load_config(_file(tmp_path), environ=env, flags={"region": "440111", "interval_seconds": None})
    assert config.interval_seconds == 45
    assert config.labels.region == "440111"
    assert config.labels.site == "env-site"
    assert config.labels.organisation == "file-org"


def test_defaults_without_any_source() -> None:
    """With no file, environment or flags, the documented defaults apply."""
    config = load_config(None, environ={})
    assert config.server is None
    assert config.interval_seconds == 30
    assert config.metrics_host == "127.0.0.1"
    assert config.root == Path("/")


def test_unknown_environment_variable_is_an_error() -> None:
    """A mistyped SUANLI_AGENT_ variable is reported rather than silently ignored."""
    with pytest.raises(ConfigError, match="SUANLI_AGENT_INTERVALL"):
        load_config(None, environ={"SUANLI_AGENT_INTERVALL": "5"})


def test_every_bad_setting_is_named(tmp_path: Path) -> None:
    """An impossible interval, a malformed region code and an unknown tier are each named in the error."""
    bad = _file(tmp_path, 'interval_seconds = 0\n[labels]\nregion = "Tianhe"\ntier = "cloud"\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad, environ={})
    message = str(info.value)
    assert "interval_seconds" in message
    assert "labels.region" in message
    assert "labels.tier" in message


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    """A key the agent does not know (a typo) fails loudly."""
    with pytest.raises(ConfigError, match="servr"):
        load_config(_file(tmp_path, 'servr = "http://x"\n'), environ={})


def test_missing_and_malformed_files_are_clear_errors(tmp_path: Path) -> None:
    """A config file that does not exist or is not TOML gives a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_file(tmp_path, "server = [unclosed"), environ={})
