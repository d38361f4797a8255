"""Signed media URLs: what the signature covers, and what a player may add.

The signature covers the object key, the expiry and our own parameters (declared in
``sp``); anything a player, CDN or analytics SDK appends (CMCD, cache busters, LL-HLS
directives) is ignored, while a change to any of ours stays a 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest

from reels.media_urls import (
    CANONICAL_PREFIX,
    SignatureError,
    UrlSigner,
    canonical,
)

SECRET = b"s" * 32
NOW = 1_700_000_000
KEY = "videos/v-1/720p/seg_0003.ts"
MASTER = "videos/v-1/master.m3u8"


def _signer(now: float = NOW) -> UrlSigner:
    return UrlSigner(SECRET, base_url="http://cdn.example/media", clock=lambda: now)


def _pairs(url: str) -> list[tuple[str, str]]:
    """The query as the origin's multidict sees it: decoded, every repeat kept."""
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def _with(url: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [*_pairs(url), *extra]


def _replace(url: str, **changes: str) -> list[tuple[str, str]]:
    pairs = _pairs(url)
    out = [(k, changes.pop(k)) if k in changes else (k, v) for k, v in pairs]
    return out + list(changes.items())


# ----------------------------------------------------------------- the canonical form


def test_canonical_string_is_key_names_and_encoded_values_in_declared_order() -> None:
    got = canonical(KEY, ["dev", "exp"], {"dev": "tv", "exp": "1700003600", "CMCD": "x"})
    assert got == f"{CANONICAL_PREFIX}\n{KEY}\ndev,exp\ndev=tv&exp=1700003600".encode()
    # Separators and newlines in a value are percent-encoded: no value can forge a field.
    tricky = canonical(KEY, ["dev", "exp"], {"dev": "a&exp=9\nb", "exp": "1"})
    assert tricky.endswith(b"\ndev,exp\ndev=a%26exp%3D9%0Ab&exp=1")


def test_issued_url_declares_exactly_our_parameters_sorted() -> None:
    url = _signer().url(MASTER, exp=NOW + 600, extra={"dev": "phone"})
    query = dict(_pairs(url))
    assert list(query) == ["dev", "exp", "sp", "sig"]
    assert query["sp"] == "dev,exp"
    assert "sp=dev,exp&" in url  # the comma stays readable
    mac = hmac.new(SECRET, canonical(MASTER, ["dev", "exp"], query), hashlib.sha256).digest()
    assert query["sig"] == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def test_only_declared_parameters_of_ours_may_be_issued() -> None:
    with pytest.raises(ValueError, match="CMCD"):
        _signer().query(KEY, NOW + 60, {"CMCD": "br=1"})
    with pytest.raises(ValueError, match="sig"):
        _signer().query(KEY, NOW + 60, {"sig": "x"})


# ------------------------------------------------------------ what players may append

PLAYER_EXTRAS = [
    pytest.param([("CMCD", "br=3200,ot=v")], id="cmcd-query-mode"),
    pytest.param(
        [("CMCD", 'bl=21300,br=3200,bs,cid="v-1",d=4004,mtp=25400,ot=v,sid="6e2f",tb=6000')],
        id="cmcd-full",
    ),
    pytest.param([("_", "1712345678901")], id="hlsjs-cache-buster"),
    pytest.param([("_HLS_msn", "12"), ("_HLS_part", "3")], id="ll-hls-directives"),
    pytest.param([("_HLS_skip", "YES")], id="ll-hls-skip"),
    pytest.param([("utm_source", "share"), ("t", "30")], id="analytics"),
    pytest.param([("CMCD", ""), ("CMCD", "br=1")], id="repeated-foreign"),
    pytest.param([("EXP", "999999999999"), ("Sig", "x")], id="other-case-not-ours"),
]


@pytest.mark.parametrize("extras", PLAYER_EXTRAS)
@pytest.mark.parametrize("key", [KEY, "videos/v-1/720p/index.m3u8", MASTER])
def test_parameters_a_player_adds_are_ignored(key: str, extras: list[tuple[str, str]]) -> None:
    signer = _signer()
    url = signer.url(key, exp=NOW + 600)
    assert signer.verify(key, _with(url, *extras)) == {"exp": str(NOW + 600)}


def test_player_parameters_anywhere_in_the_query_and_in_a_mapping() -> None:
    signer = _signer()
    url = signer.url(MASTER, exp=NOW + 600, extra={"dev": "tv"})
    pairs = [("CMCD", "ot=m"), *_pairs(url)[::-1], ("_", "1")]
    assert signer.verify(MASTER, pairs) == {"dev": "tv", "exp": str(NOW + 600)}
    assert signer.verify(MASTER, dict(pairs))["dev"] == "tv"


def test_value_encoding_differences_do_not_matter() -> None:
    """A CDN or client re-encoding the query (%2C for the comma) verifies the same."""
    signer = _signer()
    url = signer.url(MASTER, exp=NOW + 600, extra={"dev": "tv"})
    reencoded = urlsplit(url).query.replace(",", "%2C")
    assert signer.verify(MASTER, parse_qsl(reencoded)) == {"dev": "tv", "exp": str(NOW + 600)}


# ------------------------------------------------------------ tampering with ours: 403


def _refused(
    signer: UrlSigner, key: str, pairs: list[tuple[str, str]], reason: str, case: str = ""
) -> None:
    with pytest.raises(SignatureError) as err:
        signer.verify(key, pairs)
    assert reason in err.value.reason, (case, err.value.reason)


def test_tampering_with_our_parameters_is_refused() -> None:
    signer = _signer()
    url = signer.url(MASTER, exp=NOW + 600, extra={"dev": "phone"})
    bad_sig = dict(_pairs(url))["sig"]
    bad_sig = ("A" if bad_sig[0] != "A" else "B") + bad_sig[1:]
    cmcd = ("CMCD", "br=3200,ot=v")
    cases = {
        "extended expiry": (_replace(url, exp=str(NOW + 99_999)), "bad signature"),
        "expiry re-encoded": (_replace(url, exp=f"0{NOW + 600}"), "bad signature"),
        "widened ladder": (_replace(url, dev="tv"), "bad signature"),
        "dev dropped": ([p for p in _pairs(url) if p[0] != "dev"], "missing signed parameter"),
        "dev dropped, sp narrowed": (
            [(k, "exp" if k == "sp" else v) for k, v in _pairs(url) if k != "dev"],
            "bad signature",
        ),
        "sp dropped": ([p for p in _pairs(url) if p[0] != "sp"], "bad signature"),
        "exp repeated": ([*_pairs(url), ("exp", str(NOW + 99_999))], "repeated parameter exp"),
        "dev repeated": ([("dev", "tv"), *_pairs(url)], "repeated parameter dev"),
        "sig repeated": ([*_pairs(url), ("sig", "x")], "repeated parameter sig"),
        "sig tampered": (_replace(url, sig=bad_sig), "bad signature"),
        "sig missing": ([p for p in _pairs(url) if p[0] != "sig"], "missing signature"),
        "exp missing": ([p for p in _pairs(url) if p[0] != "exp"], "missing signature"),
        "sp without exp": (_replace(url, sp="dev"), "malformed signed parameter list"),
        "sp listing sig": (_replace(url, sp="dev,exp,sig"), "malformed signed parameter list"),
        "sp with a repeat": (_replace(url, sp="dev,exp,exp"), "malformed signed parameter list"),
        "sp listing a player param": (
            [*_replace(url, sp="CMCD,dev,exp"), cmcd],
            "malformed signed parameter list",
        ),
    }
    for case, (pairs, reason) in cases.items():
        _refused(signer, MASTER, [*pairs, cmcd], reason, case)


def test_our_parameter_added_unsigned_is_refused() -> None:
    signer = _signer()
    url = signer.url(MASTER, exp=NOW + 600)  # no device: the whole ladder
    _refused(signer, MASTER, _with(url, ("dev", "tv")), "unsigned parameter dev")


def test_signature_is_bound_to_the_key() -> None:
    signer = _signer()
    url = signer.url(KEY, exp=NOW + 600)
    for other in ("videos/v-2/720p/seg_0003.ts", "videos/v-1/1080p/seg_0003.ts", KEY + "x"):
        _refused(signer, other, _pairs(url), "bad signature")


def test_expired_and_other_secret_are_refused() -> None:
    url = _signer().url(KEY, exp=NOW - 1)
    _refused(_signer(), KEY, _with(url, ("CMCD", "ot=v")), "expired")
    fresh = _signer().url(KEY, exp=NOW + 600)
    _refused(UrlSigner(b"t" * 32, clock=lambda: NOW), KEY, _pairs(fresh), "bad signature")


def test_non_digit_expiry_is_refused_even_if_signed() -> None:
    signer = _signer()
    for exp in ("+1700000600", " 1700000600", "1_700_000_600", "1e10"):
        params = {"exp": exp}
        names = ["exp"]
        mac = hmac.new(SECRET, canonical(KEY, names, params), hashlib.sha256).digest()
        sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
        _refused(signer, KEY, [("exp", exp), ("sp", "exp"), ("sig", sig)], "malformed expiry")


# --------------------------------------------------------- URLs of the first format


def _legacy_url(key: str, params: dict[str, str]) -> str:
    """A URL as the first format issued it: HMAC over every parameter, sorted."""
    body = "&".join(f"{k}={params[k]}" for k in sorted(params))
    mac = hmac.new(SECRET, f"{key}\n{body}".encode(), hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return f"http://cdn.example/media/{quote(key)}?{urlencode({**params, 'sig': sig})}"


def test_urls_of_the_first_format_still_verify_and_survive_players() -> None:
    signer = _signer()
    master = _legacy_url(MASTER, {"dev": "phone", "exp": str(NOW + 600)})
    segment = _legacy_url(KEY, {"exp": str(NOW + 600)})
    cmcd = ("CMCD", "br=3200,ot=v")
    assert signer.verify(MASTER, _with(master, cmcd)) == {"dev": "phone", "exp": str(NOW + 600)}
    assert signer.verify(KEY, _with(segment, cmcd, ("_", "1"))) == {"exp": str(NOW + 600)}

    _refused(signer, MASTER, _replace(master, dev="tv"), "bad signature")
    _refused(signer, KEY, _with(segment, ("dev", "tv")), "bad signature")
    _refused(signer, KEY, _replace(segment, exp=str(NOW + 99_999)), "bad signature")
    _refused(signer, KEY, _with(segment, ("exp", "1")), "repeated parameter exp")
    expired = _legacy_url(KEY, {"exp": str(NOW - 1)})
    _refused(signer, KEY, _pairs(expired), "expired")


def test_a_new_signature_is_never_valid_in_the_first_format() -> None:
    signer = _signer()
    url = signer.url(KEY, exp=NOW + 600)
    legacy_view = [p for p in _pairs(url) if p[0] != "sp"]
    _refused(signer, KEY, legacy_view, "bad signature")


def test_expiry_bucket_makes_urls_identical_within_a_window() -> None:
    a = _signer(NOW + 1).url(KEY)
    b = _signer(NOW + 100).url(KEY)
    assert a == b
