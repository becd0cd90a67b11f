"""The audit chain in the database: append an entry inside the transaction of the act it records, list entries,
and verify the stored chain and the reports it covers.

`append` must be the last statement of its transaction: it locks the chain's head row (PostgreSQL: ``SELECT ... FOR
UPDATE``; SQLite: every write transaction holds the database's write lock from ``BEGIN IMMEDIATE``,
`api.db.engine.write_transaction`), so concurrent writers, replicas included, append one after another and never fork
the chain, and taking that lock last (after any row locks of the act) cannot deadlock with another appender.  An act
and its entry commit together or not at all.  This module must not decide who may act (the routes do) nor commit
anything itself.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine

from api.audit.chain import (
    REPORT_FIELDS,
    Break,
    Entry,
    Walk,
    canonical_entry,
    canonical_json,
    chain_hash,
    report_digest,
)
from api.auth import Principal
from api.db import read_time, storage_time

ENTRY_COLUMNS = ("seq", "at", "action", "actor_id", "actor", "subject", "detail", "prev_hash", "hash")
REPORTS_STORED = "reports.store"
START = "audit.start"
SETTINGS = "settings.change"
PAGE = 1000  # entries read per query while verifying
MAX_NAMED = 20  # mismatching reports named in a verification (all are counted)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a token (its id and name) or the service itself (id None)."""

    id: int | None
    name: str


SERVICE = Actor(None, "service")


def actor_of(principal: Principal) -> Actor:
    """The actor a request's principal is recorded as."""
    return Actor(principal.token_id, principal.name)


class Statements:
    """The chain's driver SQL for one dialect (values only through placeholders)."""

    def __init__(self, dialect: str) -> None:
        mark = "?" if dialect == "sqlite" else "%s"
        self.time = storage_time(dialect)
        self.read_time = read_time(dialect)
        self.head = "SELECT seq, hash FROM audit_head WHERE id = 1"
        self.lock_head = self.head + (" FOR UPDATE" if dialect == "postgresql" else "")
        columns = ", ".join(ENTRY_COLUMNS)
        self.insert = f"INSERT INTO audit_log ({columns}) VALUES ({', '.join([mark] * len(ENTRY_COLUMNS))})"  # noqa: S608
        # Fixed text: the placeholders are the only variable part of these statements.
        self.move_head = f"UPDATE audit_head SET seq = {mark}, hash = {mark} WHERE id = 1"  # noqa: S608
        self.page = f"SELECT {columns} FROM audit_log WHERE seq > {mark} ORDER BY seq LIMIT {PAGE}"  # noqa: S608
        self.by_hash = f"SELECT {columns} FROM audit_log WHERE hash = {mark} ORDER BY seq LIMIT 1"  # noqa: S608
        self.mark = mark
        fields = ", ".join(REPORT_FIELDS)
        self.reports_of = f"SELECT id, {fields} FROM reports WHERE report_id IN "  # noqa: S608 - marks appended
        self.report_ids_after = f"SELECT id, report_id FROM reports WHERE id > {mark} ORDER BY id LIMIT {PAGE}"  # noqa: S608
        self.max_report_id = "SELECT MAX(id) FROM reports"


@cache
def statements(dialect: str) -> Statements:
    """The `Statements` of `dialect`, built once."""
    return Statements(dialect)


