"""Signed, expiring media URLs: ``/media/<key>?exp=<unix s>[&...]&sig=<HMAC>``.

The signature is HMAC-SHA256 (secret from :mod:`reels.media_signing`) over the object
key and every other query parameter, canonicalised as::

    "<key>\\n" + "&".join(f"{name}={value}" for name, value in sorted(params))

base64url without padding. It signs the *key*, not the full URL, so the same URL
signature works whatever host serves it (Envoy locally, a CDN in production) and the
origin can verify without knowing how the client reached it. Extra parameters (the
device ladder cap ``max`` on a master playlist) are covered too, so a client cannot
widen its ladder by editing the query.

Expiry is rounded up to a bucket (default 5 min) so viewers in the same window get
byte-identical URLs: a CDN caches one copy per segment per bucket, not per viewer.
Every URL derived from a signed one (variants from a master, segments from a variant)
inherits its ``exp``: access never outlives the URL first handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

DEFAULT_TTL_S = 6 * 3600
DEFAULT_BASE_URL = "http://127.0.0.1:8080/media"
EXPIRY_BUCKET_S = 300
RESERVED = ("exp", "sig")


class SignatureError(Exception):
    """The URL is not (or no longer) signed for this key; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _canonical(key: str, params: Mapping[str, str]) -> bytes:
    body = "&".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{key}\n{body}".encode()


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

    def signature(self, key: str, params: Mapping[str, str]) -> str:
        digest = hmac.new(self.secret, _canonical(key, params), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def query(self, key: str, exp: int, extra: Mapping[str, str] | None = None) -> str:
        """The query string (without ``?``) that makes ``key`` readable until ``exp``."""
        params = {**(extra or {}), "exp": str(exp)}
        return urlencode({**params, "sig": self.signature(key, params)})

    def url(self, key: str, exp: int | None = None, extra: Mapping[str, str] | None = None) -> str:
        """Absolute signed URL of ``key`` under the media base URL."""
        exp = self.expiry() if exp is None else exp
        return f"{self.base_url}/{quote(key, safe='/')}?{self.query(key, exp, extra)}"

    def verify(self, key: str, query: Mapping[str, str]) -> dict[str, str]:
        """Check a request's query for ``key``; returns the signed params (``exp`` included).

        Raises :class:`SignatureError` when the signature is missing, wrong or expired.
        The comparison is constant-time.
        """
        sig = query.get("sig")
        exp_text = query.get("exp")
        if not sig or not exp_text:
            raise SignatureError("missing signature")
        try:
            exp = int(exp_text)
        except ValueError:
            raise SignatureError("malformed expiry") from None
        params = {k: v for k, v in query.items() if k != "sig"}
        if not hmac.compare_digest(self.signature(key, params).encode(), sig.encode()):
            raise SignatureError("bad signature")
        if exp < self.clock():
            raise SignatureError("expired")
        return params
