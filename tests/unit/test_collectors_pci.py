"""Accelerator discovery from the PCI bus, and "never silently zero", against the accelerator server fixtures.

The trees are written by ``tests/fixtures/hosts/generate.py`` (its docstring gives the source of every id).
Expected values are facts about the machines (how many devices of which ids sit where) and the catalogue's own
rows for the figures (``seeds/accelerators.csv``, owned and sourced there), never a number the code printed.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from census_agent.catalogue import CatalogueEntry, accelerator_peaks, load_default_catalogue
from census_agent.collectors.inventory import collect_inventory, merge_accelerators
from census_agent.collectors.nvml import scan_gpus
from census_agent.collectors.pci import (
    PciDevice,
    collect_pci_accelerators,
    is_accelerator,
    normalise_bus_id,
    scan_pci,
)
from census_agent.compute import is_unpriced, unpriced_accelerators
from census_agent.config import DeclaredAccelerator
from census_agent.models import (
    Accelerator,
    AcceleratorSource,
    Labels,
    NodeInventory,
    NodePeaks,
    Precision,
    Provenance,
    Tier,
    TierDecision,
)
from census_agent.render import render_report
from census_agent.report import ComputeModel, build_report
from tests.fakes import FakeGpu, FakeNvml

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
ASCEND = HOSTS / "ascend-910b-kunpeng920"
HYGON = HOSTS / "hygon-dcu-k100ai"
CAMBRICON = HOSTS / "cambricon-mlu370"
MI250X = HOSTS / "epyc-7a53-mi250x"
UNKNOWN = HOSTS / "xeon-e5-2692v2-unknown-npu"
TERA = 1e12


@pytest.fixture(scope="module")
def catalogue() -> tuple[CatalogueEntry, ...]:
    """The shipped catalogue."""
    return load_default_catalogue()


def row(catalogue: tuple[CatalogueEntry, ...], model: str) -> CatalogueEntry:
    """The catalogue row of `model`."""
    return next(e for e in catalogue if e.model == model)


def inventory(root: Path) -> NodeInventory:
    """The fixture's inventory with no NVML and no vendor tool (what sysfs alone gives)."""
    inv, _ = collect_inventory(root, labels=Labels(), declared_accelerators=[], node_id=None, nvml=None)
    return inv


def assess(root: Path) -> tuple[NodeInventory, NodePeaks, TierDecision]:
    """Inventory, peaks and tier of a fixture."""
    inv = inventory(root)
    peaks, tier = ComputeModel().assess(inv)
    return inv, peaks, tier


def accelerator_sum(peaks: NodePeaks, precision: Precision) -> float:
    """The accelerators' part of the node's peak."""
    return sum(c.figures[precision].flops for c in peaks.components if c.component != "cpu")


# --- the sysfs reader ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("00000000:3B:00.0", "0000:3b:00.0"),  # NVML
        ("0000:C1:00.0", "0000:c1:00.0"),  # npu-smi
        ("3b:00.0", "0000:3b:00.0"),  # lspci without the domain
        ("0001:3b:00.7", "0001:3b:00.7"),
        ("not an address", None),
        ("0000:3b:00.8", None),  # functions are 0-7
    ],
)
def test_normalise_bus_id_gives_the_sysfs_form(given: str, expected: str | None) -> None:
    """NVML's and the tools' addresses become sysfs's lower-case domain:bus:device.function; junk is None."""
    assert normalise_bus_id(given) == expected


def test_scan_pci_reads_ids_class_and_numa_node_of_every_function() -> None:
    """The Ascend tree's 14 functions, each with the ids, class and NUMA node its files say."""
    devices = {d.address: d for d in scan_pci(ASCEND)}
    assert len(devices) == 14
    npu = devices["0000:c1:00.0"]
    assert (npu.vendor_id, npu.device_id, npu.class_code, npu.numa_node) == ("19e5", "d802", 0x120000, 6)
    assert (npu.subsystem_vendor_id, npu.subsystem_device_id) == ("19e5", "6000")
    assert devices["0000:06:00.0"].class_code == 0x030000  # the iBMC display


def test_scan_pci_of_a_root_without_pci_devices_is_empty(tmp_path: Path) -> None:
    """A tree with no sys/bus/pci (a container without /sys, the older fixtures) gives no devices, no error."""
    assert scan_pci(tmp_path) == []


