"""The audit chain's pure rules: an entry's canonical form and hash, a stored report's digest, and the walk that
names the first entry edited, removed or reordered.

An entry's hash is ``SHA-256(prev_hash || "\\n" || canonical)``, where ``canonical`` is the entry's fields (`FIELDS`)
as compact JSON with sorted keys and ``prev_hash`` the hash of the entry before it (`GENESIS` for the first), so
changing, removing or moving any stored entry breaks the hash of that entry or the link of the next one.  A report
is covered by the entry of the group commit that stored it, which holds `report_digest` of its stored row.

Must not: do I/O, import SQLAlchemy, FastAPI or any module that does (the I/O side is `api.audit.log`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

GENESIS = "0" * 64  # the previous hash of the first entry
FIELDS = ("seq", "at", "action", "actor_id", "actor", "subject", "detail")
REPORT_DIGEST_HEX = 32  # 128 bits of SHA-256 per report: enough that no edit can be made to match it

# The stored columns of a report that its digest covers, in this order (`api.db.tables.reports`).
REPORT_FIELDS = (
    "report_id",
    "node_id",
    "sequence",
    "generated_at",
    "received_at",
    "tier",
    "region_code",
    "physical_cores",
    "threads",
    "accelerators",
    "memory_bytes",
    "fp64_flops",
    "fp32_flops",
    "fp16_flops",
    "int8_ops",
    "applied",
)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode

Kind = Literal["edited", "removed", "reordered"]


def canonical_json(value: Any) -> str:  # noqa: ANN401 - any JSON value
    """`value` as compact JSON with sorted keys (ASCII only): the one text its hash is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def utc_text(value: datetime | str) -> str:
    """A stored time as ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC: what SQLite stores (and hands back as text) and
    what a PostgreSQL timestamp becomes, so a digest does not depend on the backend."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def entry_time(value: datetime) -> str:
    """An entry's time in its canonical form: ISO 8601 in UTC with microseconds (a naive time is taken as UTC)."""
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value.isoformat(timespec="microseconds")


def canonical_entry(  # noqa: PLR0917 - an entry's fields, in `FIELDS` order
    seq: int, at: datetime, action: str, actor_id: int | None, actor: str, subject: str | None, detail: str
) -> str:
    """The canonical text of an entry; `detail` is the stored JSON text itself, so any change to it shows."""
    return canonical_json(
        {
            "seq": seq,
            "at": entry_time(at),
            "action": action,
            "actor_id": actor_id,
            "actor": actor,
            "subject": subject,
            "detail": detail,
        }
    )


