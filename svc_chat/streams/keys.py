"""Stream keys: the secret an encoder (OBS, ffmpeg) publishes to the RTMP ingest with.

A key is ``live_`` + ``secrets.token_urlsafe(24)`` (192 random bits, 37 characters).
Only its SHA-256 (hex) is stored: a database leak gives nobody a key, and a fast
unsalted hash is enough for a 192-bit random secret (nothing to brute-force). The
key is shown once, in CreateStream's or RotateStreamKey's reply.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "live_"
RANDOM_BYTES = 24
KEY_LENGTH = len(PREFIX) + len(secrets.token_urlsafe(RANDOM_BYTES))


def new_key() -> str:
    """A fresh stream key."""
    return PREFIX + secrets.token_urlsafe(RANDOM_BYTES)


def hash_key(key: str) -> str:
    """What is stored for ``key``: its SHA-256 as 64 hex digits."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(key: str) -> bool:
    """Cheap shape check before a lookup: the prefix and the length of a real key."""
    return key.startswith(PREFIX) and len(key) == KEY_LENGTH


def matches(key: str, stored_hash: str) -> bool:
    """Constant-time comparison of ``key`` with a stored hash."""
    return hmac.compare_digest(hash_key(key), stored_hash)