def write_function(root: Path, address: str, vendor: int, device: int, klass: int, *, numa: int = -1) -> Path:
    """One PCI function directory as the kernel shows it."""
    path = root / "sys" / "bus" / "pci" / "devices" / address
    path.mkdir(parents=True)
    (path / "vendor").write_text(f"{vendor:#06x}\n")
    (path / "device").write_text(f"{device:#06x}\n")
    (path / "class").write_text(f"{klass:#08x}\n")
    (path / "numa_node").write_text(f"{numa}\n")
    return path


def test_scan_pci_skips_unreadable_functions_and_marks_virtual_functions(tmp_path: Path) -> None:
    """A function without a class file is skipped; one with a physfn link is a virtual function; numa -1 is
    no affinity (None)."""
    write_function(tmp_path, "0000:41:00.0", 0x19E5, 0xD802, 0x120000, numa=-1)
    vf = write_function(tmp_path, "0000:41:00.1", 0x19E5, 0xD802, 0x120000, numa=0)
    (vf / "physfn").symlink_to("../0000:41:00.0")
    broken = write_function(tmp_path, "0000:42:00.0", 0x19E5, 0xD802, 0x120000)
    (broken / "class").unlink()
    devices = scan_pci(tmp_path)
    assert [(d.address, d.numa_node, d.virtual_function) for d in devices] == [
        ("0000:41:00.0", None, False),
        ("0000:41:00.1", 0, True),
    ]
    assert len(collect_pci_accelerators(tmp_path, load_default_catalogue())) == 1  # the VF is not counted twice


# --- which functions are accelerators ------------------------------------------------------------------------


def device(vendor: str, dev: str, klass: int) -> PciDevice:
    """A PCI function for the classification rule."""
    return PciDevice(address="0000:01:00.0", vendor_id=vendor, device_id=dev, class_code=klass)


@pytest.mark.parametrize(
    ("pci", "expected"),
    [
        (device("1f9b", "0001", 0x120000), True),  # processing accelerator, unknown: counted
        (device("10de", "ffff", 0x030200), True),  # 3D controller, unknown: counted
        (device("10de", "2684", 0x030000), True),  # VGA, but a catalogued accelerator (RTX 4090)
        (device("10de", "1d01", 0x030000), False),  # VGA not in the catalogue (a GT 1030): a display
        (device("1a03", "2000", 0x030000), False),  # ASPEED BMC display
        (device("102b", "0534", 0x030000), False),  # Matrox G200eR2 BMC display
        (device("19e5", "1711", 0x030000), False),  # Huawei iBMC display
        (device("19e5", "a250", 0x120000), False),  # Kunpeng ZIP engine: a processing accelerator, not compute
        (device("1d94", "6210", 0x0B4000), True),  # Hygon DCU as a co-processor, id not in the catalogue
        (device("8086", "4940", 0x0B4000), False),  # Intel QAT, a co-processor that is not compute
        (device("1002", "740c", 0x038000), True),  # MI250/MI250X as a display controller: catalogued id
        (device("15b3", "101d", 0x020700), False),  # a ConnectX InfiniBand adapter
    ],
)
def test_is_accelerator_follows_class_catalogue_and_bmc_rules(
    pci: PciDevice, expected: bool, catalogue: tuple[CatalogueEntry, ...]
) -> None:
    """Processing accelerators and 3D controllers count; displays and co-processors only when catalogued (or a
    Hygon co-processor); BMC displays and the Kunpeng ZIP engine never."""
    assert is_accelerator(pci, catalogue) is expected


# --- the fixtures: found, named, priced or unpriced, tiered -------------------------------------------------


