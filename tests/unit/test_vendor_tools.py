"""Vendor tools: the parsers on recorded sample outputs, the runner with real (fake) executables on PATH.

The samples in ``tests/fixtures/vendor_tools/`` are written from each tool's documented format (its README says
so; none was captured from a machine) at the PCI addresses of the fixture trees.  The runner tests start real
processes: tiny shell scripts named like the tools, in a temporary directory the test puts on PATH.
"""

from __future__ import annotations

import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from census_agent.catalogue import CatalogueEntry, load_default_catalogue
from census_agent.collectors import vendor_tools
from census_agent.collectors.inventory import collect_inventory
from census_agent.collectors.vendor_tools import (
    TOOLS,
    VendorFacts,
    collect_vendor_facts,
    parse_amd_smi_static,
    parse_cnmon_info,
    parse_hy_smi_json,
    parse_npu_smi_info,
    run_tool,
    vendor_usage,
)
from census_agent.compute import unpriced_accelerators
from census_agent.models import Labels, NodeInventory, Precision
from census_agent.report import ComputeModel

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_tools"
HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
MIB = 2**20


def sample(name: str) -> str:
    """A recorded sample output."""
    return (SAMPLES / name).read_text(encoding="utf-8")


# --- parsers ---------------------------------------------------------------------------------------------------


def test_npu_smi_info_gives_model_address_hbm_and_aicore_use_of_each_npu() -> None:
    """Eight 910B3 rows: "Ascend 910B3" at each Bus-Id (lower-cased), 65536 MB HBM, the HBM in use and the
    AICore share; the process table below is not read as devices."""
    facts = parse_npu_smi_info(sample("npu-smi-info-910b3.txt"))
    assert [f.pci_bus_id for f in facts] == [f"0000:{b}:00.0" for b in ("01", "02", "41", "42", "81", "82", "c1", "c2")]
    assert {(f.tool, f.vendor, f.model, f.memory_bytes) for f in facts} == {
        ("npu-smi", "Huawei", "Ascend 910B3", 65536 * MIB)
    }
    busy = facts[2]
    assert busy.utilisation == pytest.approx(0.87)
    assert busy.memory_used_bytes == 61210 * MIB
    assert facts[0].utilisation == 0


def test_amd_smi_static_gives_market_name_address_and_vram() -> None:
    """Eight GCDs: "AMD Instinct MI250X" at each bdf, 64 GiB of HBM each (65536 MB)."""
    facts = parse_amd_smi_static(sample("amd-smi-static-mi250x.json"))
    assert [f.pci_bus_id for f in facts] == [f"0000:{b}:00.0" for b in ("c1", "c6", "c9", "ce", "d1", "d6", "d9", "de")]
    assert {(f.model, f.memory_bytes) for f in facts} == {("AMD Instinct MI250X", 65536 * MIB)}


def test_amd_smi_static_accepts_the_older_size_string_and_the_gpu_data_wrapper() -> None:
    """Older amd-smi prints the size as "65536 MB"; newer wraps the list in {"gpu_data": [...]}: both read."""
    text = (
        '{"gpu_data": [{"gpu": 0, "asic": {"market_name": "MI300X"}, "bus": {"bdf": "0000:0c:00.0"}, '
        '"vram": {"size": "192 GB"}}]}'
    )
    (fact,) = parse_amd_smi_static(text)
    assert (fact.pci_bus_id, fact.model, fact.memory_bytes) == ("0000:0c:00.0", "MI300X", 192 * 1024 * MIB)


def test_hy_smi_json_gives_series_address_vram_and_use() -> None:
    """Eight cards: K100_AI at each PCI Bus, 64 GiB of VRAM, used bytes and DCU use."""
    facts = parse_hy_smi_json(sample("hy-smi-k100ai.json"))
    assert len(facts) == 8
    assert {(f.model, f.memory_bytes) for f in facts} == {("K100_AI", 64 * 2**30)}
    assert facts[1].pci_bus_id == "0000:3a:00.0"
    assert facts[1].utilisation == pytest.approx(0.93)
    assert facts[1].memory_used_bytes == 52_613_349_376


