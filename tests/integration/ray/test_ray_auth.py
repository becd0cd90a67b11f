"""Ray's control plane with token authentication, on real clusters: who is refused, and what a job can still reach.

The session's cluster (tests/ray_cluster.py) runs with ``RAY_AUTH_MODE=token`` like every `LocalRayCluster`. These
tests check that its Jobs API (the dashboard's HTTP) and its GCS (gRPC) refuse a caller without the token or with a
wrong one, and then, with real jobs, what a job running on the cluster can still do to other jobs there (it holds
the token) and that it cannot use it on another cluster (a tier with a cluster and token of its own). What they
find is the trust model docs/security.md states.
"""

from __future__ import annotations

import json
import shlex
import time

import grpc  # type: ignore[import-untyped]  # ships no type information
import httpx
import pytest
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

from scheduler.local_cluster import LocalRayCluster
from scheduler.models import RayJobState, RayRequestFailed, TierTarget
from scheduler.ray_backend import RayJobsBackend
from tests.ray_cluster import unique, wait_for_state, wait_until_done

pytestmark = pytest.mark.integration

# A job that reports, as one JSON line, what it holds and what it could do with it on its own cluster (the Jobs API
# found through RAY_ADDRESS, as `ray job` would) and on another cluster (argv: dashboard URL, GCS address, token
# file). Every step is tried and its outcome recorded; nothing is assumed.
PROBE = r"""
import json, os, sys, urllib.error, urllib.request
import grpc
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
from ray.job_submission import JobSubmissionClient

victim, victim_gcs, other_dashboard, other_gcs, other_token_file = sys.argv[1:6]
found = {"env": {k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH")}}
path = os.environ.get("RAY_AUTH_TOKEN_PATH")
token = open(path).read().strip() if path else os.environ.get("RAY_AUTH_TOKEN", "")
found["holds_token"] = bool(token)

def attempt(name, call):
    try:
        found[name] = call()
    except Exception as exc:
        found[name] = "error: " + type(exc).__name__ + ": " + str(exc)[:200]

own = JobSubmissionClient()
attempt("victim_env", lambda: next(j.runtime_env for j in own.list_jobs() if j.submission_id == victim))
attempt("victim_logs", lambda: own.get_job_logs(victim))
attempt("stop_victim", lambda: own.stop_job(victim))
def kill_through_the_gcs():  # no Jobs API: the core API, as the chart's NetworkPolicy leaves it to a job
    import ray
    ray.init(log_to_driver=False)  # RAY_ADDRESS: this cluster's GCS, with the token Ray finds in the environment
    name = "_ray_internal_job_actor_" + victim_gcs
    ray.kill(ray.get_actor(name, namespace="SUPERVISOR_ACTOR_RAY_NAMESPACE"))
    return "killed"
attempt("kill_victim_supervisor", kill_through_the_gcs)
bearer = {"Authorization": "Bearer " + token}
def other_jobs_api():  # plain HTTP: Ray's client would follow RAY_ADDRESS (this cluster) whatever it is given
    request = urllib.request.Request(other_dashboard + "/api/jobs/", headers=bearer)
    try:
        return "HTTP %d" % urllib.request.urlopen(request, timeout=30).status
    except urllib.error.HTTPError as exc:
        return "HTTP %d" % exc.code
attempt("other_jobs_api", other_jobs_api)
def other_gcs_call():
    channel = grpc.insecure_channel(other_gcs)
    stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
    stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(), metadata=[("authorization", "Bearer " + token)],
                        timeout=10)
    return "answered"
attempt("other_gcs", other_gcs_call)
attempt("other_token_file", lambda: bool(open(other_token_file).read().strip()))
print("PROBE " + json.dumps(found, default=str))
"""


def gcs_node_count(address: str, token: str | None) -> int:
    """How many nodes the GCS at `address` lists when asked over gRPC with `token` (None: no token at all)."""
    metadata = [] if token is None else [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)  # type: ignore[no-untyped-call]
        request = gcs_service_pb2.GetAllNodeInfoRequest()  # type: ignore[attr-defined]
        reply = stub.GetAllNodeInfo(request, metadata=metadata, timeout=20)
    return len(reply.node_info_list)


