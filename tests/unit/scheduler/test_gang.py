"""The gang entrypoint's command line and bundles (the Ray part is tested on a real cluster in
tests/integration/jobs)."""

from __future__ import annotations

import shlex

from scheduler.gang import bundles, command_line


def test_gang_command_line_carries_the_users_command_as_one_verbatim_argument() -> None:
    """A command full of shell syntax comes back, after the shell splits the wrapper's line, as exactly the
    text the user gave, after `--`, with one --node per node in order."""
    command = """mpirun -n 4 sh -c 'echo "$HOSTNAME"; exit 3' | tee out.log && echo $((1+2)) `id`"""
    argv = shlex.split(command_line(command, 2.0, 1, 2**30, ["node-a", "node-b"]))
    assert argv[:3] == ["python", "-m", "scheduler.gang"]
    assert argv[argv.index("--") + 1 :] == [command]
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--node"] == ["node-a", "node-b"]
    assert argv[argv.index("--cpus") + 1] == "2"
    assert argv[argv.index("--memory-bytes") + 1] == str(2**30)


def test_bundles_hold_the_per_node_share_and_leave_out_zero_resources() -> None:
    """One bundle per node with the job's per-node CPUs, GPUs and memory; zero GPUs are not asked for."""
    assert bundles(2.0, 0.0, 0, 3) == [{"CPU": 2.0}] * 3
    assert bundles(4.0, 1.0, 1024, 2) == [{"CPU": 4.0, "GPU": 1.0, "memory": 1024.0}] * 2
