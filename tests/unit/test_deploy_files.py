"""The shipped deployment files agree with the code: the unit's command line parses, the example config loads."""

from __future__ import annotations

import shlex
from pathlib import Path

from census_agent.cli import build_parser
from census_agent.config import load_config
from census_agent.models import Tier
from scheduler.config import SchedulerConfig
from scheduler.policy import DEFAULT_CLASSES, Quota

ROOT = Path(__file__).parent.parent.parent
DEPLOY = ROOT / "deploy" / "systemd"


def test_systemd_unit_command_line_is_accepted_by_the_agent() -> None:
    """ExecStart's arguments parse as a `census-agent run` command, and ExecReload sends SIGHUP."""
    unit = (DEPLOY / "suanli-census-agent.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0].endswith("census-agent")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.config == Path("/etc/suanli/agent.toml")
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "StateDirectory=suanli-agent" in unit
    assert "LoadCredential=token:/etc/suanli/agent.token" in unit


def test_example_config_loads_with_every_documented_value(tmp_path: Path) -> None:
    """agent.toml.example is a valid config and its spool_dir lives in the unit's StateDirectory."""
    config = load_config(DEPLOY / "agent.toml.example", environ={})
    assert config.labels.region == "440106"
    assert config.metrics_port == 9464
    assert config.spool_dir == Path("/var/lib/suanli-agent/spool")
    assert config.token_file == Path("/etc/suanli/agent.token")


def test_example_scheduler_config_loads_with_both_modes_quotas_and_the_default_routes() -> None:
    """deploy/scheduler/scheduler.toml.example is a valid scheduler file: hpc is its own cluster, the other tiers
    are label selectors on the shared one, the routes it spells out are the defaults, and its quotas apply."""
    config = SchedulerConfig.load(ROOT / "deploy" / "scheduler" / "scheduler.toml.example")
    assert config.targets[Tier.HPC].label_selector is None
    assert config.targets[Tier.AI].label_selector == {"suanli.io/tier": "ai"}
    assert dict(config.policy.classes) == dict(DEFAULT_CLASSES)
    assert config.policy.quota("anyone", Tier.AI) == Quota(gpus=16)
    assert config.policy.quota("lab-a", Tier.HPC) == Quota(cpus=512, jobs=4)
    assert config.lost_after_seconds == 120
