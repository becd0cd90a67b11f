"""Fixtures for the job tests: `run_cli` runs the `suanli` command as a user would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest


@pytest.fixture
def run_cli() -> Callable[..., str]:
    """Run ``python -m api.cli ARGS``; return its stdout, failing the test on a non-zero exit."""

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"suanli {' '.join(args)} -> {done.returncode}\n{done.stderr}"
        return done.stdout

    return run
