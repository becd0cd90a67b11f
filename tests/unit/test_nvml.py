"""NVML collection: the real library's absence on this machine, and fake GPU nodes behind `NvmlApi`."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from census_agent.catalogue import load_default_catalogue
from census_agent.collectors.nvml import NvmlUnavailable, PynvmlApi, scan_gpus
from census_agent.compute import node_peaks
from census_agent.models import (
    ClockSource,
    CpuInfo,
    HostInfo,
    Labels,
    MemoryInfo,
    NodeInventory,
    Precision,
    Provenance,
    Tier,
)
from census_agent.report import ComputeModel
from tests.fakes import GIB, FakeNvml, h100_node, mixed_node

HAS_GPU = Path("/dev/nvidia0").exists()


def _inventory(nvml: FakeNvml) -> NodeInventory:
    scan = scan_gpus(nvml)
    return NodeInventory(
        host=HostInfo(node_id="gpu-node", node_id_source="override", hostname="gpu-node", os="test", kernel="6.1"),
        cpu=CpuInfo(
            architecture="x86_64",
            vendor="GenuineIntel",
            model_name="Intel(R) Xeon(R) Platinum 8480+",
            family=6,
            model=0x8F,
            sockets=2,
            physical_cores=112,
            threads=224,
            base_clock_hz=2.0e9,
            clock_source=ClockSource.SYSFS_BASE_FREQUENCY,
            flags=["avx2", "avx512f", "fma"],
        ),
        memory=MemoryInfo(total_bytes=2048 * GIB, available_bytes=2000 * GIB),
        accelerators=scan.accelerators,
        labels=Labels(),
    )


@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU")
def test_real_nvml_without_library_means_zero_gpus_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """On a machine without libnvidia-ml, the real pynvml path (tried even without a driver's marks) yields no
    GPUs, a clear status, no exception."""
    api = PynvmlApi(driver_marks=None)
    with caplog.at_level(logging.INFO, logger="census_agent.collectors.nvml"):
        scan = scan_gpus(api)
    assert scan.accelerators == []
    assert "NVML unavailable" in scan.status
    assert "Not Found" in scan.status
    assert [r for r in caplog.records if "NVML unavailable" in r.getMessage()]


@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU")
def test_real_pynvml_init_raises_our_unavailable_error() -> None:
    """`PynvmlApi.init` translates pynvml's NVMLError_LibraryNotFound into `NvmlUnavailable`."""
    api = PynvmlApi(driver_marks=None)
    with pytest.raises(NvmlUnavailable, match="nvmlInit"):
        api.init()


def test_eight_h100_node_is_inventoried_field_by_field() -> None:
    """Every NVML field of an 8 x H100 node lands in the inventory, and NVML is shut down after the scan."""
    nvml = h100_node()
    scan = scan_gpus(nvml)
    assert len(scan.accelerators) == 8
    first = scan.accelerators[0]
    assert first.model == "NVIDIA H100 80GB HBM3"
    assert first.compute_capability == "9.0"
    assert first.max_sm_clock_hz == pytest.approx(1.98e9)
    assert first.cuda_cores == 132 * 128
    assert first.memory_bytes == 80 * GIB
    assert first.pci_bus_id == "00000000:18:00.0"
    assert first.mig_enabled is False
    assert [a.index for a in scan.accelerators] == list(range(8))
    assert len({a.uuid for a in scan.accelerators}) == 8
    assert scan.driver_version == "550.54.15"
    assert nvml.calls == ["init", "shutdown"]


def test_eight_h100_node_peaks_come_from_the_catalogue_and_make_it_ai() -> None:
    """8 x H100 SXM: fp16 = 8 x 989.5 TFLOPS dense, fp64 = 8 x 67 (tensor), catalogue provenance; tier ai."""
    inventory = _inventory(h100_node())
    peaks, tier = ComputeModel().assess(inventory)
    gpu_parts = [c for c in peaks.components if c.component.startswith("accelerator:")]
    assert len(gpu_parts) == 8
    assert sum(c.figures[Precision.FP16].flops for c in gpu_parts) == pytest.approx(8 * 989.5e12)
    assert sum(c.figures[Precision.FP64].flops for c in gpu_parts) == pytest.approx(8 * 67e12)
    assert peaks.figures[Precision.FP16].provenance is Provenance.CATALOGUE
    cpu_fp16 = peaks.components[0].figures[Precision.FP16].flops
    assert peaks.figures[Precision.FP16].flops == pytest.approx(8 * 989.5e12 + cpu_fp16)
    assert tier.tier is Tier.AI
    assert "8 accelerator(s)" in tier.reason


def test_mixed_node_keeps_each_model_and_marks_unknown_fields() -> None:
    """A node with A100s, an L4 and an H100 NVL keeps each model; unsupported queries become None."""
    scan = scan_gpus(mixed_node())
    models = [a.model for a in scan.accelerators]
    assert models == ["NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", "NVIDIA L4", "NVIDIA H100 NVL"]
    assert [a.mig_enabled for a in scan.accelerators] == [True, False, False, None]
    assert scan.accelerators[3].cuda_cores is None


def test_mixed_node_peaks_mix_catalogue_formula_and_unknown() -> None:
    """A100 and L4 are priced from the catalogue (L4's empty fp64 cell by formula); the H100 NVL, whose NVML
    gives no core count, is priced from its catalogue row (dense FP16 835.5 TFLOPS, FP64 tensor 60)."""
    peaks = node_peaks(_inventory(mixed_node()), load_default_catalogue())
    parts = {c.component: c for c in peaks.components}
    a100 = parts["accelerator:0"]
    assert a100.model == "A100-SXM4"
    assert a100.figures[Precision.FP16].flops == pytest.approx(312e12)
    assert a100.figures[Precision.FP16].provenance is Provenance.CATALOGUE
    l4 = parts["accelerator:2"]
    assert l4.figures[Precision.FP16].flops == pytest.approx(121e12)
    # Ada (8.9): 2 FP64 lanes per SM, x2 for FMA, 58 SMs at the catalogue's 2.04 GHz boost clock
    assert l4.figures[Precision.FP64].flops == pytest.approx(58 * 2 * 2 * 2.04e9)
    assert l4.figures[Precision.FP64].provenance is Provenance.FORMULA
    nvl = parts["accelerator:3"]
    assert nvl.model == "H100-NVL"
    assert nvl.figures[Precision.FP16].flops == pytest.approx(835.5e12)
    assert nvl.figures[Precision.FP64].flops == pytest.approx(60e12)
    assert all(f.provenance is Provenance.CATALOGUE for f in nvl.figures.values())


def test_nvml_unavailable_gives_zero_gpus_without_raising() -> None:
    """A fake NVML that fails to initialise is the same as no GPUs."""
    scan = scan_gpus(FakeNvml([], unavailable=True))
    assert scan.accelerators == []
    assert "unavailable" in scan.status


def test_nvml_disabled_by_configuration() -> None:
    """`nvml = false` in the config (api None) skips NVML entirely."""
    scan = scan_gpus(None)
    assert scan.accelerators == []
    assert "disabled" in scan.status


def test_nvml_failing_mid_scan_reports_no_gpus_and_still_shuts_down() -> None:
    """If NVML breaks after init (driver unloaded mid-scan) the scan returns no GPUs and releases NVML."""

    class Breaking(FakeNvml):
        def device_count(self) -> int:
            raise NvmlUnavailable("nvmlDeviceGetCount: Driver Not Loaded")

    nvml = Breaking([])
    scan = scan_gpus(nvml)
    assert scan.accelerators == []
    assert "failed during the scan" in scan.status
    assert nvml.calls == ["init", "shutdown"]


def test_without_a_driver_nvml_is_unavailable_and_pynvml_is_never_loaded(tmp_path: Path) -> None:
    """Where no NVIDIA driver shows itself (none of the marks exists), the default adapter says so and the agent
    never loads pynvml (14 MiB resident): checked in a fresh interpreter, with marks under an empty folder."""
    code = (
        "import sys\n"
        "from census_agent.collectors.nvml import default_api, scan_gpus, PynvmlApi\n"
        "assert isinstance(default_api(), PynvmlApi)\n"
        f"scan = scan_gpus(PynvmlApi(driver_marks=[{str(tmp_path / 'nvidiactl')!r}]))\n"
        "print(scan.status)\n"
        "print('pynvml' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    status, loaded = result.stdout.strip().splitlines()
    assert status.startswith("no NVIDIA GPUs: NVML unavailable (no NVIDIA driver on this node")
    assert loaded == "False"


@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU")
def test_with_a_driver_mark_the_library_is_tried(tmp_path: Path) -> None:
    """A present mark lets the adapter load pynvml and try NVML (here failing on the missing library)."""
    mark = tmp_path / "nvidiactl"
    mark.touch()
    with pytest.raises(NvmlUnavailable, match="nvmlInit"):
        PynvmlApi(driver_marks=[str(mark)]).init()
