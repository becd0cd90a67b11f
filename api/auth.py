"""Bearer tokens and roles: creation, verification, revocation; only hashes are stored.

Tokens are 256-bit random strings, so a SHA-256 digest is a safe, fast lookup key; the stored digest is also
compared in constant time.  A token's plaintext exists only in the answer that creates it.

Each token is a principal: its row id is its stable identity (rows are revoked, never deleted, so an id is never
reused), and what it owns (jobs) is keyed on that id, never on its name. Names are unique among all tokens,
revoked ones included, so a name shown next to a job names one principal. A ``user`` token carries the
organisations it may submit jobs for; no other role carries any.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cachetools import TTLCache
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from api.db import aware
from api.db.tables import generations, tokens
from api.errors import Conflict, NotFound, Unauthorised

NAME_MAX = 128
REVOCATIONS = "token_revocations"  # the `generations` row every revocation increments

log = logging.getLogger(__name__)


class Role(StrEnum):
    """What a token may do."""

    ADMIN = "admin"  # everything, tokens included
    OPERATOR = "operator"  # nodes and service health
    PLANNER = "planner"  # census figures, nodes, regions
    USER = "user"  # census figures, regions, their own jobs
    AGENT = "agent"  # POST /v1/reports for the one node it is bound to
    ENROL = "enrol"  # POST /v1/agents/enrol only: mints the agent token of a node not enrolled yet (DaemonSets)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling."""

    token_id: int  # the principal's stable id: what it owns is keyed on it
    name: str  # unique, for people
    role: Role
    node_id: str | None
    expires_at: datetime | None = None
    organisations: tuple[str, ...] = ()  # user tokens: the organisations it may submit for, its default first


