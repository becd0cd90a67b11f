"""Accelerators from the PCI devices in sysfs, under the injected root: no vendor library needed.

Reads, for each ``<root>/sys/bus/pci/devices/<address>/``: ``vendor``, ``device``, ``class``, ``numa_node``,
``subsystem_vendor``, ``subsystem_device`` and whether ``physfn`` exists (an SR-IOV virtual function, whose
physical function is already counted).  Nothing else: no config space, no driver, no ioctl; it runs as an
unprivileged user and never writes.

Which devices are accelerators (`is_accelerator`):

* processing accelerators (PCI class 0x12) and 3D controllers (0x0302): always, except the few non-compute
  engines listed in `NOT_ACCELERATORS` (the HiSilicon ZIP engine of a Kunpeng 920 is a processing accelerator);
* display controllers (0x03, VGA 0x0300 included) and co-processors (0x0b40): only when the (vendor, device)
  pair is an accelerator in the catalogue, or (co-processors) the vendor's co-processors are its accelerators
  (`COPROCESSOR_ACCELERATOR_VENDORS`, Hygon's DCUs);
* a server's BMC display (ASPEED, Matrox G200, Huawei iBMC; `BMC_DISPLAY`) never, whatever the catalogue says.

Each accelerator is named from the catalogue's ``pci_vendor_id``/``pci_device_ids`` columns: the row owning the
id; an id several rows share (``~740c``: MI250 and MI250X) names them all ("Instinct MI250 or Instinct MI250X")
and prices none; one the catalogue does not know keeps its ids as its name (``device 1f99:0001``) and its vendor
from `PCI_VENDORS`.  Either is still counted (priced as unpriced, never dropped).  This module must not price
anything and must not run programs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from census_agent.catalogue import CatalogueEntry, entries_for_pci, entry_for_pci
from census_agent.collectors.files import read_text
from census_agent.models import Accelerator

log = logging.getLogger(__name__)

MAX_PCI_DEVICES = 4096  # far beyond any real machine; a bound on what one scan reads
_ADDRESS = re.compile(r"^([0-9a-f]{4,8}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")

# Vendor ids -> the vendor name the catalogue uses.  Ids from pci.ids (github.com/pciutils/pciids, the list
# lspci reads); names shortened to the brand.  1d22 is listed as "Baidu Technology": Kunlunxin is Baidu's chip
# company and sells the Kunlun parts.
PCI_VENDORS: dict[str, str] = {
    "10de": "NVIDIA",
    "1002": "AMD",
    "8086": "Intel",
    "19e5": "Huawei",
    "1d94": "Hygon",
    "cabc": "Cambricon",
    "1d22": "Kunlunxin",
    "1ed5": "Moore Threads",
    "1e3e": "Iluvatar CoreX",
    "9999": "MetaX",
    "1e36": "Enflame",
    "1da3": "Habana Labs",
    "1d95": "Graphcore",
    "1e52": "Tenstorrent",
    "1de0": "Groq",
    "1e30": "Sophgo",
    "1e60": "Hailo",
    "1a03": "ASPEED",
    "102b": "Matrox",
}

# Display devices of a server's baseboard management controller: never an accelerator.  pci.ids: 1a03:2000
# "ASPEED Graphics Family" (AST2400/2500/2600 BMCs), Matrox 102b G200 family (G200e/eW/eH/eR2/eW3/eH3, the
# BMC display of Dell, HPE and Lenovo servers), 19e5:1711 "Hi171x Series [iBMC Intelligent Management system
# chip w/VGA support]" (Huawei servers).  A vendor listed with None covers every device of that vendor.
BMC_DISPLAY: dict[str, frozenset[str] | None] = {
    "1a03": None,
    "102b": None,
    "19e5": frozenset({"1711"}),
}

# Processing accelerators (class 0x12) that do no general compute.  pci.ids: 19e5:a250 "HiSilicon ZIP Engine"
# and a251 its virtual function, on-chip compression engines of the Kunpeng 920 that lspci lists as
# "Processing accelerators" (two per two-socket server, at 75:00.0 and b5:00.0 in Huawei's KAE guide).
NOT_ACCELERATORS: frozenset[tuple[str, str]] = frozenset({("19e5", "a250"), ("19e5", "a251")})

# Vendors whose co-processor-class (0x0b40) devices are accelerators even when the catalogue does not know the
# device id: Hygon lists its DCUs as "Co-processor" (PaddleNLP's K100-AI guide shows
# "Co-processor: Chengdu Haiguang IC Design Co., Ltd. Device 6210"); Hygon's CPU engines use other classes.
COPROCESSOR_ACCELERATOR_VENDORS: frozenset[str] = frozenset({"1d94"})


@dataclass(frozen=True, slots=True)
class PciDevice:
    """One PCI function as sysfs shows it."""

    address: str  # domain:bus:device.function, lower case, e.g. 0000:3b:00.0
    vendor_id: str  # four lower-case hex digits
    device_id: str
    class_code: int  # 24 bits: class, subclass, programming interface
    subsystem_vendor_id: str | None = None
    subsystem_device_id: str | None = None
    numa_node: int | None = None  # None where the kernel says -1 (no affinity) or the file is absent
    virtual_function: bool = False


def normalise_bus_id(bus_id: str) -> str | None:
    """A PCI address in sysfs form (``0000:3b:00.0``) from NVML's or a vendor tool's (``00000000:3B:00.0``,
    ``3b:00.0``); None when it is not an address."""
    text = bus_id.strip().lower()
    if text.count(":") == 1:
        text = "0000:" + text
    match = _ADDRESS.match(text)
    if match is None:
        return None
    domain, bus, device, function = match.groups()
    return f"{int(domain, 16):04x}:{bus}:{device}.{function}"


def _hex_id(path: Path) -> str | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        value = int(text.strip(), 16)
    except ValueError:
        return None
    return f"{value:04x}" if 0 <= value <= 0xFFFF else None


def _read_device(entry: Path) -> PciDevice | None:
    address = normalise_bus_id(entry.name)
    vendor, device = _hex_id(entry / "vendor"), _hex_id(entry / "device")
    class_text = read_text(entry / "class")
    if address is None or vendor is None or device is None or class_text is None:
        return None
    try:
        class_code = int(class_text.strip(), 16)
    except ValueError:
        return None
    numa_text = read_text(entry / "numa_node")
    try:
        numa = int(numa_text.strip()) if numa_text is not None else None
    except ValueError:
        numa = None
    return PciDevice(
        address=address,
        vendor_id=vendor,
        device_id=device,
        class_code=class_code,
        subsystem_vendor_id=_hex_id(entry / "subsystem_vendor"),
        subsystem_device_id=_hex_id(entry / "subsystem_device"),
        numa_node=numa if numa is not None and 0 <= numa <= 4096 else None,
        virtual_function=(entry / "physfn").exists(),
    )


def scan_pci(root: Path) -> list[PciDevice]:
    """Every readable PCI function under ``<root>/sys/bus/pci/devices``, by address; [] where there is none."""
    base = root / "sys" / "bus" / "pci" / "devices"
    try:
        entries = sorted(base.iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    if len(entries) > MAX_PCI_DEVICES:
        log.warning("%d PCI devices under %s: reading the first %d", len(entries), base, MAX_PCI_DEVICES)
        entries = entries[:MAX_PCI_DEVICES]
    return [device for entry in entries if (device := _read_device(entry)) is not None]


def is_bmc_display(device: PciDevice) -> bool:
    """Whether the device is a BMC's display (never an accelerator)."""
    if device.vendor_id not in BMC_DISPLAY:
        return False
    ids = BMC_DISPLAY[device.vendor_id]
    return ids is None or device.device_id in ids