def append(
    conn: Connection,
    action: str,
    actor: Actor,
    *,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Append one entry for an act done in `conn`'s transaction (call it last); returns its seq."""
    sql = statements(conn.dialect.name)
    head = conn.exec_driver_sql(sql.lock_head).first()
    entry, move = next_entry(sql, head, action, actor, subject=subject, detail=detail, now=now)
    conn.exec_driver_sql(sql.insert, entry)
    conn.exec_driver_sql(sql.move_head, move)
    return int(entry[0])


def next_entry(
    sql: Statements,
    head: Any,  # noqa: ANN401 - the driver's row of `Statements.lock_head`: (seq, hash), or None
    action: str,
    actor: Actor,
    *,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The parameters of `Statements.insert` and `Statements.move_head` for the entry that follows `head` (read
    with `Statements.lock_head` in the same transaction, which then must write them and commit: `append`, or a
    writer that sends its statements in a pipeline, `api.ingest.writer`)."""
    if head is None:
        raise RuntimeError("the audit chain's head row (audit_head, id 1) is missing: the database was altered")
    at = now or datetime.now(tz=UTC)
    text = canonical_json(detail or {})
    seq, prev_hash = int(head[0]) + 1, str(head[1])
    name, subject = actor.name[:128], subject[:256] if subject is not None else None
    digest = chain_hash(prev_hash, canonical_entry(seq, at, action, actor.id, name, subject, text))
    return (seq, sql.time(at), action, actor.id, name, subject, text, prev_hash, digest), (seq, digest)


def reports_entry(rows: list[tuple[Any, ...]]) -> tuple[str, Actor, str, dict[str, Any]]:
    """The action, actor, subject and detail of one group commit's entry: each stored report's id with the digest
    of its stored row (`rows` are the `reports` rows as inserted, `REPORT_FIELDS` in order)."""
    return REPORTS_STORED, SERVICE, f"reports:{len(rows)}", {"reports": {row[0]: report_digest(row) for row in rows}}


def record_reports(conn: Connection, rows: list[tuple[Any, ...]]) -> int:
    """Append the entry of one group commit (`reports_entry`)."""
    action, actor, subject, detail = reports_entry(rows)
    return append(conn, action, actor, subject=subject, detail=detail)


def token_created(
    conn: Connection, actor: Actor, token_id: int, name: str, role: str, *, expires_at: datetime | None = None
) -> int:
    """Append the entry of a token's creation (never its secret)."""
    detail = {"name": name, "role": role, "expires_at": expires_at.isoformat() if expires_at else None}
    return append(conn, "token.create", actor, subject=f"token:{token_id}", detail=detail)


def job_submitted(conn: Connection, actor: Actor, job_id: str, spec_json: str) -> int:
    """Append the entry of a job's submission: the SHA-256 of its spec as validated, and its name and class."""
    spec = json.loads(spec_json)
    detail = {
        "name": spec.get("name"),
        "class": spec.get("class"),
        "organisation": spec.get("organisation"),
        "spec_sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
    }
    return append(conn, "job.submit", actor, subject=f"job:{job_id}", detail=detail)


def nodes_discovered(conn: Connection, actor: Actor, result: dict[str, Any], now: datetime) -> int:
    """Append the entry of one recording of discovered (Kubernetes) nodes: which were added or changed, how many
    were refreshed or left to their agents."""
    detail = {
        "added": result["added_ids"],
        "changed": result["changed_ids"],
        "refreshed": result["refreshed"],
        "has_agent": result["has_agent"],
    }
    return append(conn, "nodes.discover", actor, detail=detail, now=now)


def settings_changed(conn: Connection, settings: dict[str, Any]) -> int | None:
    """At start: append a ``settings.change`` entry with the settings that differ from the last recorded ones
    (all of them the first time); None if nothing changed.  `settings` must hold no secret."""
    sql = statements(conn.dialect.name)
    query = f"SELECT detail FROM audit_log WHERE action = {sql.mark} ORDER BY seq DESC LIMIT 1"  # noqa: S608
    last = conn.exec_driver_sql(query, (SETTINGS,)).scalar()
    try:
        before = json.loads(last)["settings"] if last else {}
    except (ValueError, KeyError, TypeError):
        before = {}
    changed = sorted(k for k in settings if before.get(k) != settings[k]) + sorted(
        k for k in before if k not in settings
    )
    if not changed:
        return None
    return append(conn, SETTINGS, SERVICE, detail={"settings": settings, "changed": changed})


def start(conn: Connection) -> int | None:
    """Begin an empty chain with an ``audit.start`` entry that says how many reports were stored before it (those
    are not covered); None if the chain has begun already."""
    sql = statements(conn.dialect.name)
    head = conn.exec_driver_sql(sql.head).first()
    if head is not None and int(head[0]) > 0:
        return None
    before = conn.exec_driver_sql(sql.max_report_id).scalar()
    return append(conn, START, SERVICE, detail={"reports_before": int(before or 0)})


UNREADABLE_TIME = datetime(1, 1, 1, tzinfo=UTC)  # an entry's time edited into something that is not a time


def _entry(sql: Statements, values: Any) -> Entry:  # noqa: ANN401 - a driver row
    seq, at, action, actor_id, actor, subject, detail, prev_hash, digest = values
    try:
        when = sql.read_time(at)
    except (ValueError, TypeError):  # edited behind the service's back: listed, and named by `verify`
        when = UNREADABLE_TIME
    return Entry(int(seq), when, str(action), actor_id, str(actor), subject, str(detail), str(prev_hash), str(digest))


def public(entry: Entry) -> dict[str, Any]:
    """An entry as the API answers it (detail as a JSON object)."""
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        detail = {"unreadable": entry.detail}  # an edited row: shown, and `verify` names it
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "action": entry.action,
        "actor_id": entry.actor_id,
        "actor": entry.actor,
        "subject": entry.subject,
        "detail": detail if isinstance(detail, dict) else {"value": detail},
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def search(
    conn: Connection,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    before: int | None = None,
) -> dict[str, Any]:
    """Entries newest first, filtered; `next_before` is the cursor of the next page (None on the last)."""
    sql = statements(conn.dialect.name)
    where, params = [], []
    for clause, value in (
        ("action = ", action),
        ("actor = ", actor),
        ("at >= ", sql.time(since) if since else None),
        ("at < ", sql.time(until) if until else None),
        ("seq < ", before),
    ):
        if value is not None:
            where.append(f"{clause}{sql.mark}")
            params.append(value)
    query = f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_log"  # noqa: S608 - fixed text, values as placeholders
    if where:
        query += " WHERE " + " AND ".join(where)
    query += f" ORDER BY seq DESC LIMIT {int(limit) + 1}"
    rows = [_entry(sql, r) for r in conn.exec_driver_sql(query, tuple(params))]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": [public(e) for e in rows], "next_before": rows[-1].seq if more and rows else None}


@dataclass
class ReportCheck:
    """What the walk found about the reports the chain covers."""

    checked: int = 0
    mismatched: int = 0
    named: list[dict[str, Any]] = field(default_factory=list)
    covered: bytearray = field(default_factory=bytearray)  # a bit per reports.id covered by an entry

    def mark(self, row_id: int) -> None:
        """Note that the report with row id `row_id` is covered by an entry."""
        index = row_id >> 3
        if index >= len(self.covered):
            self.covered.extend(bytes(index - len(self.covered) + 1 + 4096))
        self.covered[index] |= 1 << (row_id & 7)

    def is_covered(self, row_id: int) -> bool:
        """Whether an entry covers the report with row id `row_id`."""
        index = row_id >> 3
        return index < len(self.covered) and bool(self.covered[index] & (1 << (row_id & 7)))

    def mismatch(self, seq: int | None, report_id: str, kind: str, detail: str) -> None:
        """Count a report that does not match the chain; name the first `MAX_NAMED`."""
        self.mismatched += 1
        if len(self.named) < MAX_NAMED:
            self.named.append({"seq": seq, "report_id": report_id, "kind": kind, "detail": detail})


def _check_reports(conn: Connection, sql: Statements, entry: Entry, check: ReportCheck) -> None:
    try:
        wanted: dict[str, str] = json.loads(entry.detail)["reports"]
    except (ValueError, KeyError, TypeError):
        return  # an edited entry: the chain walk names it
    if not isinstance(wanted, dict) or not wanted:
        return
    ids = list(wanted)
    found: dict[str, tuple[int, str]] = {}
    for start_at in range(0, len(ids), 500):
        part = ids[start_at : start_at + 500]
        query = sql.reports_of + "(" + ", ".join([sql.mark] * len(part)) + ")"
        for row in conn.exec_driver_sql(query, tuple(part)):
            try:
                digest = report_digest(tuple(row[1:]))
            except (ValueError, TypeError):  # a value edited into another type (SQLite keeps what it is given)
                digest = "unreadable"
            found[row[1]] = (int(row[0]), digest)
    for report_id, expected in wanted.items():
        check.checked += 1
        stored = found.get(report_id)
        if stored is None:
            check.mismatch(entry.seq, report_id, "removed", f"report {report_id} of entry {entry.seq} is not stored")
            continue
        check.mark(stored[0])
        if stored[1] != expected:
            check.mismatch(
                entry.seq, report_id, "edited", f"report {report_id} no longer matches its digest in entry {entry.seq}"
            )


def _unrecorded(conn: Connection, sql: Statements, after: int, check: ReportCheck) -> None:
    """Reports stored after the chain began that no entry covers (written straight into the table)."""
    last = after
    while True:
        rows = conn.exec_driver_sql(sql.report_ids_after, (last,)).all()
        for row_id, report_id in rows:
            if not check.is_covered(int(row_id)):
                check.mismatch(None, report_id, "unrecorded", f"report {report_id} is covered by no audit entry")
        if len(rows) < PAGE:
            return
        last = int(rows[-1][0])


def verify(engine: Engine, anchor: tuple[int, str] | None = None) -> dict[str, Any]:
    """Walk the stored chain in seq order and every report it covers, on one snapshot of the database: the first
    break (`api.audit.chain.Walk`), and the reports that were edited, removed or added outside the chain."""
    sql = statements(engine.dialect.name)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")  # one read snapshot for the whole walk (WAL)
        else:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")  # noqa: PLW2901
        head = conn.exec_driver_sql(sql.head).first()
        head_seq, head_hash = (int(head[0]), str(head[1])) if head is not None else (None, None)
        walk = Walk(anchor)
        check = ReportCheck()
        reports_before = 0
        last = 0
        while True:
            page = [_entry(sql, r) for r in conn.exec_driver_sql(sql.page, (last,))]
            for entry in page:
                walk.feed(entry, lambda digest: _by_hash(conn, sql, digest))
                if entry.action == REPORTS_STORED:
                    _check_reports(conn, sql, entry, check)
                elif entry.action == START and entry.seq == 1:
                    reports_before = _reports_before(entry)
            if len(page) < PAGE:
                break
            last = page[-1].seq
        first: Break | None = walk.finish(head_seq, head_hash)
        _unrecorded(conn, sql, reports_before, check)
        conn.rollback()
    return {
        "ok": first is None and check.mismatched == 0,
        "entries": walk.entries,
        "reports": check.checked,
        "head": {"seq": head_seq, "hash": head_hash} if head_seq is not None else None,
        "first_break": {"seq": first.seq, "kind": first.kind, "detail": first.detail} if first else None,
        "reports_mismatched": check.mismatched,
        "mismatches": check.named,
    }


def _by_hash(conn: Connection, sql: Statements, digest: str) -> Entry | None:
    """The stored entry whose hash is `digest` (a full scan: only ever asked when the chain is broken)."""
    row = conn.exec_driver_sql(sql.by_hash, (digest,)).first()
    return _entry(sql, row) if row is not None else None


def _reports_before(entry: Entry) -> int:
    try:
        return int(json.loads(entry.detail)["reports_before"])
    except (ValueError, KeyError, TypeError):
        return 0