def test_the_jobs_api_refuses_a_call_without_the_token_or_with_a_wrong_one(ray_cluster: LocalRayCluster) -> None:
    """Plain HTTP to the dashboard's /api/jobs/: no token 401, a wrong token 403 (listing and submitting alike, and
    the refused submission does not exist afterwards); the cluster's token 200. The backend without a token or
    with a wrong one gets `RayRequestFailed` 401 or 403 (a refusal, not an outage) that does not echo the token."""
    jobs = f"{ray_cluster.dashboard_url}/api/jobs/"
    job_id = unique("unauthenticated")
    submission = {"entrypoint": "echo should-not-run", "submission_id": job_id}
    good = {"Authorization": f"Bearer {ray_cluster.token}"}
    assert httpx.get(jobs, timeout=30).status_code == 401
    assert httpx.post(jobs, json=submission, timeout=30).status_code == 401
    assert httpx.get(jobs, headers={"Authorization": "Bearer " + "0" * 64}, timeout=30).status_code == 403
    assert httpx.post(jobs, json=submission, headers={"Authorization": "Bearer x"}, timeout=30).status_code == 403
    assert httpx.get(jobs, headers={"X-Ray-Authorization": "Bearer x"}, timeout=30).status_code == 403
    assert httpx.get(f"{jobs}{job_id}", headers=good, timeout=30).status_code == 404  # never submitted
    listed = httpx.get(jobs, headers=good, timeout=30)
    assert listed.status_code == 200
    assert isinstance(listed.json(), list)

    for token, status in ((None, 401), ("x" * 64, 403)):
        backend = RayJobsBackend({"general": TierTarget(ray_cluster.dashboard_url, None, token)})
        with pytest.raises(RayRequestFailed) as refused:
            backend.jobs("general")
        assert refused.value.status_code == status
        assert "x" * 64 not in str(refused.value)  # the token is never echoed in an error


def test_the_gcs_refuses_grpc_calls_without_the_token(ray_cluster: LocalRayCluster) -> None:
    """The GCS listens on every interface (platform notes); a gRPC call without the token, or with a wrong one, is
    UNAUTHENTICATED; with the token it lists the cluster's nodes (the head and five raylets)."""
    for token in (None, "0" * 64):
        with pytest.raises(grpc.RpcError) as refused:
            gcs_node_count(ray_cluster.address, token)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, token
    assert gcs_node_count(ray_cluster.address, ray_cluster.token) >= 1 + len(ray_cluster.names)


def test_a_job_holds_its_clusters_token_and_reaches_other_jobs_there_but_not_another_cluster(
    backend: RayJobsBackend, ray_cluster: LocalRayCluster, second_ray_cluster: LocalRayCluster
) -> None:
    """The trust model, measured: a job (the probe) on the session's cluster finds RAY_AUTH_MODE=token and the
    token's file in its environment and can read the token. With it, through the Jobs API, it reads another job's
    runtime environment (its env_vars) and output and stops it; through the GCS alone (ray.init, no Jobs API)
    it kills a third job's supervisor, which fails that job. On another cluster (its own token) the same token is
    refused by the Jobs API (403) and by the GCS (UNAUTHENTICATED); but on this one machine, as the same OS user, the
    other cluster's token file is readable: separate clusters separate only where their token files are out of
    each other's reach (other hosts or users: a RayCluster per tier in the chart)."""
    victim, victim_gcs = unique("victim"), unique("victim-gcs")
    for job_id in (victim, victim_gcs):
        backend.submit(
            job_id=job_id,
            tier="general",
            entrypoint="echo victim-output-7f3 && sleep 120",
            cpus=0.1,
            gpus=0,
            memory_bytes=0,
            runtime_env={"env_vars": {"VICTIM_SECRET": "s3cret-of-the-victim"}},
        )
    for job_id in (victim, victim_gcs):
        wait_for_state(backend, job_id, "general", {RayJobState.RUNNING}, timeout=180)
    deadline = time.monotonic() + 60
    while "victim-output-7f3" not in backend.logs(victim, "general") and time.monotonic() < deadline:
        time.sleep(0.5)

    probe = unique("probe")
    other = second_ray_cluster  # a cluster with a token of its own, as a tier given its own cluster has
    args = [victim, victim_gcs, other.dashboard_url, other.address, str(other.token_file)]
    entrypoint = shlex.join(["python", "-c", PROBE, *args])
    backend.submit(job_id=probe, tier="general", entrypoint=entrypoint, cpus=0.1, gpus=0, memory_bytes=0)
    status = wait_until_done(backend, probe, "general", timeout=240)
    logs = backend.logs(probe, "general")
    assert status.state is RayJobState.SUCCEEDED, f"{status.message}\n{logs}"
    line = next(line for line in logs.splitlines() if line.startswith("PROBE "))
    found = json.loads(line.removeprefix("PROBE "))

    assert found["env"] == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(ray_cluster.token_file)}
    assert found["holds_token"] is True
    assert found["victim_env"] == {"env_vars": {"VICTIM_SECRET": "s3cret-of-the-victim"}}
    assert "victim-output-7f3" in found["victim_logs"]
    assert found["stop_victim"] is True
    assert wait_until_done(backend, victim, "general", timeout=60).state is RayJobState.STOPPED
    assert found["kill_victim_supervisor"] == "killed", found["kill_victim_supervisor"]
    assert wait_until_done(backend, victim_gcs, "general", timeout=60).state is RayJobState.FAILED

    assert found["other_jobs_api"] == "HTTP 403"
    assert "UNAUTHENTICATED" in found["other_gcs"], found["other_gcs"]
    assert found["other_token_file"] is True  # one machine, one OS user: no separation by file permissions