def is_accelerator(device: PciDevice, catalogue: tuple[CatalogueEntry, ...]) -> bool:
    """Whether the PCI function is an accelerator (see the module's docstring for the rule)."""
    if device.virtual_function or is_bmc_display(device):
        return False
    klass, subclass = device.class_code >> 16, (device.class_code >> 8) & 0xFF
    if klass == 0x12 or (klass == 0x03 and subclass == 0x02):
        return (device.vendor_id, device.device_id) not in NOT_ACCELERATORS
    known = bool(entries_for_pci(catalogue, device.vendor_id, device.device_id))
    if klass == 0x03:
        return known
    if klass == 0x0B and subclass == 0x40:
        return known or device.vendor_id in COPROCESSOR_ACCELERATOR_VENDORS
    return False


def pci_accelerators(devices: list[PciDevice], catalogue: tuple[CatalogueEntry, ...]) -> list[Accelerator]:
    """The accelerators among `devices`, in address order, named from the catalogue where it knows the ids."""
    found: list[Accelerator] = []
    for device in devices:
        if not is_accelerator(device, catalogue):
            continue
        owner = entry_for_pci(catalogue, device.vendor_id, device.device_id)
        candidates = entries_for_pci(catalogue, device.vendor_id, device.device_id)
        if owner is not None:
            vendor, model = owner.vendor, owner.model
        elif candidates:  # an id several models share: named by all of them, priced by none
            vendor, model = candidates[0].vendor, " or ".join(e.model for e in candidates)
        else:
            vendor = PCI_VENDORS.get(device.vendor_id, "unknown vendor")
            model = f"device {device.vendor_id}:{device.device_id}"
        found.append(
            Accelerator(
                index=len(found),
                vendor=vendor,
                model=model,
                pci_bus_id=device.address,
                pci_vendor_id=device.vendor_id,
                pci_device_id=device.device_id,
                numa_node=device.numa_node,
                source="pci",
            )
        )
    return found


def collect_pci_accelerators(root: Path, catalogue: tuple[CatalogueEntry, ...]) -> list[Accelerator]:
    """The accelerators on the PCI bus of the machine whose /sys lies under `root`."""
    return pci_accelerators(scan_pci(root), catalogue)
