"""The pure parts of `scheduler.ray_backend`: label selectors, Ray's job details, its error answers and its per-node
available resources (no Ray cluster)."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from ray.core.generated import autoscaler_pb2
from ray.job_submission import JobDetails, JobStatus, JobType

from scheduler.models import RayJobState, RayRequestFailed, RayUnavailable, TierTarget
from scheduler.ray_backend import RayJobsBackend, available_by_node, label_matches, status_from_details

LABELS = {"suanli.io/tier": "hpc", "suanli.io/region": "440106"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ({"suanli.io/tier": "hpc"}, True),
        ({"suanli.io/tier": "ai"}, False),
        ({"suanli.io/tier": "!ai"}, True),
        ({"suanli.io/tier": "!hpc"}, False),
        ({"suanli.io/tier": "in(ai,hpc)"}, True),
        ({"suanli.io/tier": "!in(ai,hpc)"}, False),
        ({"suanli.io/tier": "hpc", "suanli.io/region": "440106"}, True),
        ({"suanli.io/tier": "hpc", "suanli.io/region": "110000"}, False),
        ({"missing": "x"}, False),
        ({"missing": "!x"}, True),
        ({}, True),
    ],
)
def test_label_selectors_match_as_ray_does(selector: dict[str, str], matches: bool) -> None:
    """Equality, `!v`, `in(...)` and `!in(...)`; every key of the selector must hold."""
    assert label_matches(selector, LABELS) is matches


def details(status: JobStatus, message: str, exit_code: int | None = None) -> JobDetails:
    return JobDetails(
        type=JobType.SUBMISSION,
        submission_id="j",
        status=status,
        entrypoint="x",
        message=message,
        start_time=1_700_000_000_000,
        end_time=1_700_000_004_500,
        driver_node_id="n1",
        driver_exit_code=exit_code,
    )


def test_a_failed_jobs_exit_code_comes_from_the_field_or_from_rays_message() -> None:
    """driver_exit_code when Ray sets it, else N from "Job entrypoint command failed with exit code N"."""
    message = "Job entrypoint command failed with exit code 3, last available logs (truncated to 20,000 chars):\n"
    assert status_from_details(details(JobStatus.FAILED, message)).exit_code == 3
    assert status_from_details(details(JobStatus.FAILED, message, exit_code=7)).exit_code == 7
    assert status_from_details(details(JobStatus.FAILED, "Job supervisor actor died")).exit_code is None


def test_job_times_are_seconds_and_states_map_one_to_one() -> None:
    """Ray's millisecond times become seconds; each JobStatus has its RayJobState."""
    status = status_from_details(details(JobStatus.SUCCEEDED, "Job finished successfully.", exit_code=0))
    assert (status.start_time, status.end_time, status.driver_node_id) == (1_700_000_000.0, 1_700_000_004.5, "n1")
    for ray_status in JobStatus:
        assert RayJobState(ray_status.value).value == ray_status.value
    assert RayJobState.STOPPED.terminal
    assert not RayJobState.PENDING.terminal


def test_rays_error_answers_become_domain_exceptions() -> None:
    """Connection errors and 502-504 are RayUnavailable; other HTTP errors RayRequestFailed with the status."""
    backend = RayJobsBackend({"hpc": TierTarget("http://127.0.0.1:9", None)})
    with pytest.raises(RayUnavailable), backend._errors("hpc", "x"):
        raise ConnectionError("refused")
    with pytest.raises(RayUnavailable), backend._errors("hpc", "x"):
        raise RuntimeError("Request failed with status code 503: busy.")
    with pytest.raises(RayRequestFailed) as caught, backend._errors("hpc", "x"):
        raise RuntimeError("Request failed with status code 500: Traceback (most recent call last):\n  ...\nBoom: it")
    assert caught.value.status_code == 500
    assert caught.value.reason.endswith("Boom: it")


@pytest.mark.parametrize("variable", ["RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"])
def test_the_backend_refuses_to_start_where_ray_would_override_every_address(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With RAY_ADDRESS or RAY_API_SERVER_ADDRESS in the environment Ray's SDK sends every call there, whatever
    address it is given (seen from inside a Ray job): the backend refuses to start, naming the variable."""
    monkeypatch.setenv(variable, "127.0.0.1:6379")
    with pytest.raises(ValueError, match=variable):
        RayJobsBackend({"hpc": TierTarget("http://127.0.0.1:9", None, "t" * 64)})


def test_rays_available_resources_are_read_per_alive_node_absent_meaning_none() -> None:
    """From the GCS's `ClusterResourceState`: each alive node's available CPUs, GPUs and memory by node id; a
    resource Ray leaves out of the map (nothing of it available) is 0; a dead node is left out."""
    pb: Any = autoscaler_pb2  # generated, without type information
    busy, idle, dead = bytes.fromhex("aa" * 28), bytes.fromhex("bb" * 28), bytes.fromhex("cc" * 28)
    state = pb.ClusterResourceState(
        node_states=[
            pb.NodeState(
                node_id=busy,
                status=pb.NodeStatus.RUNNING,
                total_resources={"CPU": 2.0, "GPU": 2.0, "memory": 512.0 * 2**20},
                available_resources={"GPU": 1.0, "memory": 256.0 * 2**20},
            ),
            pb.NodeState(
                node_id=idle,
                status=pb.NodeStatus.IDLE,
                total_resources={"CPU": 4.0},
                available_resources={"CPU": 4.0},
            ),
            pb.NodeState(node_id=dead, status=pb.NodeStatus.DEAD),
        ]
    )
    assert available_by_node(state) == {busy.hex(): (0.0, 1.0, 256.0 * 2**20), idle.hex(): (4.0, 0.0, 0.0)}


def test_a_gcs_that_cannot_be_asked_is_a_failed_request_not_an_outage() -> None:
    """Nothing listens at the configured GCS: `available` raises RayRequestFailed naming the address (the tier's
    jobs wait), not RayUnavailable (which would, in time, presume its running jobs lost)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        backend = RayJobsBackend({"hpc": TierTarget("http://127.0.0.1:9", None, "t" * 64, f"127.0.0.1:{port}")})
        with pytest.raises(RayRequestFailed) as failed:
            backend.available("hpc")
    assert f"127.0.0.1:{port}" in str(failed.value)
    assert not isinstance(failed.value, RayUnavailable)
    assert "t" * 64 not in str(failed.value)
