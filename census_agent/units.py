"""Units humanised for the terminal (TFLOPS, PFLOPS, GiB) and plain aligned tables. Pure string building.

Kept apart from `census_agent.render` (which renders reports and so loads their pydantic models) so that the
`suanli` client commands, which print tables of figures the service sends, start without those models.

Pure: must import nothing but the standard library.
"""

from __future__ import annotations

import unicodedata

_FLOPS_UNITS = ((1e18, "EFLOPS"), (1e15, "PFLOPS"), (1e12, "TFLOPS"), (1e9, "GFLOPS"), (1e6, "MFLOPS"))
_BYTE_UNITS = ((2**50, "PiB"), (2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def human_flops(value: float, *, ops: bool = False) -> str:
    """``2.34 TFLOPS`` (or ``TOPS`` for integer ops)."""
    for scale, unit in _FLOPS_UNITS:
        if abs(value) >= scale:
            text = f"{value / scale:,.2f} {unit}"
            return text.replace("FLOPS", "OPS") if ops else text
    return f"{value:,.0f} {'OPS' if ops else 'FLOPS'}"


def human_bytes(value: float) -> str:
    """``23.4 GiB``."""
    for scale, unit in _BYTE_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value:,.0f} B"


def width(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide characters (Chinese names) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(rows: list[list[str]], header: list[str] | None = None) -> str:
    """A plain aligned text table (aligned by display width, so Chinese labels line up)."""
    body = ([header] if header else []) + rows
    widths = [max(width(r[i]) for r in body) for i in range(len(body[0]))] if body else []
    lines = ["  ".join(cell + " " * (widths[i] - width(cell)) for i, cell in enumerate(row)).rstrip() for row in body]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
