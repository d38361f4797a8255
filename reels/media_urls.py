"""Signed, expiring media URLs: ``/media/<key>?[dev=..&]exp=<unix s>&sp=<names>&sig=<HMAC>``.

What the signature covers
-------------------------
The object *key*, the expiry and **our own parameters only**, listed by name in ``sp``
("signed parameters", itself covered). Players and CDNs append their own parameters to
every URL they fetch: CMCD (``CMCD=br%3D3200%2Cot%3Dv``, hls.js / dash.js / Shaka with
CMCD on), cache busters (hls.js ``_=<ms>``), LL-HLS delivery directives (``_HLS_msn``,
``_HLS_part``, ``_HLS_skip``), analytics tags. Those are ignored: they are not ours, are
never part of the signature, and never change what the origin serves. A signature over
"every other query parameter" (what this module did first) turns each of them into a 403.

The canonical string (HMAC-SHA256 with the secret from :mod:`reels.media_signing`,
base64url without padding)::

    "reels-media-v2\\n" + key + "\\n" + sp + "\\n" + "&".join(f"{n}={pct(v)}" for n in sp)

with ``sp`` the comma-separated names exactly as in the URL (the signer writes them
sorted, ``exp`` always among them) and ``pct`` RFC 3986 percent-encoding of the decoded
value (so a value can hold neither a separator nor a newline, and a client or CDN that
re-encodes the query differently still verifies). The prefix separates it from the
first format below.

Rules the verifier applies, all 403 (``SignatureError``) when broken:

* ``sig``, ``exp`` and every name listed in ``sp`` present exactly once (a repeated
  signed parameter is refused: a CDN edge that takes the last value and an origin that
  takes the first must never disagree about what was signed);
* no parameter of ours (:data:`OWN_PARAMS`) present but not covered: adding ``dev=web``
  to a URL issued without one is tampering, not a player's extra;
* the HMAC matches (constant-time) and ``exp`` (digits only) is not in the past.

Everything else in the query is ignored. The signature is over the *key*, not the full
URL, so it works whatever host serves it (Envoy locally, a CDN in production) and the
origin verifies without knowing how the client reached it. Declaring the covered names
in the URL (rather than a table compiled into every verifier) lets a new parameter of
ours roll out before every edge verifier knows about it.

First format (still verified, cheap to keep): URLs without ``sp``, issued before this
one, signed ``key + "\\n" + "&".join(f"{n}={v}" for n in sorted(params))`` over their
``exp`` and ``dev``, the only parameters that format ever carried. They are checked over
exactly those two names, so they also survive player extras. They all expire within
``DEFAULT_TTL_S`` (plus one bucket) of the deploy; the branch can go after that.

Expiry is rounded up to a bucket (default 5 min) so viewers in the same window get
byte-identical URLs: a CDN caches one copy per segment per bucket, not per viewer (a CDN
should also drop the player's parameters from its cache key). Every URL derived from a
signed one (variants from a master, segments from a variant) inherits its ``exp``:
access never outlives the URL first handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

DEFAULT_TTL_S = 6 * 3600
DEFAULT_BASE_URL = "http://127.0.0.1:8080/media"
EXPIRY_BUCKET_S = 300

EXPIRY = "exp"
SIGNATURE = "sig"
SIGNED_PARAMS = "sp"
# Every parameter we ever put in a media URL besides exp/sp/sig: the device ladder cap on
# a master playlist. A new one is added here (so it may be issued, and can never ride
# along unsigned) and is covered through ``sp`` like the rest.
OWN_PARAMS = frozenset({EXPIRY, "dev"})
RESERVED = frozenset({SIGNATURE, SIGNED_PARAMS})
# The first format signed these (all it ever issued), sorted.
LEGACY_PARAMS = ("dev", EXPIRY)
CANONICAL_PREFIX = "reels-media-v2"

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EXPIRY = re.compile(r"^[0-9]{1,12}$")


class SignatureError(Exception):
    """The URL is not (or no longer) signed for this key; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical(key: str, names: Iterable[str], params: Mapping[str, str]) -> bytes:
    """The bytes the HMAC covers: ``key``, the declared names, their values (in that order)."""
    names = list(names)
    body = "&".join(f"{n}={quote(params[n], safe='')}" for n in names)
    return f"{CANONICAL_PREFIX}\n{key}\n{','.join(names)}\n{body}".encode()