def digest(token: str) -> str:
    """SHA-256 hex digest of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_text(role: Role) -> str:
    """A fresh token: ``sl_<role>_<43 url-safe characters>``."""
    return f"sl_{role.value}_{secrets.token_urlsafe(32)}"


def name_taken(connection: Connection, name: str) -> bool:
    """Whether a token (live or revoked) has this name."""
    return connection.execute(select(tokens.c.id).where(tokens.c.name == name).limit(1)).first() is not None


def free_name(connection: Connection, name: str) -> str:
    """`name` if no token has it, else `name` with the first free `` (2)``, `` (3)``... (within NAME_MAX): for
    names the service makes itself (the first admin, enrolled agents), which must never collide."""
    if not name_taken(connection, name):
        return name
    n = 2
    while True:
        suffix = f" ({n})"
        candidate = name[: NAME_MAX - len(suffix)] + suffix
        if not name_taken(connection, candidate):
            return candidate
        n += 1


def _name_taken(name: str) -> Conflict:
    return Conflict(f"a token named {name!r} already exists (names are unique, revoked tokens' included)")


def create_token(
    connection: Connection,
    *,
    name: str,
    role: Role,
    now: datetime,
    expires_at: datetime | None = None,
    text: str | None = None,
    node_id: str | None = None,
    organisations: tuple[str, ...] = (),
) -> tuple[str, int]:
    """Store a new token (or the given text, for a first admin token read from a file), bound to `node_id` when
    given (agent tokens minted by enrolment), with the `organisations` a user token may submit for; returns
    (text, id). `Conflict` if a token (even a revoked one) already has `name`: the caller's transaction is then
    unusable and must be left."""
    if organisations and role is not Role.USER:
        raise ValueError("only user tokens carry organisations")
    if name_taken(connection, name):
        raise _name_taken(name)
    text = text or new_token_text(role)
    try:
        result = connection.execute(
            tokens.insert().values(
                name=name,
                role=role.value,
                token_hash=digest(text),
                prefix=text[:12],
                created_at=now,
                expires_at=expires_at,
                node_id=node_id,
                organisations=json.dumps(list(organisations)) if role is Role.USER else None,
            )
        )
    except IntegrityError as exc:  # a concurrent creation of the same name won the race
        message = str(exc.orig)
        if "uq_tokens_name" in message or "tokens.name" in message:  # PostgreSQL's and SQLite's words for it
            raise _name_taken(name) from None
        raise
    token_id = result.inserted_primary_key[0] if result.inserted_primary_key else 0
    return text, int(token_id)


def _organisations(stored: str | None) -> tuple[str, ...]:
    return tuple(json.loads(stored)) if stored else ()


def authenticate(connection: Connection, text: str, now: datetime) -> Principal:
    """The principal of a token; `Unauthorised` if it is unknown, revoked or expired."""
    wanted = digest(text)
    row = connection.execute(select(tokens).where(tokens.c.token_hash == wanted)).first()
    if row is None or not hmac.compare_digest(row.token_hash, wanted):
        raise Unauthorised("unknown token")
    if row.revoked_at is not None:
        raise Unauthorised("token revoked")
    if row.expires_at is not None and aware(row.expires_at) <= now:
        raise Unauthorised(expired_detail(Role(row.role), aware(row.expires_at)))
    expires_at = aware(row.expires_at) if row.expires_at is not None else None
    return Principal(
        token_id=row.id,
        name=row.name,
        role=Role(row.role),
        node_id=row.node_id,
        expires_at=expires_at,
        organisations=_organisations(row.organisations),
    )


def expired_detail(role: Role, expired_at: datetime) -> str:
    """What an expired token is told: for an enrolment token (they always expire) also when, and what to do."""
    if role is not Role.ENROL:
        return "token expired"
    return (
        f"token expired at {expired_at.isoformat(timespec='seconds')}: enrolment tokens expire "
        "(enrol_token_ttl_seconds); an admin creates a new one (`suanli token create NAME --role enrol`) and "
        "puts it where the fleet's agents read it"
    )


def bind_node(connection: Connection, token_id: int, node_id: str) -> str:
    """Bind an agent token to the node it first reports for; returns the node it is bound to (an earlier
    binding wins)."""
    connection.execute(
        tokens.update().where(tokens.c.id == token_id, tokens.c.node_id.is_(None)).values(node_id=node_id)
    )
    bound: str = connection.execute(select(tokens.c.node_id).where(tokens.c.id == token_id)).scalar_one()
    return bound


def enrolled_token(connection: Connection, node_id: str) -> int | None:
    """The id of a live (not revoked) agent token bound to `node_id`, if there is one."""
    query = select(tokens.c.id).where(
        tokens.c.node_id == node_id, tokens.c.role == Role.AGENT.value, tokens.c.revoked_at.is_(None)
    )
    found: int | None = connection.execute(query.limit(1)).scalar()
    return found


def revoke(connection: Connection, token_id: int, now: datetime) -> None:
    """Revoke a token; `NotFound` if there is none with that id. The revocation generation grows by one in the
    same transaction, so every replica's `RevocationWatch` drops its cached principals."""
    result = connection.execute(tokens.update().where(tokens.c.id == token_id).values(revoked_at=now))
    if result.rowcount == 0:
        raise NotFound(f"no token with id {token_id}")
    connection.execute(
        update(generations).where(generations.c.name == REVOCATIONS).values(value=generations.c.value + 1)
    )


def revocation_generation(connection: Connection) -> int:
    """How many revocations the database has seen (one primary-key read)."""
    value = connection.execute(select(generations.c.value).where(generations.c.name == REVOCATIONS)).scalar()
    return int(value or 0)


def list_tokens(connection: Connection) -> list[dict[str, Any]]:
    """Every token's metadata (never the hash); `organisations` a list (empty for roles other than user)."""
    rows = connection.execute(select(tokens).order_by(tokens.c.id)).mappings()
    return [
        {k: v for k, v in row.items() if k != "token_hash"}
        | {"organisations": list(_organisations(row["organisations"]))}
        for row in rows
    ]


