"""Jobs end to end: the service (uvicorn, SQLite) dispatching to a real local Ray cluster of tier raylets.

The cluster (`tests.integration.conftest.ray_cluster`) has general, ai (2 logical GPUs: this machine has no
GPU), two hpc and an edge raylet (region 440106). Each test submits through the HTTP API, as users do, and
checks what Ray did (the node a job's driver ran on, its exit code, its submissions).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.db.engine import make_engine
from api.jobs import store as job_store
from api.jobs.store import SqlJobStore
from census_agent.models import Tier
from scheduler.local_cluster import LocalRayCluster
from scheduler.models import JobSpec
from scheduler.ray_backend import RayJobsBackend
from tests.ray_cluster import cluster_table
from tests.servers import wait_for
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration

QUOTA_ORG = "capped"


def backend_for(cluster: LocalRayCluster) -> RayJobsBackend:
    return RayJobsBackend({t: cluster.target({"suanli.io/tier": t}) for t in ("general", "ai", "hpc", "edge")})


def scheduler_settings(cluster: LocalRayCluster, workdir: Path) -> dict[str, str]:
    """The service settings of these tests: the scheduler's file (the session's cluster, a quota for
    `QUOTA_ORG`) written in `workdir`, a 0.3 s dispatch interval, and 3 s duty leases (a service restarted
    after a SIGKILL waits for its predecessor's lease to expire before it dispatches)."""
    config = workdir / "scheduler.toml"
    config.write_text(f"[ray]\n{cluster_table(cluster)}[policy.quotas.{QUOTA_ORG}.hpc]\njobs = 1\n")
    leases = {"lease_seconds": "3", "lease_renew_seconds": "0.5", "lease_margin_seconds": "1"}
    return {"scheduler_config": str(config), "dispatch_interval_seconds": "0.3", **leases}


def start_service(cluster: LocalRayCluster, workdir: Path) -> ServiceProcess:
    """The service under uvicorn on SQLite, dispatching to `cluster`."""
    return ServiceProcess(f"sqlite:///{workdir / 'suanli.db'}", workdir, **scheduler_settings(cluster, workdir)).start()


@pytest.fixture(scope="module")
def service(ray_cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The service with the scheduler configured for the session's Ray cluster."""
    process = start_service(ray_cluster, tmp_path_factory.mktemp("jobs-service"))
    yield process
    process.stop()


def job_doc(klass: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"name": extra.pop("name", f"{klass}-test"), "class": klass, "entrypoint": command, **extra}


def submit(client: httpx.Client, doc: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/jobs", json=doc)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_state(client: httpx.Client, job_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(client.get(f"/v1/jobs/{job_id}").json())
        return seen["state"] in states

    wait_for(reached, timeout, f"job {job_id} in {states} (last: {seen.get('state')}: {seen.get('reason')})")
    return seen


def tier_nodes(cluster: LocalRayCluster, tier: str) -> set[str]:
    return {n.node_id for n in backend_for(cluster).nodes(tier)}


def test_each_class_runs_on_the_tier_its_policy_names(service: ServiceProcess, ray_cluster: LocalRayCluster) -> None:
    """general, hpc, ai (1 GPU), edge (region 440106) and in-memory jobs all succeed, each with its driver on a
    node of the tier the default policy names; the job says where and why."""
    cases = {
        "general": (job_doc("general", "echo general"), "general"),
        "hpc": (job_doc("hpc", "echo hpc"), "hpc"),
        "ai": (job_doc("ai", "echo ai", resources={"gpus": 1}), "ai"),
        "edge": (job_doc("edge", "echo edge", region="440106"), "edge"),
        "in-memory": (job_doc("in-memory", "echo mem", resources={"memory_bytes": 64 * 2**20}), None),
    }
    with service.client() as client:
        submitted = {k: submit(client, doc)["job_id"] for k, (doc, _) in cases.items()}
        for klass, job_id in submitted.items():
            job = wait_state(client, job_id, {"succeeded", "failed"}, timeout=90)
            assert job["state"] == "succeeded", job
            expected = cases[klass][1] or job["tier"]
            assert job["tier"] == expected
            assert job["driver_node_id"] in tier_nodes(ray_cluster, expected), job
            assert job["node_ids"] == [job["driver_node_id"]]
            assert f"on {expected} node" in job["events"][1]["reason"]
            assert [e["state"] for e in job["events"]] == ["queued", "dispatching", "running", "succeeded"]
            assert job["exit_code"] == 0
            assert klass.split("-")[0] in client.get(f"/v1/jobs/{job_id}/logs").text


def test_hpc_gang_reserves_distinct_hpc_nodes_with_a_placement_group(
    service: ServiceProcess, ray_cluster: LocalRayCluster
) -> None:
    """A 2-node hpc job runs once its STRICT_SPREAD placement group holds one bundle on each hpc raylet: the
    command sees both node ids in SUANLI_GANG_NODES, and they are the job's two nodes."""
    with service.client() as client:
        job = submit(
            client,
            job_doc("hpc", 'echo "gang of $SUANLI_GANG_SIZE: $SUANLI_GANG_NODES"', resources={"cpus": 1, "nodes": 2}),
        )
        done = wait_state(client, job["job_id"], {"succeeded", "failed"}, timeout=120)
        logs = client.get(f"/v1/jobs/{job['job_id']}/logs").text
    assert done["state"] == "succeeded", (done, logs)
    hpc = tier_nodes(ray_cluster, "hpc")
    assert set(done["node_ids"]) == hpc
    line = next(x for x in logs.splitlines() if x.startswith("gang of 2: "))
    assert set(line.removeprefix("gang of 2: ").split(",")) == hpc
    assert done["spec"]["entrypoint"].startswith("echo")  # the user's command is stored as given


def test_impossible_job_is_rejected_at_submission_with_the_reason(service: ServiceProcess) -> None:
    """8 GPUs per node where the ai raylet has 2, or a gang of 3 hpc nodes where there are 2: 422 with the
    reason; an unknown class, negative CPUs or an unknown region: 422 naming the field; nothing is stored."""
    with service.client() as client:
        before = client.get("/v1/jobs").json()["items"]
        for doc, words in [
            (job_doc("ai", "train", resources={"gpus": 8}), "8 GPUs"),
            (job_doc("hpc", "mpirun", resources={"nodes": 3}), "0 of 2 node(s) big enough"),
        ]:
            response = client.post("/v1/jobs", json=doc)
            assert response.status_code == 422, response.text
            assert response.json()["title"] == "Job rejected"
            assert words in response.json()["detail"] or "big enough" in response.json()["detail"]
        for bad, field in [
            ({"name": "x", "class": "quantum", "entrypoint": "true"}, "class"),
            (job_doc("general", "true", resources={"cpus": -1}), "resources.cpus"),
            (job_doc("edge", "true", region="999999"), "region"),
        ]:
            response = client.post("/v1/jobs", json=bad)
            assert response.status_code == 422, response.text
            assert response.json()["detail"].startswith(field) or field in response.json()["detail"]
        assert client.get("/v1/jobs").json()["items"] == before


def test_full_tier_queues_then_drains_in_priority_order(service: ServiceProcess) -> None:
    """The edge tier has one CPU: while a blocker runs, jobs of priority 0, 9 and 5 wait (saying why, in
    places 1-3 by priority) and then run one at a time in the order 9, 5, 0."""
    with service.client() as client:
        blocker = submit(client, job_doc("edge", "sleep 4", resources={"cpus": 1}))
        wait_state(client, blocker["job_id"], {"running"})
        ids = {
            p: submit(client, job_doc("edge", f"echo p{p}", priority=p, resources={"cpus": 1}))["job_id"]
            for p in (0, 9, 5)
        }
        time.sleep(1.0)  # a dispatcher step or more
        waiting = {p: client.get(f"/v1/jobs/{i}").json() for p, i in ids.items()}
        assert {p: j["state"] for p, j in waiting.items()} == {0: "queued", 9: "queued", 5: "queued"}
        assert {p: j["position"] for p, j in waiting.items()} == {9: 1, 5: 2, 0: 3}
        assert all("waits for edge" in j["reason"] for j in waiting.values())
        done = {p: wait_state(client, i, {"succeeded"}, timeout=90) for p, i in ids.items()}
    order = sorted(done, key=lambda p: done[p]["started_at"])
    assert order == [9, 5, 0]


def test_quota_holds_while_other_organisations_run(service: ServiceProcess) -> None:
    """The `capped` organisation may run one hpc job at a time (the file's quota): its second job waits for quota
    while the first runs although an hpc node is free, then runs; another organisation's job starts at once."""
    with service.client() as client:
        first = submit(client, job_doc("hpc", "sleep 10", organisation=QUOTA_ORG))
        wait_state(client, first["job_id"], {"running"})
        second = submit(client, job_doc("hpc", "echo second", organisation=QUOTA_ORG))
        other = submit(client, job_doc("hpc", "echo other", organisation="uncapped"))
        time.sleep(1.0)
        held = client.get(f"/v1/jobs/{second['job_id']}").json()
        assert held["state"] == "queued"
        assert "quota" in held["reason"]
        other_started = wait_state(client, other["job_id"], {"running", "succeeded"})["started_at"]
        assert other_started < first_done_at(client, first)
        finished = wait_state(client, second["job_id"], {"succeeded"}, timeout=60)
        first_done = client.get(f"/v1/jobs/{first['job_id']}").json()
    assert finished["started_at"] >= first_done["finished_at"]


def first_done_at(client: httpx.Client, job: dict[str, Any]) -> str:
    """When `job` finished (waiting for it)."""
    return str(wait_state(client, job["job_id"], {"succeeded"}, timeout=60)["finished_at"])


def test_a_job_runs_in_its_node_side_working_directory_and_a_missing_one_fails_it(
    service: ServiceProcess, tmp_path: Path
) -> None:
    """A working directory is a directory on the node (here the nodes share this machine's disk): `pwd` prints it
    and a file there is read; one missing on the node fails the job with exit code 1 without running the command,
    and the dispatcher carries on (the next job succeeds)."""
    here = tmp_path / "it's the dir"
    here.mkdir()
    (here / "marker.txt").write_text("MARKED\n")
    with service.client() as client:
        # The two are independent: Ray starts them side by side (one job start, not two, of waiting).
        job = submit(client, job_doc("general", "pwd; cat marker.txt", runtime_env={"working_dir": str(here)}))
        missing = submit(
            client, job_doc("general", "echo RAN-$((40 + 2))", runtime_env={"working_dir": str(tmp_path / "absent")})
        )
        done = wait_state(client, job["job_id"], {"succeeded", "failed", "cancelled"})
        logs = client.get(f"/v1/jobs/{job['job_id']}/logs").text
        assert done["state"] == "succeeded", (done, logs)
        assert str(here) in logs.splitlines()
        assert "MARKED" in logs
        failed = wait_state(client, missing["job_id"], {"succeeded", "failed", "cancelled"})
        assert (failed["state"], failed["exit_code"]) == ("failed", 1), failed
        # Ray's log repeats the entrypoint's text ("RAN-$((40 + 2))"); only running it would print RAN-42.
        assert "RAN-42" not in client.get(f"/v1/jobs/{missing['job_id']}/logs").text
        after = submit(client, job_doc("general", "true"))
        assert wait_state(client, after["job_id"], {"succeeded", "failed", "cancelled"})["state"] == "succeeded"


def test_time_limit_stops_the_job_and_marks_it_failed_so(service: ServiceProcess) -> None:
    """A `sleep 120` with a 3 s limit is stopped by the dispatcher and recorded failed, saying why."""
    with service.client() as client:
        job = submit(client, job_doc("general", "sleep 120", time_limit_seconds=3))
        ended = wait_state(client, job["job_id"], {"succeeded", "failed", "cancelled"}, timeout=60)
    assert ended["state"] == "failed"
    assert "time limit of 3 s" in ended["reason"]


def test_failing_job_is_retried_then_fails_with_its_exit_code(
    service: ServiceProcess, ray_cluster: LocalRayCluster
) -> None:
    """`exit 3` with one retry: it runs twice (two Ray submissions), then fails saying exit code 3."""
    with service.client() as client:
        job = submit(client, job_doc("general", "sh -c 'echo trying; exit 3'", max_retries=1))
        ended = wait_state(client, job["job_id"], {"succeeded", "failed"}, timeout=90)
    assert ended["state"] == "failed"
    assert ended["exit_code"] == 3
    assert "exit code 3" in ended["reason"]
    assert ended["attempt"] == 1
    states = [e["state"] for e in ended["events"]]
    assert states.count("dispatching") == 2
    assert "retry 1 of 1" in " ".join(e["reason"] for e in ended["events"])
    submissions = [s for s in backend_for(ray_cluster).jobs("general") if s.startswith(job["job_id"])]
    assert sorted(submissions) == [f"{job['job_id']}-0", f"{job['job_id']}-1"]


def test_cancel_works_while_queued_and_while_running_and_not_after_the_end(service: ServiceProcess) -> None:
    """A queued job (edge full) is cancelled at once; a running one is stopped on Ray and then recorded
    cancelled; cancelling a finished job answers 409; one caught while dispatching (Ray still starting it, about
    4 s here) is stopped and recorded cancelled too."""
    with service.client() as client:
        running = submit(client, job_doc("edge", "sleep 60", resources={"cpus": 1}))
        wait_state(client, running["job_id"], {"running"})
        queued = submit(client, job_doc("edge", "echo never", resources={"cpus": 1}))
        answer = client.post(f"/v1/jobs/{queued['job_id']}/cancel").json()
        assert answer["state"] == "cancelled"
        client.post(f"/v1/jobs/{running['job_id']}/cancel").raise_for_status()
        stopped = wait_state(client, running["job_id"], {"cancelled", "failed", "succeeded"}, timeout=60)
        assert stopped["state"] == "cancelled"
        again = client.post(f"/v1/jobs/{running['job_id']}/cancel")
        assert again.status_code == 409
        dispatching = submit(client, job_doc("general", "sleep 60", resources={"cpus": 0.5}))
        caught = wait_state(client, dispatching["job_id"], {"dispatching", "running"})
        assert caught["state"] == "dispatching"  # Ray takes seconds to start it; polled every 50 ms
        client.post(f"/v1/jobs/{dispatching['job_id']}/cancel").raise_for_status()
        ended = wait_state(client, dispatching["job_id"], {"cancelled", "failed", "succeeded"}, timeout=60)
        assert ended["state"] == "cancelled", (caught["state"], ended)
        assert client.get(f"/v1/jobs/{queued['job_id']}").json()["submission_id"] is None  # never reached Ray


def test_a_user_sees_and_cancels_only_its_own_jobs(service: ServiceProcess) -> None:
    """User B cannot see (404) or cancel (404) user A's job nor list it; an operator sees both."""
    with service.client() as admin:
        tokens = {
            name: admin.post("/v1/tokens", json={"name": name, "role": role, **orgs}).json()["token"]
            for name, role, orgs in (
                ("alice", "user", {"organisations": ["default"]}),
                ("bob", "user", {"organisations": ["default"]}),
                ("ops", "operator", {}),
            )
        }
    with service.client(tokens["alice"]) as alice, service.client(tokens["bob"]) as bob:
        job = submit(alice, job_doc("general", "echo mine"))
        assert job["owner"] == "alice"
        assert bob.get(f"/v1/jobs/{job['job_id']}").status_code == 404
        assert bob.post(f"/v1/jobs/{job['job_id']}/cancel").status_code == 404
        assert job["job_id"] not in {j["job_id"] for j in bob.get("/v1/jobs").json()["items"]}
        assert job["job_id"] in {j["job_id"] for j in alice.get("/v1/jobs").json()["items"]}
    with service.client(tokens["ops"]) as ops:
        assert ops.get(f"/v1/jobs/{job['job_id']}").status_code == 200


def test_a_jobs_output_shows_its_environment_values_to_its_owner_and_admins_and_masks_them_for_operators(
    service: ServiceProcess,
) -> None:
    """A user's job prints its API_KEY: its owner and an admin read the value in its logs; an operator reads
    ``***`` in its place, in the logs and in the followed stream, and the job's answer shows it the name only."""
    secret = "k3y-" + time.strftime("%H%M%S") + "-never-for-operators"
    with service.client() as admin:
        dave = admin.post("/v1/tokens", json={"name": "dave", "role": "user", "organisations": ["lab"]}).json()
        ops = admin.post("/v1/tokens", json={"name": "ops-reader", "role": "operator"}).json()
    doc = job_doc("general", 'echo "key=$API_KEY"', runtime_env={"env_vars": {"API_KEY": secret}})
    with service.client(dave["token"]) as owner:
        job = submit(owner, doc)
        wait_state(owner, job["job_id"], {"succeeded"})
        assert f"key={secret}" in owner.get(f"/v1/jobs/{job['job_id']}/logs").text
    with service.client() as admin:
        assert f"key={secret}" in admin.get(f"/v1/jobs/{job['job_id']}/logs").text
    with service.client(ops["token"]) as operator:
        logs = operator.get(f"/v1/jobs/{job['job_id']}/logs")
        followed = operator.get(f"/v1/jobs/{job['job_id']}/logs", params={"follow": "true"})
        seen = operator.get(f"/v1/jobs/{job['job_id']}").json()
    for answer in (logs, followed):
        assert answer.status_code == 200, answer.text
        assert "key=***" in answer.text
        assert secret not in answer.text
    assert seen["spec"]["runtime_env"]["env_vars"] == {"API_KEY": "***"}


def test_a_retried_submission_with_the_same_idempotency_key_queues_one_job(service: ServiceProcess) -> None:
    """The same POST twice with one Idempotency-Key: 201 then 200 with the same job, one job stored; the key
    with another body is 409; another user's identical key is their own."""
    doc = job_doc("edge", "sleep 1", resources={"cpus": 0.5}, name="idempotent")
    with service.client() as client:
        first = client.post("/v1/jobs", json=doc, headers={"Idempotency-Key": "submit-42"})
        again = client.post("/v1/jobs", json=doc, headers={"Idempotency-Key": "submit-42"})
        other = client.post("/v1/jobs", json={**doc, "entrypoint": "sleep 2"}, headers={"Idempotency-Key": "submit-42"})
        assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
        assert again.json()["job_id"] == first.json()["job_id"]
        named = [j for j in client.get("/v1/jobs", params={"limit": 1000}).json()["items"] if j["name"] == "idempotent"]
        assert len(named) == 1
        body = {"name": "carol", "role": "user", "organisations": ["default"]}
        user = client.post("/v1/tokens", json=body).json()["token"]
        client.post(f"/v1/jobs/{first.json()['job_id']}/cancel")
    with service.client(user) as carol:
        assert carol.post("/v1/jobs", json=doc, headers={"Idempotency-Key": "submit-42"}).status_code == 201


def test_job_metrics_pass_promtool_and_count_jobs_by_tier_and_state(service: ServiceProcess) -> None:
    """`/metrics` carries `suanli_jobs{tier,state}` and `suanli_jobs_finished_total{tier,state}` equal to the
    jobs the API lists, and `promtool check metrics` accepts it."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed; .ci/run installs it"
    with service.client() as client:
        done = submit(client, job_doc("general", "echo counted"))
        wait_state(client, done["job_id"], {"succeeded"})
        listed = client.get("/v1/jobs", params={"limit": 1000}).json()["items"]
        response = client.get("/metrics")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=response.content, capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    samples = {
        (s.name, s.labels.get("tier"), s.labels.get("state")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name.startswith("suanli_jobs")
    }
    succeeded_general = sum(1 for j in listed if j["state"] == "succeeded" and j["tier"] == "general")
    assert samples[("suanli_jobs_finished_total", "general", "succeeded")] == succeeded_general >= 1
    finished = sum(v for (name, _, _), v in samples.items() if name == "suanli_jobs_finished_total")
    assert finished == sum(1 for j in listed if j["state"] in ("succeeded", "failed", "cancelled"))


def test_tiers_show_capacity_free_and_jobs(service: ServiceProcess) -> None:
    """`GET /v1/tiers`: every tier served and reachable, with Ray's CPUs (2 hpc raylets of 2 CPUs = 4) and
    the ai raylet's 2 logical GPUs."""
    with service.client() as client:
        tiers = {t["tier"]: t for t in client.get("/v1/tiers").json()["tiers"]}
    assert all(t["served"] and t["reachable"] for t in tiers.values())
    assert tiers["hpc"]["nodes"] == 2
    assert tiers["hpc"]["capacity"]["cpus"] == 4
    assert tiers["ai"]["capacity"]["gpus"] == 2


def test_dispatcher_killed_mid_dispatch_and_restarted_runs_each_job_exactly_once(
    ray_cluster: LocalRayCluster, tmp_path: Path
) -> None:
    """Two crash points. One job is running on Ray when the service is killed (SIGKILL). The other is left
    exactly as a kill between the dispatcher's two acts leaves it: while the service is down, the real store
    code queues it and records it `dispatching` (decision persisted), and Ray is never called. After a restart
    both succeed, and Ray holds exactly one submission of each."""
    service = start_service(ray_cluster, tmp_path)
    backend = backend_for(ray_cluster)
    try:
        with service.client() as client:
            already = submit(client, job_doc("general", "sleep 3; echo followed", name="already-sent"))["job_id"]
            wait_state(client, already, {"running"})
    finally:
        service.proc.kill()  # type: ignore[union-attr]  # SIGKILL: no clean shutdown
        service.proc.wait()  # type: ignore[union-attr]
    engine = make_engine(f"sqlite:///{tmp_path / 'suanli.db'}")
    spec = JobSpec.model_validate(job_doc("general", "echo resumed", name="never-sent"))
    with engine.begin() as conn:
        never_sent = job_store.create(conn, spec, "admin", datetime.now(tz=UTC), "queued", owner_id=None)
    node = next(iter(tier_nodes(ray_cluster, "general")))
    assert SqlJobStore(engine).dispatch(
        never_sent,
        attempt=0,
        tier=Tier.GENERAL,
        node_ids=[node],
        submission_id=f"{never_sent}-0",
        reason="staged",
        now=time.time(),
    )
    engine.dispose()
    assert backend.status(f"{never_sent}-0", "general").state.value == "MISSING"
    service.start()
    try:
        with service.client() as client:
            for job_id in (never_sent, already):
                job = wait_state(client, job_id, {"succeeded", "failed"}, timeout=90)
                assert job["state"] == "succeeded", job
    finally:
        service.stop()
    submissions = backend.jobs("general")
    for job_id in (never_sent, already):
        assert [s for s in submissions if s.startswith(job_id)] == [f"{job_id}-0"]


def test_cli_submits_follows_and_cancels(service: ServiceProcess, tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    """`suanli submit -- CMD` queues a job whose entrypoint is the command verbatim; `job`, `logs` (and
    `logs --follow`), `jobs`, `tiers` and `cancel` show and change it."""
    token = tmp_path / "token"
    token.write_text(service.admin_token)
    flags = ["--server", service.url, "--token-file", str(token)]
    out = run_cli(
        "submit",
        "--class",
        "general",
        "--time-limit",
        "1m",
        *flags,
        "--json",
        "--",
        "sh",
        "-c",
        "echo 'quoted $HOME' | tr a-z A-Z",
    )
    job = json.loads(out)
    assert job["spec"]["entrypoint"] == "sh -c 'echo '\"'\"'quoted $HOME'\"'\"' | tr a-z A-Z'"
    with service.client() as client:
        wait_state(client, job["job_id"], {"succeeded"})
    assert "QUOTED $HOME" in run_cli("logs", job["job_id"], *flags)
    assert "QUOTED $HOME" in run_cli("logs", job["job_id"], "--follow", *flags)  # a finished job's stream ends
    assert "succeeded" in run_cli("job", job["job_id"], *flags)
    assert job["job_id"] in run_cli("jobs", *flags)
    assert "hpc" in run_cli("tiers", *flags)
    later = json.loads(run_cli("submit", "--class", "edge", "--cpus", "1", *flags, "--json", "--", "sleep", "30"))
    assert "cancel" in run_cli("cancel", later["job_id"], *flags)
