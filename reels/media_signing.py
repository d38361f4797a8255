"""The secret that signs media URLs (HMAC-SHA256), shared by whoever issues and checks them.

``REELS_MEDIA_SIGNING_KEY`` wins when set (production: from the secret store, the same
value configured on the CDN's URL-signing function). Otherwise a random dev key is
created once in ``var/keys/media_signing.key`` so every local process of the mesh signs
and verifies with the same secret without any setup. It lives beside the JWT dev keys
but is not part of ``ensure_dev_keys``: different owner (svc_stream), different
rotation story.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from reels.config import PlatformSettings, platform

ENV_KEY = "REELS_MEDIA_SIGNING_KEY"
MIN_KEY_BYTES = 16


def media_signing_key_path() -> Path:
    return platform().media_signing_key_file


def ensure_media_signing_key(path: Path | None = None) -> bytes:
    """The dev key file's secret, creating it if missing (safe when processes race).

    The file is written under a temp name and hard-linked into place, so two processes
    starting together both end up with the first one's key, never with two keys.
    """
    path = path or media_signing_key_path()
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    # Created owner-only: the secret is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def media_signing_key(settings: PlatformSettings | None = None) -> bytes:
    """The secret in force: ``REELS_MEDIA_SIGNING_KEY`` if set, else the key file."""
    settings = settings or platform()
    value = settings.media_signing_key.strip()
    if value:
        key = value.encode()
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"{ENV_KEY} must be at least {MIN_KEY_BYTES} bytes")
        return key
    return ensure_media_signing_key(settings.media_signing_key_file)


def _read(path: Path) -> bytes:
    key = path.read_text().strip().encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"media signing key in {path} is too short")
    return key