def test_cnmon_info_gives_product_address_memory_and_use_of_each_card() -> None:
    """Eight cards: MLU370-X8, the address built from the PCI section, 48 GiB, used MiB and MLU average use."""
    facts = parse_cnmon_info(sample("cnmon-info-mlu370-x8.txt"))
    assert [f.pci_bus_id for f in facts] == [f"0000:{b}:00.0" for b in ("1a", "1b", "3d", "3e", "9c", "9d", "bc", "bd")]
    assert {(f.model, f.memory_bytes) for f in facts} == {("MLU370-X8", 49152 * MIB)}
    assert facts[1].utilisation == pytest.approx(0.78)
    assert facts[1].memory_used_bytes == 40960 * MIB


@pytest.mark.parametrize(
    "parse",
    [parse_npu_smi_info, parse_cnmon_info],
)
def test_text_parsers_read_nothing_from_unrelated_text(parse: Callable[[str], list[VendorFacts]]) -> None:
    """An error message instead of the table gives no facts (and no exception)."""
    assert parse("dcmi model initialized failed, because the device is used. ret is -8020\n") == []


@pytest.mark.parametrize("parse", [parse_amd_smi_static, parse_hy_smi_json])
def test_json_parsers_refuse_text_that_is_not_json(parse: Callable[[str], list[VendorFacts]]) -> None:
    """Not JSON: ValueError, which the runner turns into "ignored"."""
    with pytest.raises(ValueError, match="Expecting value"):
        parse("ERROR: amdgpu driver not loaded")


# --- the runner: real processes ---------------------------------------------------------------------------------


def install(bin_dir: Path, name: str, body: str) -> None:
    """An executable shell script `name` in `bin_dir`."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def on(bin_dir: Path) -> Callable[[str], str | None]:
    """`shutil.which` looking only in `bin_dir` (the tools are never looked for elsewhere in a test)."""
    return lambda name: shutil.which(name, path=str(bin_dir))


NPU_SMI = next(t for t in TOOLS if t.name == "npu-smi")
AMD_SMI = next(t for t in TOOLS if t.name == "amdsmi")


def test_runner_runs_the_tool_on_path_and_parses_what_it_prints(tmp_path: Path) -> None:
    """A fake npu-smi that prints the sample (and checks it got exactly `info`) gives the eight NPUs."""
    install(tmp_path, "npu-smi", f'[ "$*" = "info" ] || exit 9\ncat "{SAMPLES / "npu-smi-info-910b3.txt"}"')
    facts = run_tool(NPU_SMI, which=on(tmp_path))
    assert len(facts) == 8


def test_runner_ignores_a_missing_tool(tmp_path: Path) -> None:
    """No tool on PATH: no facts, no process, no error."""
    assert run_tool(NPU_SMI, which=on(tmp_path)) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("echo 'dcmi init failed' >&2; exit 3", "exited with status 3"),
        ("echo not-json", "cannot read"),
        ("head -c 2000000 /dev/zero | tr '\\0' x", "could not be run"),
    ],
)
def test_runner_logs_and_ignores_a_failing_garbled_or_flooding_tool(
    tmp_path: Path, body: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-zero exit, unreadable output, or more than 1 MiB of output: no facts, one warning saying why."""
    install(tmp_path, "amd-smi", body)
    assert run_tool(AMD_SMI, which=on(tmp_path)) == []
    assert message in caplog.text


def test_runner_kills_a_tool_that_hangs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tool still running at the timeout is killed with its children (the sleep holding its output open) and
    ignored; the inventory does not wait for it."""
    monkeypatch.setattr(vendor_tools, "TIMEOUT_SECONDS", 0.5)
    install(tmp_path, "npu-smi", "sleep 30\necho late")
    started = time.monotonic()
    assert run_tool(NPU_SMI, which=on(tmp_path)) == []
    assert time.monotonic() - started < 5


def test_collect_vendor_facts_runs_every_installed_tool(tmp_path: Path) -> None:
    """With npu-smi and cnmon installed (and the others absent) the facts of both come back by address."""
    install(tmp_path, "npu-smi", f'cat "{SAMPLES / "npu-smi-info-910b3.txt"}"')
    install(tmp_path, "cnmon", f'cat "{SAMPLES / "cnmon-info-mlu370-x8.txt"}"')
    facts = collect_vendor_facts(which=on(tmp_path))
    assert {f.tool for f in facts.values()} == {"npu-smi", "cnmon"}
    assert len(facts) == 16


# --- what the tools add to the inventory ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue() -> tuple[CatalogueEntry, ...]:
    """The shipped catalogue."""
    return load_default_catalogue()


def inventory_with(root: Path, bin_dir: Path) -> NodeInventory:
    """The fixture's inventory with the vendor tools installed in `bin_dir`."""
    inv, _ = collect_inventory(
        root,
        labels=Labels(),
        declared_accelerators=[],
        node_id=None,
        nvml=None,
        vendor_facts=lambda: collect_vendor_facts(which=on(bin_dir)),
    )
    return inv