def test_ascend_server_shows_eight_priced_ascend_910b_and_no_bmc_or_zip_engine(
    catalogue: tuple[CatalogueEntry, ...],
) -> None:
    """Eight 19e5:d802 NPUs named Ascend 910B by the catalogue row owning the id, with their NUMA nodes; the
    iBMC display and the two ZIP engines are not counted; fp16 is eight times the row's figure; tier AI."""
    inv, peaks, tier = assess(ASCEND)
    accs = inv.accelerators
    assert len(accs) == 8
    assert {(a.vendor, a.model, a.pci_vendor_id, a.pci_device_id, a.source) for a in accs} == {
        ("Huawei", "Ascend 910B", "19e5", "d802", "pci")
    }
    assert [a.pci_bus_id for a in accs] == [f"0000:{b}:00.0" for b in ("01", "02", "41", "42", "81", "82", "c1", "c2")]
    assert [a.numa_node for a in accs] == [0, 0, 2, 2, 4, 4, 6, 6]
    fp16 = row(catalogue, "Ascend 910B").fp16_tensor_flops
    assert fp16 is not None
    assert accelerator_sum(peaks, Precision.FP16) == pytest.approx(8 * fp16)
    assert unpriced_accelerators(peaks) == []
    assert tier.tier is Tier.AI
    assert "8 accelerator(s)" in tier.reason


def test_ascend_910b_precisions_the_catalogue_lacks_are_unpriced_not_formula_zero() -> None:
    """The 910B row gives fp16 only (FP64 basis none): fp32 and int8 are marked unpriced with the reason, FP64 is
    the catalogue's stated zero; the accelerator itself is priced (it has an fp16 figure)."""
    _, peaks, _ = assess(ASCEND)
    npu = peaks.components[1]
    assert npu.figures[Precision.FP16].provenance is Provenance.CATALOGUE
    assert npu.figures[Precision.FP32].provenance is Provenance.UNPRICED
    assert npu.figures[Precision.INT8].provenance is Provenance.UNPRICED
    assert npu.figures[Precision.FP64].provenance is Provenance.CATALOGUE
    assert "unpriced" in npu.note
    assert not is_unpriced(npu)


