"""The pure rules of utilisation and energy: how long each snapshot of a window stands for (gaps count neither as
available nor as used time), and a node's power provenance (measured when its readings cover it, else declared,
else measured-partial), checked on real fixture inventories and the real compute model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.census.utilisation import weights
from api.ingest.usage import parts_of, usage_measures
from census_agent.collectors.inventory import collect_inventory
from census_agent.models import AcceleratorUsage, Labels, NodeInventory, PowerReading, Usage
from census_agent.report import ComputeModel, inventory_from_document

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MODEL = ComputeModel()
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_each_snapshot_stands_until_the_next_at_most_the_gap_limit_and_the_last_until_now() -> None:
    """Snapshots at 0, 10 and 1000 s with a 60 s limit, asked at 1005 s: 10 s, then 60 s (the 930 s gap beyond the
    limit is not counted), then 5 s; none for no snapshot; never negative."""
    assert weights([at(0), at(10), at(1000)], at(1005), 60.0) == [10.0, 60.0, 5.0]
    assert weights([], at(5), 60.0) == []
    assert weights([at(10)], at(5), 60.0) == [0.0]


def dgx(**labels: float) -> NodeInventory:
    """The planned DGX H100 fixture (8 GPUs) with power labels."""
    inventory = inventory_from_document((FIXTURES / "inventories" / "dgx-h100-planned.json").read_text())
    return inventory.model_copy(update={"labels": inventory.labels.model_copy(update=labels)})


def xeon() -> NodeInventory:
    """The dual Xeon 8380 fixture: no accelerator."""
    inventory, _ = collect_inventory(
        FIXTURES / "hosts" / "xeon-platinum-8380-2s", labels=Labels(), declared_accelerators=[], node_id="x", nvml=None
    )
    return inventory


def power(inventory: NodeInventory, usage: Usage | None) -> dict[str, float]:
    peaks, _ = MODEL.assess(inventory)
    return usage_measures(inventory, parts_of(peaks), usage)


def usage(*readings: PowerReading, devices: list[float | None] | None = None) -> Usage:
    return Usage(
        interval_seconds=30,
        cpu_busy_cores=1.0,
        memory_used_bytes=0,
        accelerators=[AcceleratorUsage(index=i, power_watts=w) for i, w in enumerate(devices or [])],
        power=list(readings),
    )


RAPL = PowerReading(watts=500.0, coverage="cpu-package", source="rapl")
NVML = PowerReading(watts=4000.0, coverage="accelerators", source="nvml")


@pytest.mark.parametrize(
    ("inventory", "sent", "expected"),
    [
        # (inventory, usage, (measured W, partial, declared W, facility W))
        (xeon(), usage(RAPL), (500.0, 0, 0.0, 500.0)),
        (dgx(), usage(RAPL, NVML), (4500.0, 0, 0.0, 4500.0)),
        (dgx(site_pue=1.5), usage(RAPL, devices=[500.0] * 8), (4500.0, 0, 0.0, 6750.0)),
        (dgx(power_watts=10_000.0), usage(RAPL), (0.0, 0, 10_000.0, 10_000.0)),
        (dgx(power_watts=10_000.0, site_pue=1.2), None, (0.0, 0, 10_000.0, 12_000.0)),
        (dgx(), usage(RAPL, devices=[500.0] * 7 + [None]), (500.0, 1, 0.0, 500.0)),
        (dgx(), usage(NVML), (4000.0, 1, 0.0, 4000.0)),
        (dgx(), None, (0.0, 0, 0.0, 0.0)),
    ],
    ids=[
        "rapl-covers-cpu-only",
        "rapl-and-nvml-cover-gpu-node",
        "devices-draw-stands-for-nvml-total",
        "declared-beats-uncovering-reading",
        "declared-without-usage-with-pue",
        "one-device-unread-is-partial",
        "nvml-without-rapl-is-partial",
        "nothing-is-no-power",
    ],
)
def test_a_node_counts_its_power_once_measured_where_covered_else_declared_else_partial(
    inventory: NodeInventory, sent: Usage | None, expected: tuple[float, int, float, float]
) -> None:
    """Exactly one of measured and declared (or neither) per node, partial coverage flagged, facility x PUE."""
    values = power(inventory, sent)
    measured, partial, declared, facility = expected
    assert values["measured_watts"] == measured
    assert values["partial_power_nodes"] == partial
    assert values["declared_watts"] == declared
    assert values["facility_watts"] == pytest.approx(facility)
    assert values["measured_power_nodes"] + values["declared_power_nodes"] == (1 if measured or declared else 0)
