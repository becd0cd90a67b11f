"""NVIDIA GPUs through NVML, behind the small `NvmlApi` interface (the hardware seam tests fake).

`PynvmlApi` adapts the real ``pynvml`` (nvidia-ml-py) module; it turns NVML's errors into two of ours:
`NvmlUnavailable` (no library, no driver, init failed: the node has no usable NVIDIA GPU) and
`NvmlNotSupported` (this device does not answer this query: the field stays unknown).  A missing NVML is
never a crash: it is zero GPUs and one clear log line.  The ``pynvml`` module (about 14 MiB resident once loaded)
is imported only on a node where an NVIDIA driver shows itself (`NVIDIA_DRIVER_MARKS`), which keeps the agent
small everywhere else.  `read_gpu_usage` reads each device's utilisation,
memory used and power every cycle (with NVML left initialised by its caller); it never changes the inventory.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from census_agent.models import MAX_BYTES, MAX_WATTS, Accelerator, AcceleratorUsage

log = logging.getLogger(__name__)
T = TypeVar("T")


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this node (library not found, driver not loaded, init failed)."""


class NvmlNotSupported(RuntimeError):
    """The device does not support this query."""


class NvmlApi(Protocol):
    """The NVML queries the agent makes. Handles are opaque."""

    def init(self) -> None:
        """Initialise NVML; raises `NvmlUnavailable`."""

    def shutdown(self) -> None:
        """Release NVML."""

    def driver_version(self) -> str:
        """The NVIDIA driver version."""

    def device_count(self) -> int:
        """How many GPUs NVML sees."""

    def handle(self, index: int) -> object:
        """The device handle at `index`."""

    def name(self, handle: object) -> str:
        """Product name, e.g. ``NVIDIA H100 80GB HBM3``."""

    def uuid(self, handle: object) -> str:
        """Device UUID (``GPU-...``)."""

    def memory_total_bytes(self, handle: object) -> int:
        """Framebuffer memory in bytes."""

    def compute_capability(self, handle: object) -> tuple[int, int]:
        """CUDA compute capability (major, minor)."""

    def max_sm_clock_mhz(self, handle: object) -> int:
        """Maximum SM clock in MHz."""

    def cuda_cores(self, handle: object) -> int:
        """CUDA core count (SMs x FP32 lanes)."""

    def pci_bus_id(self, handle: object) -> str:
        """PCI bus id, e.g. ``00000000:17:00.0``."""

    def mig_enabled(self, handle: object) -> bool:
        """Whether MIG mode is currently on; raises `NvmlNotSupported` on GPUs without MIG."""

    # --- usage, read each cycle (`read_gpu_usage`); each raises `NvmlNotSupported` where the device cannot say

    def utilisation_gpu_percent(self, handle: object) -> int:
        """Percent of the last sample period (1/6 s to 1 s) a kernel ran (``utilization.gpu``)."""

    def memory_used_bytes(self, handle: object) -> int:
        """Framebuffer memory in use, in bytes."""

    def power_usage_mw(self, handle: object) -> int:
        """Current power draw of the board, in milliwatts."""

    def enforced_power_limit_mw(self, handle: object) -> int:
        """The power limit the driver enforces now, in milliwatts."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# Where an NVIDIA driver shows itself: its procfs directory, its control device, or WSL2's GPU device (where
# NVML is a library of the Windows driver). Without any of them NVML cannot work, so pynvml is not loaded.
NVIDIA_DRIVER_MARKS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg")


class PynvmlApi:
    """`NvmlApi` over the real nvidia-ml-py bindings, loaded on the first `init` where a driver is present.

    `driver_marks` are the paths of which one must exist for NVML to be tried (None: always try, for tests of the
    library path); a missing package is an ImportError here, at construction, without loading it.
    """

    def __init__(self, driver_marks: Sequence[str] | None = NVIDIA_DRIVER_MARKS) -> None:
        if importlib.util.find_spec("pynvml") is None:
            raise ImportError("No module named 'pynvml' (nvidia-ml-py)")
        self._marks = driver_marks
        self._module: Any = None

    @property
    def _nvml(self) -> Any:  # noqa: ANN401 - the pynvml module
        if self._module is None:
            self._module = importlib.import_module("pynvml")
        return self._module

    def _call(self, fn: str, *args: object) -> Any:  # noqa: ANN401 - NVML returns many types
        nvml = self._nvml
        try:
            return getattr(nvml, fn)(*args)
        except (nvml.NVMLError_NotSupported, nvml.NVMLError_FunctionNotFound, AttributeError) as exc:
            raise NvmlNotSupported(f"{fn}: {exc}") from exc
        except (
            nvml.NVMLError_LibraryNotFound,
            nvml.NVMLError_DriverNotLoaded,
            nvml.NVMLError_Uninitialized,
        ) as exc:
            raise NvmlUnavailable(f"{fn}: {exc}") from exc

    def init(self) -> None:
        """See `NvmlApi.init`; `NvmlUnavailable` at once, pynvml not loaded, where no driver shows itself."""
        if self._marks is not None and not any(os.path.exists(mark) for mark in self._marks):
            raise NvmlUnavailable(f"no NVIDIA driver on this node (none of {', '.join(self._marks)})")
        try:
            self._call("nvmlInit")
        except self._nvml.NVMLError as exc:
            raise NvmlUnavailable(f"nvmlInit: {exc}") from exc

    def shutdown(self) -> None:
        """See `NvmlApi.shutdown`."""
        self._call("nvmlShutdown")

    def driver_version(self) -> str:
        """See `NvmlApi.driver_version`."""
        return _text(self._call("nvmlSystemGetDriverVersion"))

    def device_count(self) -> int:
        """See `NvmlApi.device_count`."""
        return int(self._call("nvmlDeviceGetCount"))

    def handle(self, index: int) -> object:
        """See `NvmlApi.handle`."""
        return self._call("nvmlDeviceGetHandleByIndex", index)

    def name(self, handle: object) -> str:
        """See `NvmlApi.name`."""
        return _text(self._call("nvmlDeviceGetName", handle))

    def uuid(self, handle: object) -> str:
        """See `NvmlApi.uuid`."""
        return _text(self._call("nvmlDeviceGetUUID", handle))

    def memory_total_bytes(self, handle: object) -> int:
        """See `NvmlApi.memory_total_bytes`."""
        return int(self._call("nvmlDeviceGetMemoryInfo", handle).total)

    def compute_capability(self, handle: object) -> tuple[int, int]:
        """See `NvmlApi.compute_capability`."""
        major, minor = self._call("nvmlDeviceGetCudaComputeCapability", handle)
        return int(major), int(minor)

    def max_sm_clock_mhz(self, handle: object) -> int:
        """See `NvmlApi.max_sm_clock_mhz`."""
        return int(self._call("nvmlDeviceGetMaxClockInfo", handle, self._nvml.NVML_CLOCK_SM))

    def cuda_cores(self, handle: object) -> int:
        """See `NvmlApi.cuda_cores`."""
        return int(self._call("nvmlDeviceGetNumGpuCores", handle))

    def pci_bus_id(self, handle: object) -> str:
        """See `NvmlApi.pci_bus_id`."""
        return _text(self._call("nvmlDeviceGetPciInfo", handle).busId)

    def mig_enabled(self, handle: object) -> bool:
        """See `NvmlApi.mig_enabled`."""
        current, _pending = self._call("nvmlDeviceGetMigMode", handle)
        return bool(current == self._nvml.NVML_DEVICE_MIG_ENABLE)

    # --- usage: any NVML error of one field (not only NotSupported: a GPU lost mid-cycle, a timeout) leaves that
    # field unknown; only a library or driver that is gone (`NvmlUnavailable`) ends the cycle's reading.

    def _field(self, fn: str, *args: object) -> Any:  # noqa: ANN401 - NVML returns many types
        try:
            return self._call(fn, *args)
        except (NvmlUnavailable, NvmlNotSupported):
            raise
        except self._nvml.NVMLError as exc:
            raise NvmlNotSupported(f"{fn}: {exc}") from exc

    def utilisation_gpu_percent(self, handle: object) -> int:
        """See `NvmlApi.utilisation_gpu_percent`."""
        return int(self._field("nvmlDeviceGetUtilizationRates", handle).gpu)

    def memory_used_bytes(self, handle: object) -> int:
        """See `NvmlApi.memory_used_bytes`."""
        return int(self._field("nvmlDeviceGetMemoryInfo", handle).used)

    def power_usage_mw(self, handle: object) -> int:
        """See `NvmlApi.power_usage_mw`."""
        return int(self._field("nvmlDeviceGetPowerUsage", handle))

    def enforced_power_limit_mw(self, handle: object) -> int:
        """See `NvmlApi.enforced_power_limit_mw`."""
        return int(self._field("nvmlDeviceGetEnforcedPowerLimit", handle))


@dataclass(frozen=True, slots=True)
class GpuScan:
    """What one NVML scan found, and a status line for logs and `inspect`."""

    accelerators: list[Accelerator]
    driver_version: str | None
    status: str


def _optional(fn: Callable[..., T], *args: object) -> T | None:
    try:
        return fn(*args)
    except NvmlNotSupported:
        return None


def scan_gpus(api: NvmlApi | None) -> GpuScan:
    """Every NVIDIA GPU NVML reports. No NVML (or `api` None) gives zero GPUs, logged once, never raised."""
    if api is None:
        return GpuScan([], None, "NVML disabled by configuration")
    try:
        api.init()
    except NvmlUnavailable as exc:
        status = f"no NVIDIA GPUs: NVML unavailable ({exc})"
        log.info("%s", status)
        return GpuScan([], None, status)
    try:
        driver = _optional(api.driver_version)
        found: list[Accelerator] = []
        for index in range(api.device_count()):
            handle = api.handle(index)
            cc = _optional(api.compute_capability, handle)
            clock_mhz = _optional(api.max_sm_clock_mhz, handle)
            found.append(
                Accelerator(
                    index=index,
                    vendor="NVIDIA",
                    model=api.name(handle),
                    uuid=_optional(api.uuid, handle),
                    memory_bytes=_optional(api.memory_total_bytes, handle),
                    compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
                    max_sm_clock_hz=clock_mhz * 1e6 if clock_mhz else None,
                    cuda_cores=_optional(api.cuda_cores, handle),
                    pci_bus_id=_optional(api.pci_bus_id, handle),
                    mig_enabled=_optional(api.mig_enabled, handle),
                    source="nvml",
                )
            )
    except (NvmlUnavailable, NvmlNotSupported) as exc:
        status = f"NVML failed during the scan: {exc}; reporting no NVIDIA GPUs"
        log.warning("%s", status)
        return GpuScan([], None, status)
    finally:
        with contextlib.suppress(NvmlUnavailable, NvmlNotSupported):
            api.shutdown()
    return GpuScan(found, driver, f"{len(found)} NVIDIA GPU(s) via NVML, driver {driver or 'unknown'}")


def pci_key(bus_id: str) -> str | None:
    """A PCI address in one spelling (``0000:17:00.0``) whether NVML's (``00000000:17:00.0``, upper case) or
    sysfs's; None when `bus_id` is not a PCI address."""
    parts = bus_id.strip().lower().split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    if len(parts) != 3 or "." not in parts[2]:
        return None
    device, _, function = parts[2].partition(".")
    try:
        return f"{int(parts[0], 16):04x}:{int(parts[1], 16):02x}:{int(device, 16):02x}.{int(function, 16):x}"
    except ValueError:
        return None