def count_admins(connection: Connection) -> int:
    """Active admin tokens."""
    query = (
        select(func.count()).select_from(tokens).where(tokens.c.role == Role.ADMIN.value, tokens.c.revoked_at.is_(None))
    )
    return int(connection.execute(query).scalar_one())


class PrincipalCache:
    """Verified tokens for `ttl` seconds, so a busy agent fleet does not cost a database read per request.

    The default outlives an agent's 30 s interval: at 10,000 agents a shorter one made every report read its
    token from the database (a sixth of the service's time, `benchmarks.load_agents`). A token's expiry is
    checked on every use all the same; a revocation made through this service is applied at once
    (`forget_all`); one made by another replica reaches this one when its `RevocationWatch` next polls. At most
    `maxsize` tokens are kept (the least recently used goes first). Thread-safe: the housekeeper and the
    commit thread share it with the event loop.

    `epoch` grows at every `forget_all`: a principal verified before a forget (read from the database before a
    revocation committed) and put after it is not kept (`put`'s `epoch`), so no revoked token outlives a forget.
    Which tokens verified lately is remembered apart (`verified_lately`) and survives a forget: it grants no
    access, only spares a client that cannot be guessing from its address's failure limit.
    """

    def __init__(self, ttl: float = 60.0, maxsize: int = 100_000) -> None:
        self.ttl = ttl
        self._entries: TTLCache[str, Principal] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._verified: TTLCache[str, bool] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._lock = threading.Lock()
        self.epoch = 0

    def get(self, token: str) -> Principal | None:
        """The cached principal of `token`, if still fresh and not expired meanwhile."""
        key = digest(token)
        with self._lock:
            principal = self._entries.get(key)
            if (
                principal is not None
                and principal.expires_at is not None
                and principal.expires_at <= datetime.now(tz=UTC)
            ):
                del self._entries[key]
                return None  # expired meanwhile: authenticate again (and be refused with the reason)
        return principal

    def put(self, token: str, principal: Principal, epoch: int | None = None) -> None:
        """Remember a verified principal; not when `epoch` (read before verifying) is older than the cache's."""
        key = digest(token)
        with self._lock:
            self._verified[key] = True
            if epoch is None or epoch == self.epoch:
                self._entries[key] = principal

    def verified_lately(self, token: str) -> bool:
        """Whether `token` verified within the last `ttl` seconds, a revocation since notwithstanding (it is then
        looked up again, and refused if revoked): such a token is no guess."""
        with self._lock:
            return digest(token) in self._verified

    def forget_all(self) -> None:
        """Drop every entry (after a revocation or a binding)."""
        with self._lock:
            self._entries.clear()
            self.epoch += 1


class RevocationWatch(threading.Thread):
    """Polls the revocation generation every `interval` seconds and empties `cache` when it changed: a token
    revoked through any replica is refused by this one within `interval` (plus one query) of the revocation's
    commit. One primary-key read per interval per replica; nothing per request."""

    def __init__(self, engine: Engine, cache: PrincipalCache, interval: float, stop: threading.Event) -> None:
        super().__init__(name="suanli-revocations", daemon=True)
        self.engine = engine
        self.cache = cache
        self.interval = interval
        self.stop = stop
        self.seen: int | None = None

    def check(self) -> bool:
        """Poll once; True if the generation changed (and the cache was emptied)."""
        with self.engine.connect() as conn:
            now = revocation_generation(conn)
        changed = self.seen is not None and now != self.seen
        if changed:
            self.cache.forget_all()
        self.seen = now
        return changed

    def run(self) -> None:
        while True:
            try:
                self.check()
            except Exception as exc:  # the database unreachable: requests fail their own way; poll again
                log.warning("could not read the revocation generation (%s)", type(exc).__name__)
                self.cache.forget_all()  # unsure what was revoked meanwhile: verify afresh
            if self.stop.wait(self.interval):
                return
