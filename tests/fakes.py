"""Fakes for the hardware seams only: NVML on a machine without GPUs."""

from __future__ import annotations

from dataclasses import dataclass, field

from census_agent.collectors.nvml import NvmlNotSupported, NvmlUnavailable

GIB = 2**30


@dataclass(frozen=True)
class FakeGpu:
    """What NVML would say about one device; None makes the query raise NotSupported."""

    name: str
    uuid: str
    memory_bytes: int
    cc: tuple[int, int]
    max_sm_mhz: int
    cuda_cores: int | None
    pci_bus_id: str
    mig: bool | None = False


@dataclass
class FakeGpuUsage:
    """What NVML would say about one device's use now; None makes that query raise NotSupported."""

    utilisation_percent: int | None = None
    memory_used_bytes: int | None = None
    power_mw: int | None = None
    power_limit_mw: int | None = None


def _usage_field(value: int | None, query: str) -> int:
    if value is None:
        raise NvmlNotSupported(f"{query}: Not Supported")
    return value


@dataclass
class FakeNvml:
    """An `NvmlApi` over a list of fake GPUs; records init/shutdown so tests can check NVML is released."""

    gpus: list[FakeGpu]
    driver: str = "550.54.15"
    unavailable: bool = False
    calls: list[str] = field(default_factory=list)
    usage: dict[str, FakeGpuUsage] = field(default_factory=dict)  # by uuid; a GPU not here supports no usage query

    def init(self) -> None:
        self.calls.append("init")
        if self.unavailable:
            raise NvmlUnavailable("nvmlInit: NVML Shared Library Not Found")

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def driver_version(self) -> str:
        return self.driver

    def device_count(self) -> int:
        return len(self.gpus)

    def handle(self, index: int) -> object:
        return self.gpus[index]

    def _gpu(self, handle: object) -> FakeGpu:
        assert isinstance(handle, FakeGpu)
        return handle

    def name(self, handle: object) -> str:
        return self._gpu(handle).name

    def uuid(self, handle: object) -> str:
        return self._gpu(handle).uuid

    def memory_total_bytes(self, handle: object) -> int:
        return self._gpu(handle).memory_bytes

    def compute_capability(self, handle: object) -> tuple[int, int]:
        return self._gpu(handle).cc

    def max_sm_clock_mhz(self, handle: object) -> int:
        return self._gpu(handle).max_sm_mhz

    def cuda_cores(self, handle: object) -> int:
        cores = self._gpu(handle).cuda_cores
        if cores is None:
            raise NvmlNotSupported("nvmlDeviceGetNumGpuCores: Not Supported")
        return cores

    def pci_bus_id(self, handle: object) -> str:
        return self._gpu(handle).pci_bus_id

    def mig_enabled(self, handle: object) -> bool:
        mig = self._gpu(handle).mig
        if mig is None:
            raise NvmlNotSupported("nvmlDeviceGetMigMode: Not Supported")
        return mig

    def _usage(self, handle: object) -> FakeGpuUsage:
        return self.usage.get(self._gpu(handle).uuid, FakeGpuUsage())

    def utilisation_gpu_percent(self, handle: object) -> int:
        return _usage_field(self._usage(handle).utilisation_percent, "nvmlDeviceGetUtilizationRates")

    def memory_used_bytes(self, handle: object) -> int:
        return _usage_field(self._usage(handle).memory_used_bytes, "nvmlDeviceGetMemoryInfo")

    def power_usage_mw(self, handle: object) -> int:
        return _usage_field(self._usage(handle).power_mw, "nvmlDeviceGetPowerUsage")

    def enforced_power_limit_mw(self, handle: object) -> int:
        return _usage_field(self._usage(handle).power_limit_mw, "nvmlDeviceGetEnforcedPowerLimit")


def h100_node() -> FakeNvml:
    """An 8 x H100 SXM (HGX) node: 132 SMs x 128 lanes, 1980 MHz, 80 GiB each."""
    return FakeNvml(
        [
            FakeGpu(
                name="NVIDIA H100 80GB HBM3",
                uuid=f"GPU-8f3c2a10-0000-4000-8000-00000000000{i}",
                memory_bytes=80 * GIB,
                cc=(9, 0),
                max_sm_mhz=1980,
                cuda_cores=132 * 128,
                pci_bus_id=f"00000000:{0x18 + i * 0x10:02X}:00.0",
            )
            for i in range(8)
        ]
    )


def mixed_node() -> FakeNvml:
    """Two A100 SXM4, one L4, and an H100 NVL (priced from its catalogue row) whose driver lacks two queries."""
    return FakeNvml(
        [
            FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-a100-0", 80 * GIB, (8, 0), 1410, 108 * 64, "00000000:07:00.0", True),
            FakeGpu("NVIDIA A100-SXM4-80GB", "GPU-a100-1", 80 * GIB, (8, 0), 1410, 108 * 64, "00000000:0F:00.0"),
            FakeGpu("NVIDIA L4", "GPU-l4-0", 24 * GIB, (8, 9), 2040, 58 * 128, "00000000:47:00.0"),
            FakeGpu("NVIDIA H100 NVL", "GPU-h100nvl-0", 94 * GIB, (9, 0), 1785, None, "00000000:4E:00.0", None),
        ]
    )