def _watts(milliwatts: int | None) -> float | None:
    return milliwatts / 1000 if milliwatts is not None and 0 <= milliwatts <= MAX_WATTS * 1000 else None


def read_gpu_usage(api: NvmlApi, accelerators: Sequence[Accelerator]) -> list[AcceleratorUsage]:
    """Utilisation, memory used, power draw and enforced power limit of each NVML device that is one of
    `accelerators`, as `AcceleratorUsage` under that accelerator's index.  NVML must be initialised by the caller.

    Matching: by PCI bus id where the accelerator has one (NVML's ``00000000:17:00.0`` and sysfs's
    ``0000:17:00.0`` are the same address); else an accelerator found by NVML (``source == "nvml"``) without a bus
    id is matched by its NVML index, which is its `Accelerator.index` (`scan_gpus` numbers them so).  A device
    matched to no accelerator is skipped.  A field the device cannot report is None; raises `NvmlUnavailable`
    only when NVML itself is gone."""
    by_bus = {key: a.index for a in accelerators if a.pci_bus_id and (key := pci_key(a.pci_bus_id))}
    by_nvml_index = {a.index: a.index for a in accelerators if a.source == "nvml" and not a.pci_bus_id}
    found: list[AcceleratorUsage] = []
    seen: set[int] = set()
    for nvml_index in range(api.device_count()):
        handle = _optional(api.handle, nvml_index)
        if handle is None:
            continue
        bus = _optional(api.pci_bus_id, handle)
        key = pci_key(bus) if bus else None
        index = by_bus.get(key) if key else None
        if index is None:
            index = by_nvml_index.get(nvml_index)
        if index is None or index in seen:
            continue
        seen.add(index)
        percent = _optional(api.utilisation_gpu_percent, handle)
        used = _optional(api.memory_used_bytes, handle)
        found.append(
            AcceleratorUsage(
                index=index,
                utilisation=percent / 100 if percent is not None and 0 <= percent <= 100 else None,
                memory_used_bytes=used if used is not None and 0 <= used <= MAX_BYTES else None,
                power_watts=_watts(_optional(api.power_usage_mw, handle)),
                power_limit_watts=_watts(_optional(api.enforced_power_limit_mw, handle)),
            )
        )
    return sorted(found, key=lambda u: u.index)


def default_api() -> NvmlApi | None:
    """The real NVML adapter, or None when the nvidia-ml-py package itself is missing."""
    try:
        return PynvmlApi()
    except ImportError:
        log.info("nvidia-ml-py is not installed: NVIDIA GPUs will not be inventoried")
        return None
