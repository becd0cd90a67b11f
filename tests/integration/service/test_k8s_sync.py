"""Kubernetes discovery: `suanli k8s-sync` and the service's periodic sync against a Kubernetes API emulator.

No real Kubernetes API server can run on these machines: the cluster is kmock's emulator on 127.0.0.1
(`tests.kubernetes`), spoken to over HTTP by the official `kubernetes` client, as in production.  The census
service is real (SQLite and PostgreSQL), and so are the `suanli` processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.service.helpers import (
    all_nodes,
    census,
    clean_env,
    create_token,
    make_report,
    module_service,
    planned_inventory,
    stored,
)
from tests.kubernetes import KubeEmulator
from tests.servers import free_port
from tests.service import ServiceProcess

SUANLI = Path(sys.executable).with_name("suanli")
H100_FP16 = 989.5e12  # the catalogue's dense fp16 tensor peak of one H100 SXM


def kube_node(
    name: str, machine_id: str, *, labels: dict[str, str], capacity: dict[str, str], ready: str = "True"
) -> dict[str, Any]:
    """A Node as the kubelet and the GPU/Node Feature Discovery daemons leave it."""
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": {"kubernetes.io/hostname": name, **labels}},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {
                "machineID": machine_id,
                "osImage": "Ubuntu 22.04.4 LTS",
                "kernelVersion": "5.15.0",
                "architecture": "amd64",
                "kubeletVersion": "v1.31.0",
            },
            "conditions": [{"type": "Ready", "status": ready}],
            "images": [{"names": ["registry.example/big:1"], "sizeBytes": 123}],
        },
    }


@dataclass
class Cluster:
    """The emulated cluster of one test: a GPU node, a CPU node and a NotReady node, with machine ids of its own
    (the module's service is shared)."""

    kube: KubeEmulator
    gpu: str
    cpu: str
    down: str

    @property
    def ids(self) -> set[str]:
        """The machine ids of its nodes."""
        return {self.gpu, self.cpu, self.down}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service per backend for this module."""
    yield from module_service(request, tmp_path_factory)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """The emulated cluster, on a Kubernetes API emulator of its own."""
    gpu, cpu, down = (uuid.uuid4().hex for _ in range(3))
    with KubeEmulator() as kube:
        kube.put_node(
            kube_node(
                "gpu-01",
                gpu,
                labels={
                    "suanli.io/region": "440106",
                    "suanli.io/organisation": "city-ai-centre",
                    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                    "nvidia.com/gpu.count": "8",
                    "nvidia.com/gpu.memory": "81559",
                    "nvidia.com/gpu.compute.major": "9",
                    "nvidia.com/gpu.compute.minor": "0",
                },
                capacity={"cpu": "224", "memory": "2Ti", "nvidia.com/gpu": "8", "pods": "110"},
            )
        )
        kube.put_node(
            kube_node(
                "cpu-01",
                cpu,
                labels={
                    "topology.kubernetes.io/zone": "440111",
                    "suanli.io/cpu-base-clock-mhz": "2000",
                    "feature.node.kubernetes.io/cpu-model.vendor_id": "Intel",
                    "feature.node.kubernetes.io/cpu-hardware_multithreading": "true",
                    "feature.node.kubernetes.io/cpu-cpuid.AVX2": "true",
                    "feature.node.kubernetes.io/cpu-cpuid.FMA3": "true",
                },
                capacity={"cpu": "64", "memory": "256Gi", "pods": "110"},
            )
        )
        kube.put_node(kube_node("cpu-02", down, labels={}, capacity={"cpu": "8", "memory": "32Gi"}, ready="False"))
        yield Cluster(kube, gpu, cpu, down)


def k8s_sync(
    service: ServiceProcess, token: str | None, kubeconfig: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """Run `suanli k8s-sync` as an operator would."""
    token_args: list[str] = []
    if token is not None:
        token_file = kubeconfig.with_name(f"token-{time.monotonic_ns()}")
        token_file.write_text(token)
        token_args = ["--token-file", str(token_file)]
    return subprocess.run(
        [str(SUANLI), "k8s-sync", "--server", service.url, *token_args, "--kubeconfig", str(kubeconfig), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        cwd=kubeconfig.parent,
        check=False,
    )


def synced(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON summary of a sync that must succeed."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def kubernetes_nodes(service: ServiceProcess) -> dict[str, dict[str, Any]]:
    """The census's node records by id."""
    with service.client() as client:
        return {n["node_id"]: n for n in all_nodes(client)}


def test_k8s_sync_records_a_clusters_nodes_once_priced_by_the_compute_model(
    service: ServiceProcess, cluster: Cluster, tmp_path: Path
) -> None:
    """Every Node becomes a census node whose source is kubernetes: the 8 GPUs priced from the catalogue, the
    NotReady node recorded as stale (known, not counted as active), regions from the suanli and topology labels.
    A second sync adds nothing: the census is the same, so nothing is counted twice."""
    with service.client() as admin:
        operator = create_token(admin, "operator")["token"]
        before = census(admin)
    config = cluster.kube.kubeconfig(tmp_path / "kubeconfig")

    first = synced(k8s_sync(service, operator, config, "--json"))
    assert (first["listed"], first["added"], first["refreshed"], first["unusable"]) == (3, 3, 0, 0)
    records = kubernetes_nodes(service)
    assert {records[i]["source"] for i in (cluster.gpu, cluster.cpu, cluster.down)} == {"kubernetes"}
    gpu, cpu, down = records[cluster.gpu], records[cluster.cpu], records[cluster.down]
    assert (gpu["tier"], gpu["region_code"], gpu["organisation"], gpu["accelerators"]) == (
        "ai",
        "440106",
        "city-ai-centre",
        8,
    )
    assert gpu["fp16_flops"] >= 8 * H100_FP16
    assert (cpu["region_code"], cpu["physical_cores"], cpu["threads"]) == ("440111", 32, 64)
    assert cpu["fp64_flops"] == pytest.approx(32 * 2.0e9 * 16)  # AVX2 + FMA: 16 fp64 FLOPs per cycle
    assert down["status"] == "stale"

    with service.client() as admin:
        after = census(admin)
        assert after["totals"]["nodes"] == before["totals"]["nodes"] + 2  # active only; the NotReady one is stale
        assert after["totals"]["accelerators"] == before["totals"]["accelerators"] + 8
        assert census(admin, include="all")["totals"]["nodes"] == before["totals"]["nodes"] + 3

        second = synced(k8s_sync(service, operator, config, "--json"))
        assert (second["added"], second["changed"], second["refreshed"]) == (0, 0, 3)
        assert census(admin) == after


def test_an_agent_on_a_discovered_node_replaces_the_record_and_is_never_counted_twice(
    service: ServiceProcess, cluster: Cluster, tmp_path: Path
) -> None:
    """The agent's node id is the machine id Kubernetes reports: its first report takes the discovered record
    over (source agent, its own figures) without adding a node, and later syncs leave that node to its agent."""
    config = cluster.kube.kubeconfig(tmp_path / "kubeconfig")
    with service.client() as admin:
        operator = create_token(admin, "operator")["token"]
        synced(k8s_sync(service, operator, config, "--json"))
        discovered = census(admin)

        stored(admin, make_report(planned_inventory(cluster.gpu, region="440106")))
        record = kubernetes_nodes(service)[cluster.gpu]
        assert record["source"] == "agent"
        assert census(admin)["totals"]["nodes"] == discovered["totals"]["nodes"]

        again = synced(k8s_sync(service, operator, config, "--json"))
        assert again["has_agent_ids"] == [cluster.gpu]
        assert kubernetes_nodes(service)[cluster.gpu]["source"] == "agent"
        assert census(admin)["totals"]["nodes"] == discovered["totals"]["nodes"]


def test_only_operators_may_record_discovered_nodes_and_bad_input_stores_nothing(
    service: ServiceProcess, cluster: Cluster, tmp_path: Path
) -> None:
    """A planner token is refused (403) and a request naming an unknown region is refused whole (422): in both
    cases the census holds no discovered node afterwards."""
    config = cluster.kube.kubeconfig(tmp_path / "kubeconfig")
    with service.client() as admin:
        planner = create_token(admin, "planner")["token"]
        operator = create_token(admin, "operator")["token"]
        refused = k8s_sync(service, planner, config)
        assert refused.returncode != 0
        assert "403" in refused.stderr
        assert "Traceback" not in refused.stderr

        preview = synced(k8s_sync(service, None, config, "--json", "--dry-run"))
        good = {"name": "gpu-01", "inventory": preview["nodes"][0]["inventory"], "ready": True}
        bad = {**good, "name": "x", "inventory": {**good["inventory"], "labels": {"region": "999999"}}}
        with service.client(operator) as client:
            response = client.post("/v1/nodes/discovered", json={"nodes": [good, bad]})
        assert response.status_code == 422, response.text
        assert "999999" in response.json()["detail"]
        assert not cluster.ids & {n["node_id"] for n in all_nodes(admin)}


# SQLite alone: a dry run sends the service nothing, so no backend's storage is exercised; the discovered nodes'
# storage on PostgreSQL is the first three tests' [postgresql] cases.
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_dry_run_shows_the_cluster_and_sends_nothing(service: ServiceProcess, cluster: Cluster, tmp_path: Path) -> None:
    """`--dry-run` prints each node with its tier and accelerators and the notes on what Kubernetes does not say
    (here: the CPU clock of the unlabelled node), needs no token, and records nothing."""
    result = k8s_sync(service, None, cluster.kube.kubeconfig(tmp_path / "kubeconfig"), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "gpu-01" in result.stdout
    assert "8 x NVIDIA H100 80GB HBM3" in result.stdout
    assert "suanli.io/cpu-base-clock-mhz" in result.stdout
    assert "nothing sent" in result.stdout
    with service.client() as admin:
        assert not cluster.ids & {n["node_id"] for n in all_nodes(admin)}


# SQLite alone: the command fails before it would speak to the service (the cluster is unreachable).
@pytest.mark.parametrize("service", ["sqlite"], indirect=True)
def test_an_unreachable_cluster_is_a_clear_error(service: ServiceProcess, tmp_path: Path) -> None:
    """A kubeconfig pointing at a closed port: exit 1, one line naming the API address, no traceback."""
    with KubeEmulator() as emulator:
        config = emulator.kubeconfig(tmp_path / "kubeconfig")
    config.write_text(config.read_text().replace(emulator.url, f"http://127.0.0.1:{free_port()}"))
    result = k8s_sync(service, None, config, "--dry-run")
    assert result.returncode == 1
    assert "cannot reach the Kubernetes API at http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_service_syncs_the_cluster_on_its_own_schedule(cluster: Cluster, tmp_path: Path) -> None:
    """With SUANLI_K8S_SYNC_INTERVAL_SECONDS set, the service lists the cluster itself: the nodes appear without
    any command, and a node that joins later appears at the next interval."""
    config = cluster.kube.kubeconfig(tmp_path / "kubeconfig")
    process = ServiceProcess(
        f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path, K8S_SYNC_INTERVAL_SECONDS="1", K8S_KUBECONFIG=str(config)
    ).start()
    try:
        deadline = time.monotonic() + 30
        while cluster.gpu not in kubernetes_nodes(process) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cluster.ids <= set(kubernetes_nodes(process))

        late_id = uuid.uuid4().hex
        cluster.kube.put_node(kube_node("cpu-03", late_id, labels={}, capacity={"cpu": "4", "memory": "8Gi"}))
        deadline = time.monotonic() + 30
        while late_id not in kubernetes_nodes(process) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert kubernetes_nodes(process)[late_id]["source"] == "kubernetes"
    finally:
        process.stop()
