"""`census-agent inspect --sample SECONDS` as an operator runs it: a real process reading this machine's counters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema

from census_agent.models import Report
from census_agent.schema import PUBLISHED_SCHEMA

FIXTURE_HOST = Path(__file__).parent.parent / "fixtures" / "hosts" / "epyc-9654-zen4"


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `census-agent ARGS` with a clean SUANLI_ environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    return subprocess.run(
        [sys.executable, "-m", "census_agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_inspect_sample_puts_this_machines_usage_in_the_document_and_on_screen() -> None:
    """With --sample the report carries usage over about that interval, within this machine's CPUs and memory,
    and valid against the published schema; the screen shows a Usage line; without it there is none."""
    result = agent("inspect", "--json", "--no-nvml", "--sample", "0.5")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, json.loads(PUBLISHED_SCHEMA.read_text()))
    report = Report.model_validate(document)
    usage = report.usage
    assert usage is not None
    assert 0.45 <= usage.interval_seconds < 5
    assert 0 <= usage.cpu_busy_cores <= report.inventory.cpu.threads
    assert 0 < usage.memory_used_bytes <= report.inventory.memory.total_bytes
    screen = agent("inspect", "--no-nvml", "--sample", "0.3")
    assert screen.returncode == 0, screen.stderr
    assert "logical CPUs busy" in screen.stdout
    plain = agent("inspect", "--json", "--no-nvml")
    assert Report.model_validate_json(plain.stdout).usage is None


def test_inspect_sample_out_of_range_is_a_usage_error_and_a_frozen_tree_says_why_there_is_none() -> None:
    """--sample outside [0, 60] (or not a number) exits 2 before reading anything; on a fixture tree, whose
    counters never move, the report comes without usage and standard error says why."""
    for bad in ("61", "-1", "nan"):
        result = agent("inspect", "--sample", bad)
        assert result.returncode == 2, (bad, result.stderr)
        assert "--sample" in result.stderr
    frozen = agent("inspect", "--json", "--no-nvml", "--root", str(FIXTURE_HOST), "--sample", "0.1")
    assert frozen.returncode == 0, frozen.stderr
    assert Report.model_validate_json(frozen.stdout).usage is None
    assert "no usage" in frozen.stderr
