"""A job's working directory is a directory on the node that runs it: the model's rule, and what Ray is given.

The service never reads its own host for a job: a local path given to Ray's ``runtime_env.working_dir`` would be
zipped by Ray's client on the submitting machine (the service) and uploaded, so a job could read the service's
secrets. These check that such values are refused, and that Ray is never given a working_dir at all.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scheduler.dispatcher import submission
from scheduler.models import MAX_WORKING_DIR_LENGTH, JobSpec
from scheduler.ray_backend import submit_arguments


def job(working_dir: Any, **extra: Any) -> JobSpec:
    """A job with that working directory."""
    doc = {"name": "j", "class": "general", "entrypoint": "pwd", "runtime_env": {"working_dir": working_dir}}
    return JobSpec.model_validate(doc | extra)


@pytest.mark.parametrize(
    "bad",
    [
        "relative/dir",
        ".",
        "/srv/../etc",
        "/srv/data/..",
        "/srv/\x00x",
        "/srv/\nx",
        "/" + "a" * MAX_WORKING_DIR_LENGTH,
        "",
        "https://example.com/pkg.zip",
        "s3://bucket/pkg.zip",
        "gs://bucket/pkg.zip",
        "file:///var/lib/suanli",
    ],
)
def test_a_working_dir_that_is_not_an_absolute_node_directory_is_refused_naming_the_field(bad: str) -> None:
    """Relative paths, ``..``, control characters, over-long paths and every package URI are refused, and the
    error's location names runtime_env.working_dir."""
    with pytest.raises(ValidationError) as caught:
        job(bad)
    assert [e["loc"][:2] for e in caught.value.errors()] == [("runtime_env", "working_dir")]


@pytest.mark.parametrize("good", ["/tmp/run", "/data/my project/it's here", "/", "/srv/a..b/c"])
def test_an_absolute_node_directory_is_accepted_verbatim(good: str) -> None:
    """An absolute path (spaces, quotes and dots inside names included) is kept exactly as given."""
    assert job(good).runtime_env.working_dir == good


def test_ray_gets_no_working_dir_and_the_entrypoint_runs_in_the_directory_on_the_node(tmp_path: Path) -> None:
    """The runtime environment handed to Ray has no working_dir; the entrypoint changes into the directory first
    (run here by a real shell: it prints that directory, and its quoting survives a name with a quote)."""
    where = tmp_path / "it's a dir"
    where.mkdir()
    entrypoint, runtime_env, reserved = submission(job(str(where)), ["n1"])
    assert "working_dir" not in runtime_env
    assert reserved == (1.0, 0.0, 0)
    ran = subprocess.run(["sh", "-c", entrypoint], capture_output=True, text=True, check=True, timeout=10)
    assert ran.stdout.strip() == str(where)


def test_a_missing_node_directory_fails_the_command_without_running_it(tmp_path: Path) -> None:
    """The command does not run elsewhere when the directory is missing on the node: the shell exits 1 first."""
    spec = JobSpec.model_validate(
        {
            "name": "j",
            "class": "general",
            "entrypoint": "echo ran; exit 0",
            "runtime_env": {"working_dir": str(tmp_path / "absent")},
        }
    )
    entrypoint, _, _ = submission(spec, ["n1"])
    ran = subprocess.run(["sh", "-c", entrypoint], capture_output=True, text=True, check=False, timeout=10)
    assert (ran.returncode, ran.stdout) == (1, "")


def test_a_gang_runs_its_command_in_the_directory_too() -> None:
    """A gang's entrypoint carries the directory change inside the command scheduler.gang runs."""
    spec = job("/scratch/run", resources={"nodes": 2})
    entrypoint, runtime_env, reserved = submission(spec, ["n1", "n2"])
    assert entrypoint.startswith("python -m scheduler.gang ")
    assert "cd -- /scratch/run || exit 1" in entrypoint
    assert "working_dir" not in runtime_env
    assert reserved == (0.0, 0.0, 0)


def arguments(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """Ray's submit_job arguments for a submission with that runtime environment."""
    return submit_arguments(
        job_id="j-0",
        tier="general",
        entrypoint="pwd",
        cpus=1,
        gpus=0,
        memory_bytes=0,
        runtime_env=runtime_env,
        metadata={"name": "j"},
        selector={"ray.io/node-id": "n1"},
    )


@pytest.mark.parametrize("key", ["working_dir", "py_modules", "pip", "conda"])
def test_the_backend_refuses_to_give_ray_a_runtime_env_that_reads_local_files(key: str) -> None:
    """Whatever its caller passes, the backend never hands Ray a working_dir or py_modules (Ray's client would
    zip them from the service's host), nor pip or conda as a file name (the client would read that file)."""
    with pytest.raises(ValueError, match=key):
        arguments({key: "/var/lib/suanli", "env_vars": {"A": "1"}})


def test_the_backend_passes_env_vars_and_pip_and_its_selector_through() -> None:
    """Environment variables and pip requirements reach Ray unchanged, with the tier in the metadata."""
    got = arguments({"env_vars": {"A": "1"}, "pip": ["numpy"]})
    assert got["runtime_env"] == {"env_vars": {"A": "1"}, "pip": ["numpy"]}
    assert got["metadata"] == {"name": "j", "suanli.io/tier": "general"}
    assert got["entrypoint_label_selector"] == {"ray.io/node-id": "n1"}
    assert arguments(None)["runtime_env"] is None