def legacy_canonical(key: str, params: Mapping[str, str]) -> bytes:
    """The first format's bytes: ``key`` and every signed parameter, sorted, unencoded."""
    body = "&".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{key}\n{body}".encode()


def _pairs(query: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    # A multidict (aiohttp's request.query) yields every value of a repeated name.
    items: Any = query.items() if hasattr(query, "items") else query
    return [(str(k), str(v)) for k, v in items]


@dataclass
class UrlSigner:
    """Issues and checks media URL signatures with one secret."""

    secret: bytes
    base_url: str = DEFAULT_BASE_URL
    ttl_s: int = DEFAULT_TTL_S
    bucket_s: int = EXPIRY_BUCKET_S
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    def expiry(self) -> int:
        """Unix time the URLs issued now stop working (now + TTL, rounded up to a bucket)."""
        deadline = self.clock() + self.ttl_s
        bucket = max(1, self.bucket_s)
        return int(math.ceil(deadline / bucket) * bucket)

    def _mac(self, message: bytes) -> str:
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def signature(self, key: str, params: Mapping[str, str]) -> str:
        """The signature of ``key`` over ``params`` (all of them, names sorted)."""
        return self._mac(canonical(key, sorted(params), params))

    def query(self, key: str, exp: int, extra: Mapping[str, str] | None = None) -> str:
        """The query string (without ``?``) that makes ``key`` readable until ``exp``.

        ``extra`` holds our own parameters (names from :data:`OWN_PARAMS`), covered too.
        """
        params = {**(extra or {}), EXPIRY: str(exp)}
        unknown = sorted(set(params) - OWN_PARAMS)
        if unknown:
            raise ValueError(f"not a media URL parameter of ours: {', '.join(unknown)}")
        names = sorted(params)
        sig = self._mac(canonical(key, names, params))
        return urlencode(
            {**{n: params[n] for n in names}, SIGNED_PARAMS: ",".join(names), SIGNATURE: sig},
            safe=",",
        )

    def url(self, key: str, exp: int | None = None, extra: Mapping[str, str] | None = None) -> str:
        """Absolute signed URL of ``key`` under the media base URL."""
        exp = self.expiry() if exp is None else exp
        return f"{self.base_url}/{quote(key, safe='/')}?{self.query(key, exp, extra)}"

    def verify(
        self, key: str, query: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> dict[str, str]:
        """Check a request's query for ``key``; returns the signed params (``exp`` included).

        ``query`` is the decoded query: a mapping, a multidict or (name, value) pairs;
        parameters that are not ours are ignored. Raises :class:`SignatureError` when the
        signature is missing, wrong or expired, or one of our parameters is repeated or
        unsigned. The comparison is constant-time.
        """
        values: dict[str, list[str]] = {}
        for name, value in _pairs(query):
            values.setdefault(name, []).append(value)

        def one(name: str) -> str | None:
            found = values.get(name)
            if found is None:
                return None
            if len(found) != 1:
                raise SignatureError(f"repeated parameter {name}")
            return found[0]

        sig = one(SIGNATURE)
        exp_text = one(EXPIRY)
        if not sig or exp_text is None:
            raise SignatureError("missing signature")
        declared = one(SIGNED_PARAMS)
        if declared is None:
            names = [n for n in LEGACY_PARAMS if n in values]
        else:
            names = declared.split(",")
            if (
                EXPIRY not in names
                or len(set(names)) != len(names)
                or not all(_NAME.match(n) and n not in RESERVED for n in names)
            ):
                raise SignatureError("malformed signed parameter list")
        params: dict[str, str] = {}
        for name in names:
            value = one(name)
            if value is None:
                raise SignatureError(f"missing signed parameter {name}")
            params[name] = value
        unsigned = sorted(n for n in OWN_PARAMS if n in values and n not in params)
        if unsigned:
            raise SignatureError(f"unsigned parameter {unsigned[0]}")
        if declared is None:
            expected = self._mac(legacy_canonical(key, params))
        else:
            expected = self._mac(canonical(key, names, params))
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            raise SignatureError("bad signature")
        if not _EXPIRY.match(exp_text):
            raise SignatureError("malformed expiry")
        if int(exp_text) < self.clock():
            raise SignatureError("expired")
        return params
