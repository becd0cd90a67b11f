"""What importing the scheduler's configuration and dispatcher loads: no Ray, no HTTP client (import-linter checks
the import graph; this checks what a fresh interpreter actually has in `sys.modules`)."""

from __future__ import annotations

import json
import subprocess
import sys

RAY_SIDE = ("ray", "aiohttp", "scheduler.ray_backend", "scheduler.local_cluster")


def test_reading_the_config_and_building_a_dispatcher_loads_no_ray() -> None:
    """`scheduler.config` and `scheduler.dispatcher` (and the pure modules they use) load neither Ray nor aiohttp,
    so reading a TOML file or testing the dispatcher with fakes needs no Ray installation."""
    code = (
        "import json, sys; import scheduler.config, scheduler.dispatcher; "
        f"print(json.dumps(sorted(m for m in {RAY_SIDE!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == []


def test_the_ray_backend_does_load_ray() -> None:
    """The check above can fail: importing `scheduler.ray_backend` does load Ray and aiohttp."""
    code = (
        "import json, sys; import scheduler.ray_backend; "
        f"print(json.dumps(sorted(m for m in {RAY_SIDE!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert {"ray", "aiohttp", "scheduler.ray_backend"} <= set(json.loads(done.stdout))