def test_hygon_server_shows_eight_priced_k100_ai_dcus(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Eight 1d94:6211 co-processors are DCU K100-AI, priced at eight times the row in every precision the row
    gives; Hygon's chipset functions and the ASPEED display are not counted."""
    inv, peaks, tier = assess(HYGON)
    assert len(inv.accelerators) == 8
    assert {(a.vendor, a.model) for a in inv.accelerators} == {("Hygon", "DCU K100-AI")}
    k100 = row(catalogue, "DCU K100-AI")
    assert k100.fp64_flops is not None
    assert k100.fp16_tensor_flops is not None
    assert accelerator_sum(peaks, Precision.FP64) == pytest.approx(8 * k100.fp64_flops)
    assert accelerator_sum(peaks, Precision.FP16) == pytest.approx(8 * k100.fp16_tensor_flops)
    assert unpriced_accelerators(peaks) == []
    assert tier.tier is Tier.AI


def test_cambricon_server_counts_eight_mlu370_unpriced_with_the_reason(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """cabc:0370 names the row owning it (MLU370-S4, which has no figure): eight accelerators counted, each
    unpriced with the reason, and the node is AI by their number."""
    inv, peaks, tier = assess(CAMBRICON)
    assert len(inv.accelerators) == 8
    owner = next(e for e in catalogue if e.pci_vendor_id == "cabc" and "0370" in e.pci_device_ids)
    assert {a.model for a in inv.accelerators} == {owner.model}
    unpriced = unpriced_accelerators(peaks)
    assert len(unpriced) == 8
    assert all("no fp32, fp16, int8 figure" in c.note for c in unpriced)
    assert tier.tier is Tier.AI
    assert "8 unpriced accelerator(s)" in tier.reason


def test_mi250x_node_counts_eight_gcds_unpriced_because_740c_is_shared() -> None:
    """Eight 1002:740c GCDs: the id is shared by MI250 and MI250X, so PCI alone counts them, names both and
    prices neither (a vendor tool decides: see test_vendor_tools); the Matrox BMC display is not counted."""
    inv, peaks, tier = assess(MI250X)
    assert len(inv.accelerators) == 8
    assert {a.model for a in inv.accelerators} == {"Instinct MI250 or Instinct MI250X"}
    assert [a.numa_node for a in inv.accelerators] == [3, 3, 1, 1, 0, 0, 2, 2]
    unpriced = unpriced_accelerators(peaks)
    assert len(unpriced) == 8
    assert all("cannot tell them apart" in c.note for c in unpriced)
    assert tier.tier is Tier.AI


def test_unknown_processing_accelerators_are_counted_unpriced_and_make_the_node_ai() -> None:
    """Eight 1f9b:0001 processing accelerators (an id nobody lists): counted, every figure 0 and unpriced with
    the reason, the ASPEED display left out, and the node is AI by their number though their FLOPS are 0."""
    inv, peaks, tier = assess(UNKNOWN)
    assert len(inv.accelerators) == 8
    assert {(a.vendor, a.model) for a in inv.accelerators} == {("unknown vendor", "device 1f9b:0001")}
    unpriced = unpriced_accelerators(peaks)
    assert len(unpriced) == 8
    for component in unpriced:
        assert all(f.provenance is Provenance.UNPRICED and f.flops == 0 for f in component.figures.values())
        assert "not in the catalogue" in component.note
    assert accelerator_sum(peaks, Precision.FP16) == 0
    assert tier.tier is Tier.AI
    assert "unpriced" in tier.reason


def test_fewer_unpriced_accelerators_than_the_rule_leave_the_node_general(tmp_path: Path) -> None:
    """One unknown accelerator card in the EPYC 9654 server is counted and unpriced, but one card of unknown
    worth does not make a node AI (ai_min_unpriced_accelerators = 4): it stays general."""
    root = tmp_path / "host"
    shutil.copytree(HOSTS / "epyc-9654-zen4", root)
    write_function(root, "0000:41:00.0", 0x1F9B, 0x0001, 0x120000, numa=0)
    inv, peaks, tier = assess(root)
    assert len(inv.accelerators) == 1
    assert len(unpriced_accelerators(peaks)) == 1
    assert tier.tier is Tier.GENERAL


def test_inspect_screen_marks_unpriced_accelerators_and_gives_the_reason() -> None:
    """`inspect`'s screen flags each unpriced device, counts them, shows "unpriced" in the peak table and prints
    the reason."""
    inv = inventory(UNKNOWN)
    report = build_report(
        inv, ComputeModel(), report_id=UUID(int=0), sequence=0, generated_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    screen = render_report(report)
    assert screen.count("UNPRICED") == 8
    assert "Unpriced  8 accelerator(s) counted at 0 FLOPS" in screen
    assert "8 x device 1f9b:0001" in screen
    assert "unpriced" in screen.split("Peak compute", 1)[1]
    assert "not in the catalogue" in screen


# --- merging with NVML ---------------------------------------------------------------------------------------


H100_SXM = 0x2330  # 10de:2330, the catalogue's H100-SXM5 id


def h100(bus: str, uuid: str) -> FakeGpu:
    """What NVML says about one H100 SXM."""
    return FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid=uuid,
        memory_bytes=80 * 2**30,
        cc=(9, 0),
        max_sm_mhz=1980,
        cuda_cores=132 * 128,
        pci_bus_id=bus,
    )


@pytest.fixture
def h100_host(tmp_path: Path) -> Path:
    """The EPYC 9654 tree with two H100 SXM 3D controllers and an ASPEED display on its PCI bus."""
    root = tmp_path / "host"
    shutil.copytree(HOSTS / "epyc-9654-zen4", root)
    write_function(root, "0000:03:00.0", 0x1A03, 0x2000, 0x030000, numa=0)
    write_function(root, "0000:3b:00.0", 0x10DE, H100_SXM, 0x030200, numa=0)
    write_function(root, "0000:bb:00.0", 0x10DE, H100_SXM, 0x030200, numa=1)
    return root


def collect(root: Path, nvml: FakeNvml | None) -> NodeInventory:
    """The inventory of `root` with the given NVML."""
    inv, _ = collect_inventory(root, labels=Labels(), declared_accelerators=[], node_id=None, nvml=nvml)
    return inv


def test_nvml_enriches_the_pci_device_at_the_same_address_and_counts_it_once(h100_host: Path) -> None:
    """NVML's "00000000:3B:00.0" is sysfs's 0000:3b:00.0: two GPUs, not four, each with NVML's UUID and cc and
    sysfs's ids and NUMA node, found by nvml."""
    nvml = FakeNvml([h100("00000000:3B:00.0", "GPU-a"), h100("00000000:BB:00.0", "GPU-b")])
    inv = collect(h100_host, nvml)
    assert [(a.uuid, a.pci_bus_id, a.numa_node, a.pci_device_id, a.source) for a in inv.accelerators] == [
        ("GPU-a", "0000:3b:00.0", 0, "2330", "nvml"),
        ("GPU-b", "0000:bb:00.0", 1, "2330", "nvml"),
    ]
    assert all(a.compute_capability == "9.0" for a in inv.accelerators)


def test_without_nvml_the_pci_bus_still_names_and_prices_the_gpus(
    h100_host: Path, catalogue: tuple[CatalogueEntry, ...]
) -> None:
    """With NVML off (--no-nvml) or absent, the two H100s are named from their PCI id and priced from the row."""
    for nvml in (None, FakeNvml([], unavailable=True)):
        inv = collect(h100_host, nvml)
        assert [(a.model, a.source) for a in inv.accelerators] == [("H100-SXM5", "pci")] * 2
        peaks, _ = ComputeModel().assess(inv)
        fp16 = row(catalogue, "H100-SXM5").fp16_tensor_flops
        assert fp16 is not None
        assert accelerator_sum(peaks, Precision.FP16) == pytest.approx(2 * fp16)


def test_nvml_gpus_sysfs_does_not_show_are_still_counted(h100_host: Path) -> None:
    """A GPU NVML reports at an address sysfs did not show (or with no address) is added, not dropped."""
    nvml = FakeNvml([h100("00000000:3B:00.0", "GPU-a"), h100("00000000:5E:00.0", "GPU-c")])
    inv = collect(h100_host, nvml)
    assert [a.uuid for a in inv.accelerators] == ["GPU-a", None, "GPU-c"]
    assert [a.index for a in inv.accelerators] == [0, 1, 2]


def test_merge_keeps_declared_accelerators_after_the_found_ones(h100_host: Path) -> None:
    """Declared accelerators still add to what was found, after it."""
    inv, _ = collect_inventory(
        h100_host,
        labels=Labels(),
        declared_accelerators=[DeclaredAccelerator(vendor="Huawei", model="Ascend 910", count=2)],
        node_id=None,
        nvml=None,
    )
    assert [a.source for a in inv.accelerators] == ["pci", "pci", "declared", "declared"]
    assert [a.index for a in inv.accelerators] == [0, 1, 2, 3]


def test_merge_accelerators_with_nothing_found_is_empty() -> None:
    """No PCI device, no NVML GPU, no tool: no accelerator (the agent on a plain server)."""
    assert merge_accelerators([], scan_gpus(None).accelerators, {}) == []


# --- which row prices a device: its name or its PCI id ---------------------------------------------------------


def npu(model: str, device_id: str, source: AcceleratorSource = "npu-smi") -> Accelerator:
    """An Ascend device as a vendor tool (or the PCI bus) names it."""
    return Accelerator(
        index=0, vendor="Huawei", model=model, pci_vendor_id="19e5", pci_device_id=device_id, source=source
    )


def test_the_pci_id_decides_when_the_name_belongs_to_another_model(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """npu-smi printing "910B" on a first-generation board (19e5:d801) is priced as the Ascend 910, whose id it
    is, and the note says the id decided."""
    peaks = accelerator_peaks(npu("Ascend 910B", "d801"), catalogue)
    first_gen = row(catalogue, "Ascend 910")
    assert peaks.model == "Ascend 910"
    assert first_gen.fp16_tensor_flops is not None
    assert peaks.figures[Precision.FP16].flops == pytest.approx(first_gen.fp16_tensor_flops)
    assert "the id decides" in peaks.note


def test_a_name_consistent_with_the_pci_id_keeps_its_row(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """ "Ascend 910B" on 19e5:d802, the id its row owns: priced by that row with no override note."""
    peaks = accelerator_peaks(npu("Ascend 910B", "d802"), catalogue)
    assert peaks.model == "Ascend 910B"
    assert "decides" not in peaks.note


def test_a_pci_only_device_is_looked_up_by_its_id_never_by_its_name(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """A device only the PCI bus saw is priced by the row owning its id, whatever its name says ("device
    10de:a100" must not match the A100 pattern)."""
    unknown = Accelerator(
        index=0, vendor="NVIDIA", model="device 10de:a100", pci_vendor_id="10de", pci_device_id="a100", source="pci"
    )
    assert is_unpriced(accelerator_peaks(unknown, catalogue))
