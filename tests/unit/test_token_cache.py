"""TokenVerifier remembers tokens that verified, until their exp (reels/auth.py)."""

from __future__ import annotations

import time

import pytest

from reels.auth import AuthError, TokenVerifier
from reels_dev.keys import ensure_dev_keys, mint_token


@pytest.fixture
def verifier() -> TokenVerifier:
    ensure_dev_keys()
    return TokenVerifier()


def _counting(verifier: TokenVerifier) -> list[str]:
    calls: list[str] = []
    decode = verifier._decode

    def counted(token: str):  # type: ignore[no-untyped-def]
        calls.append(token)
        return decode(token)

    verifier._decode = counted  # type: ignore[method-assign]
    return calls


def test_a_token_is_verified_once_then_served_from_the_cache(verifier: TokenVerifier) -> None:
    calls = _counting(verifier)
    token = mint_token("cache-alice")
    for _ in range(5):
        assert verifier.verify(f"Bearer {token}").user_id == "cache-alice"
    assert len(calls) == 1
    assert verifier.verify(f"Bearer {mint_token('cache-bob')}").user_id == "cache-bob"
    assert len(calls) == 2


def test_a_cached_token_is_still_refused_once_it_expires(verifier: TokenVerifier) -> None:
    now = time.time()
    token = mint_token("cache-expiring", ttl_seconds=60, now=now)
    assert verifier.verify(f"Bearer {token}").user_id == "cache-expiring"
    # Past exp + leeway the cache must not answer: the token goes to the full check
    # again, which (at that time) refuses it as expired.
    later = now + 60 + TokenVerifier.LEEWAY_S + 1
    verifier._clock = lambda: later
    checked: list[str] = []

    def decode_later(raw: str):  # type: ignore[no-untyped-def]
        checked.append(raw)
        raise AuthError("token expired: get a new one")

    verifier._decode = decode_later  # type: ignore[method-assign]
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(f"Bearer {token}")
    assert checked == [token] and token not in verifier._verified


def test_refused_tokens_are_not_remembered_and_the_cache_is_bounded() -> None:
    ensure_dev_keys()
    verifier = TokenVerifier(cache_size=3)
    calls = _counting(verifier)
    bad = mint_token("cache-x", audience="someone-else")
    for _ in range(2):
        with pytest.raises(AuthError, match="audience"):
            verifier.verify(f"Bearer {bad}")
    assert len(calls) == 2
    tokens = [mint_token(f"cache-{i}") for i in range(5)]
    for t in tokens:
        verifier.verify(f"Bearer {t}")
    assert len(verifier._verified) == 3
    verifier.verify(f"Bearer {tokens[0]}")  # pushed out: verified again
    assert calls.count(tokens[0]) == 2
