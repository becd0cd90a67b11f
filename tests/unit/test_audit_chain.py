"""The audit chain's pure rules (`api.audit.chain`): a chain built by its own hashing verifies, and any single
edit, removal or move of a stored entry is found at the right entry with the right kind; a report's digest is the
same for both backends' ways of handing its values back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from api.audit.chain import (
    GENESIS,
    REPORT_FIELDS,
    Break,
    Entry,
    Walk,
    canonical_entry,
    chain_hash,
    report_digest,
)
from api.ingest.writer import HISTORY_COLUMNS

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def build(actions: list[str]) -> list[Entry]:
    """A chain of one entry per action, hashed as `api.audit.log.append` hashes them."""
    entries, prev = [], GENESIS
    for seq, action in enumerate(actions, start=1):
        at = START + timedelta(seconds=seq)
        detail = f'{{"n":{seq}}}'
        digest = chain_hash(prev, canonical_entry(seq, at, action, seq % 3 or None, f"actor{seq}", None, detail))
        entries.append(Entry(seq, at, action, seq % 3 or None, f"actor{seq}", None, detail, prev, digest))
        prev = digest
    return entries


def walk(entries: list[Entry], anchor: tuple[int, str] | None = None, head: Entry | None = None) -> Break | None:
    """Walk `entries` as `api.audit.log.verify` does (looking entries up by hash), against `head`."""
    by_hash = {e.hash: e for e in entries}
    w = Walk(anchor)
    for entry in entries:
        w.feed(entry, by_hash.get)
    last = head or (entries[-1] if entries else None)
    return w.finish(last.seq if last else None, last.hash if last else None)


chains = st.lists(
    st.sampled_from(["token.create", "job.submit", "reports.store", "agent.enrol"]), min_size=3, max_size=30
)


@given(chains)
def test_a_chain_as_written_verifies(actions: list[str]) -> None:
    """A chain of any length, walked with its own head and an anchor at any of its entries, has no break."""
    entries = build(actions)
    assert walk(entries) is None
    assert walk(entries, anchor=(2, entries[1].hash)) is None


@given(chains, st.data())
def test_an_edited_field_is_named_as_an_edit_of_that_entry(actions: list[str], data: st.DataObject) -> None:
    """Changing any one stored field of any entry (its hash left as written) breaks at that entry, kind edited."""
    entries = build(actions)
    index = data.draw(st.integers(0, len(entries) - 1))
    change: dict[str, Any] = data.draw(
        st.sampled_from(
            [
                {"action": "token.revoke"},
                {"actor": "mallory"},
                {"actor_id": 999},
                {"subject": "token:1"},
                {"detail": '{"n":0}'},
                {"at": START - timedelta(days=1)},
            ]
        )
    )
    entries[index] = dataclasses.replace(entries[index], **change)
    found = walk(entries)
    assert found is not None
    assert (found.seq, found.kind) == (index + 1, "edited")


@given(chains, st.data())
def test_a_removed_entry_is_named_where_it_is_missing(actions: list[str], data: st.DataObject) -> None:
    """Deleting one entry in the middle breaks at its seq (a gap), kind removed; deleting the last shows against
    the head recorded beside the chain."""
    entries = build(actions)
    head = entries[-1]
    index = data.draw(st.integers(0, len(entries) - 1))
    del entries[index]
    found = walk(entries, head=head)
    assert found is not None
    assert (found.seq, found.kind) == (index + 1, "removed")


@given(chains, st.data())
def test_entries_renumbered_into_another_order_are_named_as_reordered(actions: list[str], data: st.DataObject) -> None:
    """Swapping the places (seq) of two entries breaks at the first of them, kind reordered, naming where it was
    written."""
    entries = build(actions)
    i = data.draw(st.integers(0, len(entries) - 2))
    j = data.draw(st.integers(i + 1, len(entries) - 1))
    a, b = entries[i], entries[j]
    entries[i], entries[j] = dataclasses.replace(b, seq=a.seq), dataclasses.replace(a, seq=b.seq)
    found = walk(entries)
    assert found is not None
    assert (found.seq, found.kind) == (i + 1, "reordered")
    assert f"entry {j + 1}" in found.detail


@settings(max_examples=30)
@given(chains)
def test_a_chain_rewritten_whole_passes_its_own_walk_but_not_an_anchor_kept_elsewhere(actions: list[str]) -> None:
    """An attacker who recomputes every hash after an edit leaves a chain that holds by itself; the hash of an
    entry kept outside the database (the anchor) still shows the rewrite."""
    entries = build(actions)
    anchor = (len(entries), entries[-1].hash)
    rewritten = build(["token.create", *actions[1:]] if actions[0] != "token.create" else ["job.submit", *actions[1:]])
    assert walk(rewritten) is None
    found = walk(rewritten, anchor=anchor)
    assert found is not None
    assert (found.seq, found.kind) == (len(entries), "edited")


def test_the_report_digest_covers_every_stored_history_column_and_no_backend_detail() -> None:
    """The digest covers exactly the `reports` columns the writer stores, in order; SQLite's UTC text and
    PostgreSQL's aware datetimes, and an integer stored in a REAL column read back as a float, give the same
    digest; any changed value gives another."""
    assert REPORT_FIELDS == HISTORY_COLUMNS
    when = datetime(2026, 12, 3, 4, 5, 6, 789012, tzinfo=UTC)
    sqlite_row = ("r1", "n1", 7, "2026-12-03 04:05:06.789012", "2026-12-03 04:05:06.789012", "ai", None,
                  64, 128, 8, 17179869184.0, 1e15, 2e15, 4e15, 8e15, 1)  # fmt: skip
    postgres_row = ("r1", "n1", 7, when, when.astimezone(UTC), "ai", None,
                    64, 128, 8, 17179869184, 1e15, 2e15, 4e15, 8e15, 1)  # fmt: skip
    assert report_digest(sqlite_row) == report_digest(postgres_row)
    for index in range(len(REPORT_FIELDS)):
        changed = list(sqlite_row)
        value = changed[index]
        changed[index] = (
            "2026-12-03 04:05:06.789013" if index in (3, 4) else value + 1 if isinstance(value, (int, float)) else "x"
        )
        assert report_digest(changed) != report_digest(sqlite_row), REPORT_FIELDS[index]
