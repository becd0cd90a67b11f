"""What the accelerator vendors' own tools add, where one is installed: never required, never trusted blindly.

Runs, when found on PATH, AMD ``amd-smi static --asic --bus --vram --json``, Huawei ``npu-smi info``, Hygon
``hy-smi`` (a rocm-smi derivative, asked for JSON) and Cambricon ``cnmon info``; each as an argument list (no
shell), with a short timeout and its output cut at `MAX_OUTPUT_BYTES`.  A tool that is absent, fails, times out
or prints something unparsable is logged once and ignored: the PCI scan has already counted the devices, and a
tool only adds facts (the precise model name, memory, and where the same output has them, utilisation and
memory in use) to the device at the same PCI address.

The parsers are pure functions of the text (tested on recorded samples in tests/fixtures/vendor_tools/); the
runner is the only part that starts a process.  This module must not write anything, must not run a tool
through a shell or with arguments built from its own output, and must not fail the inventory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from census_agent.collectors.pci import normalise_bus_id
from census_agent.models import Accelerator, AcceleratorUsage

log = logging.getLogger(__name__)

ToolName = Literal["amdsmi", "npu-smi", "hy-smi", "cnmon"]
TIMEOUT_SECONDS = 10.0
MAX_OUTPUT_BYTES = 1 << 20  # 1 MiB: cnmon info on a 16-card node prints well under 100 KiB
MIB = 2**20


@dataclass(frozen=True, slots=True)
class VendorFacts:
    """What one vendor tool says about the device at one PCI address; None where it said nothing."""

    tool: ToolName
    pci_bus_id: str  # sysfs form, 0000:c1:00.0
    vendor: str
    model: str | None = None
    memory_bytes: int | None = None
    utilisation: float | None = None  # 0..1 over the tool's own sampling window
    memory_used_bytes: int | None = None


# --- parsers (pure) -------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _number(text: object) -> float | None:
    match = _NUMBER.search(str(text))
    return float(match.group()) if match else None


def _fraction(percent: object) -> float | None:
    value = _number(percent)
    return None if value is None or not 0 <= value <= 100 else value / 100


def _mib(value: float | None) -> int | None:
    return None if value is None or value < 0 else int(value * MIB)


_NPU_NAME_ROW = re.compile(r"^\|\s*(\d+)\s+(\S+)\s*\|")
_NPU_BUS_ROW = re.compile(r"^\|\s*\d+\s*\|\s*([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*\|(.*)\|")
_USED_TOTAL = re.compile(r"(\d+)\s*/\s*(\d+)")


def parse_npu_smi_info(text: str) -> list[VendorFacts]:
    """``npu-smi info``: each NPU is two table rows, ``| NPU Name | Health | Power Temp Hugepages |`` then
    ``| Chip | Bus-Id | AICore(%) Memory-Usage(MB) HBM-Usage(MB) |`` (Huawei's npu-smi reference).  The model
    is "Ascend " + Name; memory is the HBM total where the chip has HBM, else the DDR total."""
    facts: list[VendorFacts] = []
    name: str | None = None
    for line in text.splitlines():
        if (row := _NPU_NAME_ROW.match(line)) is not None and "Name" not in line:
            name = row.group(2)
            continue
        bus = _NPU_BUS_ROW.match(line)
        if bus is None or name is None:
            continue
        address = normalise_bus_id(bus.group(1))
        cells = bus.group(2)
        pairs = [(int(u), int(t)) for u, t in _USED_TOTAL.findall(cells)]
        used, total = next(((u, t) for u, t in reversed(pairs) if t > 0), (None, None))
        aicore = cells.split()[0] if cells.split() else ""
        if address is not None:
            facts.append(
                VendorFacts(
                    tool="npu-smi",
                    pci_bus_id=address,
                    vendor="Huawei",
                    model=f"Ascend {name}",
                    memory_bytes=_mib(total),
                    utilisation=_fraction(aicore) if aicore.replace(".", "", 1).isdigit() else None,
                    memory_used_bytes=_mib(used),
                )
            )
        name = None
    return facts


def _size_mib(value: object) -> float | None:
    """amd-smi's VRAM size: ``{"value": 65536, "unit": "MB"}`` (ROCm 6.1+), ``"65536 MB"`` or a bare number."""
    if isinstance(value, dict):
        number, unit = _number(value.get("value")), str(value.get("unit", "MB")).upper()
    else:
        number, unit = _number(value), str(value).upper()
    if number is None:
        return None
    return number * 1024 if "GB" in unit else number


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def parse_amd_smi_static(text: str) -> list[VendorFacts]:
    """``amd-smi static --asic --bus --vram --json``: a list (or ``{"gpu_data": [...]}``) of GPUs, each with
    ``asic.market_name``, ``bus.bdf`` and ``vram.size`` (AMD SMI CLI reference, ROCm 6)."""
    data: Any = json.loads(text)
    if isinstance(data, dict):
        data = data.get("gpu_data", [data])
    facts: list[VendorFacts] = []
    for gpu in data if isinstance(data, list) else []:
        if not isinstance(gpu, dict):
            continue
        asic, bus, vram = (_section(gpu, k) for k in ("asic", "bus", "vram"))
        address = normalise_bus_id(str(bus.get("bdf", "")))
        if address is None:
            continue
        name = str(asic.get("market_name", "")).strip()
        facts.append(
            VendorFacts(
                tool="amdsmi",
                pci_bus_id=address,
                vendor="AMD",
                model=name or None,
                memory_bytes=_mib(_size_mib(vram.get("size", vram.get("vram_size_mb")))),
            )
        )
    return facts


def parse_hy_smi_json(text: str) -> list[VendorFacts]:
    """``hy-smi --showproductname --showbus --showmeminfo vram --showuse --json``, rocm-smi's JSON layout:
    ``{"card0": {"Card series": ..., "PCI Bus": ..., "VRAM Total Memory (B)": ..., "VRAM Total Used Memory (B)":
    ..., "DCU use (%)": ...}}`` (rocm-smi names the last one "GPU use (%)"; both are read)."""
    data: Any = json.loads(text)
    facts: list[VendorFacts] = []
    for key, card in data.items() if isinstance(data, dict) else []:
        if not (isinstance(key, str) and key.startswith("card") and isinstance(card, dict)):
            continue
        address = normalise_bus_id(str(card.get("PCI Bus", "")))
        if address is None:
            continue
        name = next((str(card[k]).strip() for k in ("Card series", "Card SKU", "Card model") if card.get(k)), "")
        use = next((v for k, v in card.items() if re.fullmatch(r"(DCU|GPU) use \(%\)", str(k))), None)
        total, used = _number(card.get("VRAM Total Memory (B)")), _number(card.get("VRAM Total Used Memory (B)"))
        facts.append(
            VendorFacts(
                tool="hy-smi",
                pci_bus_id=address,
                vendor="Hygon",
                model=name or None,
                memory_bytes=int(total) if total is not None and total >= 0 else None,
                utilisation=_fraction(use) if use is not None else None,
                memory_used_bytes=int(used) if used is not None and used >= 0 else None,
            )
        )
    return facts


_CARD = re.compile(r"^Card\s+(\d+)\s*$")
_KEY_VALUE = re.compile(r"^(\s*)([^:]+?)\s*:\s*(.*?)\s*$")


def _cnmon_block(lines: list[str]) -> dict[str, str]:
    """One card's ``Key : Value`` lines, nested keys joined with "/" (``PCI/Bus num``)."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in lines:
        match = _KEY_VALUE.match(line)
        if match is None:
            continue
        indent, key, value = len(match.group(1)), match.group(2).strip(), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "/".join([k for _, k in stack] + [key])
        if value:
            out.setdefault(path, value)
        else:
            stack.append((indent, key))
    return out


def parse_cnmon_info(text: str) -> list[VendorFacts]:
    """``cnmon info``: one block per ``Card N`` of indented ``Key : Value`` lines with sections (Cambricon CNMon
    user guide): ``Product Name``, ``Physical Memory Usage`` (``Total``, ``Used`` in MiB), ``Utilization``
    (``MLU Average`` in %) and ``PCI`` (``Domain ID``, ``Bus num``, ``Device``, ``Function``)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if _CARD.match(line.strip()):
            blocks.append([])
        elif blocks:
            blocks[-1].append(line)
    facts: list[VendorFacts] = []
    for block in blocks:
        card = _cnmon_block(block)
        pci = [card.get(f"PCI/{k}") for k in ("Domain ID", "Bus num", "Device", "Function")]
        if any(p is None for p in pci):
            continue
        address = normalise_bus_id(f"{pci[0]}:{pci[1]}:{pci[2]}.{pci[3]}")
        if address is None:
            continue
        facts.append(
            VendorFacts(
                tool="cnmon",
                pci_bus_id=address,
                vendor="Cambricon",
                model=card.get("Product Name") or None,
                memory_bytes=_mib(_number(card.get("Physical Memory Usage/Total", ""))),
                utilisation=_fraction(card.get("Utilization/MLU Average", "")),
                memory_used_bytes=_mib(_number(card.get("Physical Memory Usage/Used", ""))),
            )
        )
    return facts


@dataclass(frozen=True, slots=True)
class VendorTool:
    """One tool: its executable, the fixed arguments it is run with, and the parser of its output."""

    name: ToolName
    executable: str
    arguments: tuple[str, ...]
    parse: Callable[[str], list[VendorFacts]]


TOOLS: tuple[VendorTool, ...] = (
    VendorTool("amdsmi", "amd-smi", ("static", "--asic", "--bus", "--vram", "--json"), parse_amd_smi_static),
    VendorTool("npu-smi", "npu-smi", ("info",), parse_npu_smi_info),
    VendorTool(
        "hy-smi",
        "hy-smi",
        ("--showproductname", "--showbus", "--showmeminfo", "vram", "--showuse", "--json"),
        parse_hy_smi_json,
    ),
    VendorTool("cnmon", "cnmon", ("info",), parse_cnmon_info),
)


# --- the runner (the only part that starts a process) -------------------------------------------------------------


def run_tool(tool: VendorTool, *, which: Callable[[str], str | None] = shutil.which) -> list[VendorFacts]:
    """Run one tool if it is on PATH and parse what it printed; [] (logged) on any failure."""
    path = which(tool.executable)
    if path is None:
        return []
    try:
        with subprocess.Popen(  # a fixed argument list, no shell
            [path, *tool.arguments],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a timeout ends the tool's children too
        ) as process:
            assert process.stdout is not None  # stdout=PIPE makes it so
            try:
                output = _read_bounded(process, TIMEOUT_SECONDS)
            finally:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
            code = process.wait(timeout=TIMEOUT_SECONDS)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("%s could not be run (%s); ignoring it", tool.executable, exc)
        return []
    if code != 0:
        log.warning("%s exited with status %d; ignoring it", tool.executable, code)
        return []
    try:
        facts = tool.parse(output.decode("utf-8", errors="replace"))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("%s printed output the agent cannot read (%s); ignoring it", tool.executable, exc)
        return []
    log.info("%s: %d device(s)", tool.executable, len(facts))
    return facts


class _Truncated(subprocess.SubprocessError):
    """The tool printed more than `MAX_OUTPUT_BYTES`."""


def _read_bounded(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """Up to `MAX_OUTPUT_BYTES` of the process's stdout within `timeout` seconds (raises past either bound)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(process.args, timeout)
            if not selector.select(left):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_OUTPUT_BYTES:
                raise _Truncated(f"more than {MAX_OUTPUT_BYTES} bytes of output")
            chunks.append(chunk)


def collect_vendor_facts(
    tools: tuple[VendorTool, ...] = TOOLS, *, which: Callable[[str], str | None] = shutil.which
) -> dict[str, VendorFacts]:
    """Facts from every installed vendor tool, by PCI address (the first tool to name an address wins)."""
    facts: dict[str, VendorFacts] = {}
    for tool in tools:
        for fact in run_tool(tool, which=which):
            facts.setdefault(fact.pci_bus_id, fact)
    return facts


def vendor_usage(facts: dict[str, VendorFacts], accelerators: list[Accelerator]) -> list[AcceleratorUsage]:
    """Per-accelerator utilisation and memory in use from the tools' facts, matched to each accelerator's index
    by PCI address (the Usage contract's `AcceleratorUsage`); accelerators the tools did not describe are left
    out."""
    usage: list[AcceleratorUsage] = []
    for acc in accelerators:
        address = normalise_bus_id(acc.pci_bus_id) if acc.pci_bus_id else None
        fact = facts.get(address) if address else None
        if fact is None or (fact.utilisation is None and fact.memory_used_bytes is None):
            continue
        usage.append(
            AcceleratorUsage(index=acc.index, utilisation=fact.utilisation, memory_used_bytes=fact.memory_used_bytes)
        )
    return usage
