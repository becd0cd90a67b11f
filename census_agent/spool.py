"""A bounded, crash-safe, ordered on-disk queue of report documents.

Every report is written here (temp file, fsync, rename, fsync of the directory) before any attempt to send
it, and removed only once the server has acknowledged it, so a report survives the agent's crash, a reboot
and an unreachable server.  Files are named by the report's sequence number, so the oldest is sent first and
order is kept across restarts.  Past `max_reports` or `max_bytes` the oldest reports are dropped (and
counted); a report the server refuses as invalid is moved to ``rejected/`` rather than retried forever.

Not thread-safe: one agent loop owns it.  It knows nothing of HTTP or of what a report contains.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_ENTRY = re.compile(r"^(\d{20})\.json$")
_SEQUENCE_FILE = "sequence"
_REJECTED_DIR = "rejected"
_REJECTED_KEEP = 100
# Sequence numbers are reserved in blocks: the file holds the highest number handed out or about to be, so it is
# written once per block instead of once per report, and a restart skips the rest of the block (never reuses).
SEQUENCE_BLOCK = 1000


class SpoolError(OSError):
    """The spool cannot be written (disk full, permissions): the report was not stored."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One stored report."""

    sequence: int
    path: Path
    size: int

    def read(self) -> bytes:
        """The stored document."""
        return self.path.read_bytes()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SpoolError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc


class Spool:
    """The on-disk queue in `directory` (created if missing)."""

    def __init__(self, directory: Path, *, max_reports: int, max_bytes: int) -> None:
        self.directory = directory
        self.max_reports = max_reports
        self.max_bytes = max_bytes
        self.dropped_total = 0
        self.rejected_total = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / _REJECTED_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot create spool directory {directory}: {exc.strerror}") from exc
        for stale in directory.glob(".tmp-*"):  # a write the agent died in the middle of was never acknowledged
            stale.unlink(missing_ok=True)
        self._entries: list[SpoolEntry] = sorted(
            (
                SpoolEntry(int(m.group(1)), p, p.stat().st_size)
                for p in directory.iterdir()
                if (m := _ENTRY.match(p.name))
            ),
            key=lambda e: e.sequence,
        )
        self._bytes = sum(e.size for e in self._entries)
        highest = self._entries[-1].sequence if self._entries else 0
        self._last_sequence = max(self._read_sequence(), highest)
        self._reserved_until = self._last_sequence

    def _read_sequence(self) -> int:
        try:
            return int((self.directory / _SEQUENCE_FILE).read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    @property
    def depth(self) -> int:
        """How many reports wait to be sent."""
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of the reports that wait."""
        return self._bytes

    def next_sequence(self) -> int:
        """Reserve the next sequence number. Numbers keep rising across restarts (with a gap after one)."""
        if self._last_sequence >= self._reserved_until:
            reserve = self._last_sequence + SEQUENCE_BLOCK
            _write_atomic(self.directory / _SEQUENCE_FILE, str(reserve).encode())
            self._reserved_until = reserve
        self._last_sequence += 1
        return self._last_sequence

    def append(self, sequence: int, document: bytes) -> SpoolEntry:
        """Store a report durably; then drop the oldest while over a bound. Raises `SpoolError`."""
        if self._entries and sequence <= self._entries[-1].sequence:
            raise ValueError(f"sequence {sequence} is not after {self._entries[-1].sequence}")
        path = self.directory / f"{sequence:020d}.json"
        _write_atomic(path, document)
        entry = SpoolEntry(sequence, path, len(document))
        self._entries.append(entry)
        self._bytes += entry.size
        while len(self._entries) > 1 and (len(self._entries) > self.max_reports or self._bytes > self.max_bytes):
            oldest = self._entries[0]
            self._discard(oldest)
            self.dropped_total += 1
            log.warning(
                "spool over its bound (%d reports, %d bytes): dropped the oldest report, sequence %d",
                self.max_reports,
                self.max_bytes,
                oldest.sequence,
            )
        return entry

    def oldest(self) -> SpoolEntry | None:
        """The report to send next, if any."""
        return self._entries[0] if self._entries else None

    def pending(self) -> list[SpoolEntry]:
        """Every waiting report, oldest first."""
        return list(self._entries)

    def acknowledge(self, entry: SpoolEntry) -> None:
        """The server has stored `entry`: forget it."""
        self._discard(entry)

    def reject(self, entry: SpoolEntry, reason: str) -> None:
        """The server refused `entry` as invalid: keep it aside for a person, never resend it."""
        rejected = self.directory / _REJECTED_DIR
        try:
            entry.path.replace(rejected / entry.path.name)
            (rejected / f"{entry.path.stem}.reason").write_text(reason + "\n", encoding="utf-8")
        except OSError:
            entry.path.unlink(missing_ok=True)
        self._entries.remove(entry)
        self._bytes -= entry.size
        self.rejected_total += 1
        kept = sorted(rejected.glob("*.json"))
        for old in kept[:-_REJECTED_KEEP]:
            old.unlink(missing_ok=True)
            old.with_suffix(".reason").unlink(missing_ok=True)

    def _discard(self, entry: SpoolEntry) -> None:
        entry.path.unlink(missing_ok=True)
        self._entries.remove(entry)
        self._bytes -= entry.size
