"""Main memory from /proc/meminfo under an injected root (psutil where there is no /proc)."""

from __future__ import annotations

from pathlib import Path

import psutil

from census_agent.collectors.files import parse_kv, read_text
from census_agent.models import MemoryInfo


def collect_memory(root: Path) -> MemoryInfo:
    """Total and available bytes. Falls back to psutil only for the live machine without /proc (not Linux)."""
    text = read_text(root / "proc" / "meminfo")
    if text is None and root == Path("/"):
        vm = psutil.virtual_memory()
        return MemoryInfo(total_bytes=int(vm.total), available_bytes=int(vm.available))
    fields = parse_kv(text or "")

    def kib(key: str) -> int | None:
        value = fields.get(key)
        return int(value.split()[0]) * 1024 if value else None

    total = kib("MemTotal")
    if total is None:
        raise RuntimeError(f"no MemTotal in {root / 'proc' / 'meminfo'}")
    available = kib("MemAvailable")
    if available is None:  # kernels before 3.14
        available = (kib("MemFree") or 0) + (kib("Cached") or 0) + (kib("Buffers") or 0)
    return MemoryInfo(total_bytes=total, available_bytes=min(available, total))
