"""The verified-token cache (`api.auth.PrincipalCache`): fresh entries served, stale and expired ones not."""

import time
from datetime import UTC, datetime, timedelta

from api.auth import Principal, PrincipalCache, Role


def _principal(expires_at: datetime | None = None) -> Principal:
    return Principal(token_id=1, name="ops", role=Role.OPERATOR, node_id=None, expires_at=expires_at)


def test_a_verified_token_is_served_from_the_cache_until_its_ttl_passes() -> None:
    """Within the TTL the same principal comes back; after it, the cache answers None (read the database)."""
    cache = PrincipalCache(ttl=0.2)
    cache.put("sl_operator_x", _principal())
    assert cache.get("sl_operator_x") == _principal()
    assert cache.get("sl_operator_other") is None
    time.sleep(0.3)
    assert cache.get("sl_operator_x") is None


def test_a_token_that_expires_while_cached_is_not_served() -> None:
    """A token's own expiry is checked on every hit, whatever the TTL."""
    cache = PrincipalCache(ttl=60)
    cache.put("sl_operator_x", _principal(expires_at=datetime.now(tz=UTC) - timedelta(seconds=1)))
    assert cache.get("sl_operator_x") is None


def test_forget_all_drops_every_entry_and_the_cache_is_bounded() -> None:
    """A revocation empties the cache; past `maxsize` tokens the least recently used is dropped."""
    cache = PrincipalCache(ttl=60, maxsize=2)
    for text in ("a", "b", "c"):
        cache.put(text, _principal())
    assert [cache.get(text) is not None for text in ("a", "b", "c")] == [False, True, True]
    cache.forget_all()
    assert cache.get("b") is None


def test_a_principal_verified_before_a_forget_is_not_cached_after_it() -> None:
    """A request that read its token from the database before a revocation was seen (`forget_all`) and puts the
    principal after it does not cache it: the epoch it read is older than the cache's."""
    cache = PrincipalCache(ttl=60)
    epoch = cache.epoch
    cache.forget_all()
    cache.put("sl_operator_x", _principal(), epoch)
    assert cache.get("sl_operator_x") is None
    cache.put("sl_operator_x", _principal(), cache.epoch)
    assert cache.get("sl_operator_x") == _principal()


def test_a_forget_keeps_which_tokens_verified_lately_but_not_their_principals() -> None:
    """After a revocation empties the cache, a token verified within the TTL is still known as verified lately
    (so its address's failure limit does not hold it up) but must be looked up again (no principal served); an
    unknown token never was, and the mark too ends with the TTL."""
    cache = PrincipalCache(ttl=0.2)
    cache.put("sl_operator_x", _principal())
    cache.forget_all()
    assert cache.get("sl_operator_x") is None
    assert cache.verified_lately("sl_operator_x")
    assert not cache.verified_lately("sl_operator_guess")
    time.sleep(0.3)
    assert not cache.verified_lately("sl_operator_x")