def test_amd_smi_names_the_shared_id_mi250x_and_each_gcd_is_half_a_module(
    tmp_path: Path, catalogue: tuple[CatalogueEntry, ...]
) -> None:
    """PCI alone cannot tell MI250 from MI250X (1002:740c); amd-smi's market name can: eight GCDs, no more, now
    MI250X, each priced at half the per-module row, so the node holds four modules' worth."""
    install(tmp_path, "amd-smi", f'cat "{SAMPLES / "amd-smi-static-mi250x.json"}"')
    inv = inventory_with(HOSTS / "epyc-7a53-mi250x", tmp_path)
    assert len(inv.accelerators) == 8
    assert {(a.model, a.source, a.memory_bytes) for a in inv.accelerators} == {
        ("AMD Instinct MI250X", "amdsmi", 64 * 2**30)
    }
    peaks, _ = ComputeModel().assess(inv)
    module = next(e for e in catalogue if e.model == "Instinct MI250X")
    assert module.fp64_tensor_flops is not None
    fp64 = sum(c.figures[Precision.FP64].flops for c in peaks.components if c.component != "cpu")
    assert fp64 == pytest.approx(4 * module.fp64_tensor_flops)
    assert unpriced_accelerators(peaks) == []
    assert "1/2" in peaks.components[1].note


def test_npu_smi_bin_without_figures_is_priced_by_the_family_row_of_its_pci_id(
    tmp_path: Path, catalogue: tuple[CatalogueEntry, ...]
) -> None:
    """npu-smi says 910B3, a bin the catalogue has no figure for: the device keeps that name and memory, and is
    priced by the row owning its PCI id (Ascend 910B), with a note; still eight devices."""
    install(tmp_path, "npu-smi", f'cat "{SAMPLES / "npu-smi-info-910b3.txt"}"')
    inv = inventory_with(HOSTS / "ascend-910b-kunpeng920", tmp_path)
    assert {(a.model, a.source, a.memory_bytes) for a in inv.accelerators} == {("Ascend 910B3", "npu-smi", 64 * 2**30)}
    peaks, _ = ComputeModel().assess(inv)
    family = next(e for e in catalogue if e.model == "Ascend 910B")
    assert family.fp16_tensor_flops is not None
    npu = peaks.components[1]
    assert npu.figures[Precision.FP16].flops == pytest.approx(family.fp16_tensor_flops)
    assert "priced as Ascend 910B" in npu.note


def test_cnmon_names_the_mlu370_x8_and_prices_it(tmp_path: Path, catalogue: tuple[CatalogueEntry, ...]) -> None:
    """cnmon's product name turns the eight unpriced cabc:0370 devices into priced MLU370-X8 cards."""
    install(tmp_path, "cnmon", f'cat "{SAMPLES / "cnmon-info-mlu370-x8.txt"}"')
    inv = inventory_with(HOSTS / "cambricon-mlu370", tmp_path)
    assert {a.model for a in inv.accelerators} == {"MLU370-X8"}
    peaks, _ = ComputeModel().assess(inv)
    card = next(e for e in catalogue if e.model == "MLU370-X8")
    assert card.fp16_tensor_flops is not None
    fp16 = sum(c.figures[Precision.FP16].flops for c in peaks.components if c.component != "cpu")
    assert fp16 == pytest.approx(8 * card.fp16_tensor_flops)
    assert unpriced_accelerators(peaks) == []


def test_vendor_usage_matches_each_accelerator_by_address(tmp_path: Path) -> None:
    """hy-smi's use and memory in use become AcceleratorUsage rows for the matching indexes."""
    install(tmp_path, "hy-smi", f'cat "{SAMPLES / "hy-smi-k100ai.json"}"')
    facts = collect_vendor_facts(which=on(tmp_path))
    inv = inventory_with(HOSTS / "hygon-dcu-k100ai", tmp_path)
    usage = vendor_usage(facts, inv.accelerators)
    assert [u.index for u in usage] == list(range(8))
    assert usage[1].utilisation == pytest.approx(0.93)
    assert usage[1].memory_used_bytes == 52_613_349_376
