"""The on-disk spool: durable, ordered, bounded, restart-safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from census_agent.spool import SEQUENCE_BLOCK, Spool, SpoolError


def _spool(path: Path, max_reports: int = 100, max_bytes: int = 1 << 20) -> Spool:
    return Spool(path, max_reports=max_reports, max_bytes=max_bytes)


def test_reports_come_out_oldest_first(tmp_path: Path) -> None:
    """Entries are handed back in sequence order."""
    spool = _spool(tmp_path)
    for i in range(5):
        spool.append(spool.next_sequence(), f"report {i}".encode())
    seen = []
    while (entry := spool.oldest()) is not None:
        seen.append(entry.read().decode())
        spool.acknowledge(entry)
    assert seen == [f"report {i}" for i in range(5)]
    assert spool.depth == 0
    assert spool.size_bytes == 0


def test_spool_survives_a_restart_with_order_and_sequence_kept(tmp_path: Path) -> None:
    """A new Spool on the same directory sees every unacknowledged report and continues the sequence."""
    first = _spool(tmp_path)
    sequences = [first.next_sequence() for _ in range(3)]
    for seq in sequences:
        first.append(seq, f"r{seq}".encode())
    first.acknowledge(first.pending()[0])
    second = _spool(tmp_path)
    assert [e.sequence for e in second.pending()] == sequences[1:]
    assert second.next_sequence() > sequences[-1]


def test_sequence_keeps_rising_after_the_spool_is_emptied_and_reopened(tmp_path: Path) -> None:
    """Sequence numbers are persisted apart from the reports, so an empty spool never reuses a number, even
    after many restarts and across reservation blocks."""
    highest = 0
    for _restart in range(3):
        spool = _spool(tmp_path)
        for _ in range(SEQUENCE_BLOCK + 5):
            seq = spool.next_sequence()
            assert seq > highest
            highest = seq
            spool.acknowledge(spool.append(seq, b"x"))


def test_sequence_file_is_written_once_per_block_not_per_report(tmp_path: Path) -> None:
    """Reserving numbers touches the sequence file once per block of SEQUENCE_BLOCK reports."""
    spool = _spool(tmp_path)
    sequence_file = tmp_path / "sequence"
    spool.next_sequence()
    assert int(sequence_file.read_text()) == SEQUENCE_BLOCK
    for _ in range(SEQUENCE_BLOCK - 1):
        spool.next_sequence()
    assert int(sequence_file.read_text()) == SEQUENCE_BLOCK
    assert spool.next_sequence() == SEQUENCE_BLOCK + 1
    assert int(sequence_file.read_text()) == 2 * SEQUENCE_BLOCK


def test_over_the_count_bound_the_oldest_are_dropped_and_counted(tmp_path: Path) -> None:
    """With room for 3 reports, appending 5 keeps the newest 3 and counts 2 dropped."""
    spool = _spool(tmp_path, max_reports=3)
    for _ in range(5):
        spool.append(spool.next_sequence(), b"0123456789")
    assert [e.sequence for e in spool.pending()] == [3, 4, 5]
    assert spool.dropped_total == 2
    assert len(list(tmp_path.glob("*.json"))) == 3


def test_over_the_byte_bound_the_oldest_are_dropped(tmp_path: Path) -> None:
    """The byte bound holds too: 10 reports of 1000 bytes in 4096 bytes keep the newest 4."""
    spool = _spool(tmp_path, max_bytes=4096)
    for _ in range(10):
        spool.append(spool.next_sequence(), b"x" * 1000)
    assert spool.size_bytes <= 4096
    assert [e.sequence for e in spool.pending()] == [7, 8, 9, 10]
    assert spool.dropped_total == 6


def test_rejected_reports_are_set_aside_with_their_reason(tmp_path: Path) -> None:
    """A report the server refuses is moved to rejected/ with the reason, and not offered again."""
    spool = _spool(tmp_path)
    entry = spool.append(spool.next_sequence(), b"{}")
    spool.reject(entry, "HTTP 422: region 999999 does not exist")
    assert spool.oldest() is None
    assert spool.rejected_total == 1
    reason = (tmp_path / "rejected" / f"{entry.sequence:020d}.reason").read_text()
    assert "region 999999" in reason
    assert (tmp_path / "rejected" / f"{entry.sequence:020d}.json").read_bytes() == b"{}"


def test_half_written_temp_files_are_cleaned_up_at_start(tmp_path: Path) -> None:
    """A temp file left by a crash mid-write is never taken for a report."""
    (tmp_path / ".tmp-00000000000000000007.json").write_bytes(b'{"trunc')
    spool = _spool(tmp_path)
    assert spool.depth == 0
    assert not list(tmp_path.glob(".tmp-*"))


def test_sequence_must_increase(tmp_path: Path) -> None:
    """Appending an older sequence number than the newest stored one is a programming error."""
    spool = _spool(tmp_path)
    spool.append(5, b"a")
    with pytest.raises(ValueError, match="not after"):
        spool.append(4, b"b")


def test_write_failure_leaves_no_partial_report(tmp_path: Path) -> None:
    """When the disk refuses a write (a file where the spool expects a directory), nothing half-written stays."""
    spool = _spool(tmp_path)
    seq = spool.next_sequence()
    (tmp_path / f"{seq:020d}.json").mkdir()  # rename onto a directory fails like a full disk would
    with pytest.raises(SpoolError):
        spool.append(seq, b"payload")
    assert spool.depth == 0
    assert not list(tmp_path.glob(".tmp-*"))
