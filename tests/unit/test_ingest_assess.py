"""The ingest's price cache (`Pricer.assess`): what a node reports every interval but the compute model does not
read (host identity, free memory, the NUMA layout that carries it) must not cost a new pricing, and anything the
model does read must."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.ingest.pricing import Pricer
from census_agent.collectors.inventory import collect_inventory
from census_agent.models import Labels, NodeInventory, NodePeaks, TierDecision
from census_agent.report import ComputeModel

HOST = Path(__file__).resolve().parent.parent / "fixtures" / "hosts" / "xeon-platinum-8380-2s"


class CountingModel(ComputeModel):
    """The real compute model, counting how often it is asked."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "calls", [])

    def assess(self, inventory: NodeInventory) -> tuple[NodePeaks, TierDecision]:
        self.calls.append(inventory.host.node_id)  # type: ignore[attr-defined]
        return super().assess(inventory)


@pytest.fixture
def inventory() -> NodeInventory:
    """A real two-socket Xeon's inventory (two NUMA nodes, each with its free memory)."""
    found, _ = collect_inventory(
        HOST, labels=Labels(region="440106"), declared_accelerators=[], node_id="n-1", nvml=None
    )
    assert len(found.cpu.numa_nodes) == 2
    return found


def pricer(model: ComputeModel) -> Pricer:
    return Pricer(model, {"440106", "440112"}, "sqlite")


def test_free_memory_and_host_identity_changes_are_priced_from_the_cache(inventory: NodeInventory) -> None:
    """Another node of the same model, and the same node with other free memory (system-wide and per NUMA node),
    get the first pricing's answer without asking the model again."""
    model = CountingModel()
    ing = pricer(model)
    first = ing.assess(inventory)
    numa = [n.model_copy(update={"memory_available_bytes": 1234 + n.node}) for n in inventory.cpu.numa_nodes]
    later = inventory.model_copy(
        update={
            "host": inventory.host.model_copy(update={"node_id": "n-2", "hostname": "other"}),
            "memory": inventory.memory.model_copy(update={"available_bytes": 42}),
            "cpu": inventory.cpu.model_copy(update={"numa_nodes": numa}),
        }
    )
    assert ing.assess(later) is first
    assert model.calls == ["n-1"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda inv: {"memory": inv.memory.model_copy(update={"total_bytes": 2**30})}, id="memory-size"),
        pytest.param(lambda inv: {"cpu": inv.cpu.model_copy(update={"physical_cores": 8})}, id="cores"),
        pytest.param(lambda inv: {"labels": inv.labels.model_copy(update={"region": "440112"})}, id="labels"),
        pytest.param(lambda inv: {"interconnects": []}, id="interconnects"),
    ],
)
def test_a_change_the_model_reads_is_priced_anew(inventory: NodeInventory, change: object) -> None:
    """Memory size, cores, labels and fabric decide peaks or tier: each change asks the model again, and the
    answer is the model's own for the changed machine."""
    model = CountingModel()
    ing = pricer(model)
    ing.assess(inventory)
    changed = inventory.model_copy(update=change(inventory))  # type: ignore[operator]
    answer = ing.assess(changed)
    assert len(model.calls) == 2  # type: ignore[attr-defined]
    peaks, tier = ComputeModel().assess(changed)
    assert answer.tier == tier
    assert answer.answer == {p.value: f.flops for p, f in peaks.figures.items()}
