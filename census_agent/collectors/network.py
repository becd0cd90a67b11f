"""High-performance interconnects from /sys/class/{infiniband,cxi} under an injected root."""

from __future__ import annotations

import re
from pathlib import Path

from census_agent.collectors.files import read_text
from census_agent.models import Interconnect

_RATE = re.compile(r"([0-9.]+)\s*Gb/sec")


def _children(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir(), key=lambda p: p.name)
    except OSError:
        return []


def collect_interconnects(root: Path) -> list[Interconnect]:
    """InfiniBand / RoCE / Omni-Path adapters (one entry per device, fastest port) and Slingshot NICs."""
    found: list[Interconnect] = []
    for device in _children(root / "sys" / "class" / "infiniband"):
        best_rate, kind = None, "infiniband"
        for port in _children(device / "ports"):
            link_layer = (read_text(port / "link_layer") or "").strip().lower()
            rate_match = _RATE.search(read_text(port / "rate") or "")
            rate = float(rate_match.group(1)) * 1e9 if rate_match else None
            if rate is not None and (best_rate is None or rate > best_rate):
                best_rate = rate
            if link_layer == "ethernet":
                kind = "roce"
        if device.name.startswith("hfi1"):
            kind = "omni-path"
        found.append(Interconnect(name=device.name, kind=kind, rate_bits_per_second=best_rate))
    found.extend(Interconnect(name=d.name, kind="slingshot") for d in _children(root / "sys" / "class" / "cxi"))
    return found