def chain_hash(prev_hash: str, canonical: str) -> str:
    """``SHA-256(prev_hash || "\\n" || canonical)`` as hex."""
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def report_digest(values: Sequence[Any]) -> str:
    """The digest of one stored report: `values` are its `REPORT_FIELDS` as the driver writes or reads them, made
    canonical (counts and flags as integers, figures as floats, times as `utc_text`: SQLite's stored text as it is)
    and hashed as a compact JSON list.  About as costly as one small `json.dumps`: it runs for every report."""
    rid, node, seq, generated, received, tier, region, cores, threads, accel, memory, f64, f32, f16, i8, applied = (
        values
    )
    text = _dumps(
        [
            rid,
            node,
            int(seq),
            generated if type(generated) is str else utc_text(generated),
            received if type(received) is str else utc_text(received),
            tier,
            region,
            int(cores),
            int(threads),
            int(accel),
            float(memory),
            float(f64),
            float(f32),
            float(f16),
            float(i8),
            int(applied),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:REPORT_DIGEST_HEX]


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored entry, as read back."""

    seq: int
    at: datetime
    action: str
    actor_id: int | None
    actor: str
    subject: str | None
    detail: str
    prev_hash: str
    hash: str

    def computed_hash(self, seq: int | None = None, prev_hash: str | None = None) -> str:
        """The hash its fields give (as if at `seq` after `prev_hash`, when given)."""
        canonical = canonical_entry(
            self.seq if seq is None else seq, self.at, self.action, self.actor_id, self.actor, self.subject, self.detail
        )
        return chain_hash(self.prev_hash if prev_hash is None else prev_hash, canonical)


@dataclass(frozen=True, slots=True)
class Break:
    """The first place the chain does not hold."""

    seq: int
    kind: Kind
    detail: str


def written_at(entry: Entry, find: Callable[[str], Entry | None], depth: int = 8) -> int | None:
    """The seq `entry` was written at, found through the entry its ``prev_hash`` names (`find`: the stored entry
    with that hash, if any), which may itself have been moved (followed back up to `depth` entries); None if it
    cannot be told (its predecessor is gone, or its own fields were changed)."""
    if entry.prev_hash == GENESIS:
        seq = 1
    else:
        predecessor = find(entry.prev_hash)
        if predecessor is None or depth == 0:
            return None
        if predecessor.computed_hash() == predecessor.hash:
            seq = predecessor.seq + 1
        else:
            earlier = written_at(predecessor, find, depth - 1)
            if earlier is None:
                return None
            seq = earlier + 1
    return seq if entry.computed_hash(seq=seq) == entry.hash else None


class Walk:
    """Walks stored entries in `seq` order (`feed` each) and keeps the first `Break`.

    - a missing sequence number (or a `head` that says the chain is longer than what is stored) is ``removed``;
    - an entry whose fields give its stored hash only at another seq (`written_at`) was moved: ``reordered``;
    - an entry whose fields give its stored hash nowhere is ``edited``;
    - an entry that holds but does not follow the entry stored before it is ``reordered`` if the entry it followed
      is stored elsewhere (moved away), else ``removed`` (what was between them went, and the rest renumbered).
    After a break the walk goes on from the stored values, so later entries are still counted.
    """

    def __init__(self, anchor: tuple[int, str] | None = None) -> None:
        self.anchor = anchor  # (seq, hash) kept outside the database: a chain rewritten whole still fails there
        self.anchor_seen = False
        self.expected_seq = 1
        self.prev_hash = GENESIS
        self.entries = 0
        self.first: Break | None = None

    def feed(self, entry: Entry, find: Callable[[str], Entry | None] | None = None) -> Break | None:
        """Check `entry`, the next stored one; `find` looks a stored entry up by its hash (called only when this
        entry does not hold).  Returns the break this entry shows, if any (the first is also kept in `first`)."""
        found = self._check(entry, find or _nothing)
        if self.anchor is not None and entry.seq == self.anchor[0]:
            self.anchor_seen = True
            if found is None and entry.hash != self.anchor[1]:
                found = Break(entry.seq, "edited", f"entry {entry.seq}'s hash is not the anchored one: rewritten")
        self.entries += 1
        self.expected_seq = entry.seq + 1
        self.prev_hash = entry.hash
        if found is not None and self.first is None:
            self.first = found
        return found

    def _check(self, entry: Entry, find: Callable[[str], Entry | None]) -> Break | None:
        if entry.seq != self.expected_seq:
            gap = self.expected_seq if entry.seq == self.expected_seq + 1 else f"{self.expected_seq}..{entry.seq - 1}"
            return Break(self.expected_seq, "removed", f"entry {gap} is missing before entry {entry.seq}")
        if entry.computed_hash() != entry.hash:
            origin = written_at(entry, find)
            if origin is not None:
                return Break(entry.seq, "reordered", f"entry {entry.seq} was written as entry {origin} and moved here")
            return Break(entry.seq, "edited", f"entry {entry.seq}'s fields do not give its stored hash")
        if entry.prev_hash != self.prev_hash:
            predecessor = find(entry.prev_hash)
            if predecessor is not None:
                return Break(
                    entry.seq,
                    "reordered",
                    f"entry {entry.seq} followed the entry now at {predecessor.seq}, not entry {entry.seq - 1}",
                )
            return Break(entry.seq, "removed", f"entry {entry.seq} does not follow the entry stored before it")
        return None

    def finish(self, head_seq: int | None, head_hash: str | None) -> Break | None:
        """Compare the end of the walk with the chain head recorded beside it, and check that the anchor (if any)
        was met: entries cut from the end show here.  Returns the first break of the whole walk."""
        if head_seq is not None and self.first is None:
            last = self.expected_seq - 1
            if head_seq > last:
                self.first = Break(last + 1, "removed", f"the chain's head is entry {head_seq} but it ends at {last}")
            elif head_seq < last or (head_hash is not None and head_hash != self.prev_hash):
                self.first = Break(
                    head_seq, "edited", f"the chain's head (entry {head_seq}) does not match entry {last}"
                )
        if self.anchor is not None and not self.anchor_seen and self.first is None:
            self.first = Break(self.anchor[0], "removed", f"the anchored entry {self.anchor[0]} is not in the chain")
        return self.first


def _nothing(_hash: str) -> Entry | None:
    return None
