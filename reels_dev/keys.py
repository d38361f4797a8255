"""Dev JWT key pair, JWKS and tokens: what `make setup`, `make token` and tests use.

Envoy verifies client tokens against the JWKS written here (jwt_authn); services
verify with ``reels.auth.TokenVerifier``. Production uses the IdP's keys instead.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reels.auth import KEY_ID, ServiceTokenSigner
from reels.config import AuthConfig


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ensure_dev_keys(config: AuthConfig | None = None) -> AuthConfig:
    """Create the dev RSA key pair and JWKS once; later calls leave them alone."""
    config = config or AuthConfig()
    if config.private_key_path.exists() and config.jwks_path.exists():
        return config
    config.private_key_path.parent.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created owner-only: the private key is never readable by others, not even briefly.
    fd = os.open(config.private_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key()
    config.public_key_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    numbers = public.public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": KEY_ID,
                "n": _b64url_uint(numbers.n),
                "e": _b64url_uint(numbers.e),
            }
        ]
    }
    config.jwks_path.write_text(json.dumps(jwks, indent=2))
    return config


def mint_token(
    user_id: str,
    *,
    config: AuthConfig | None = None,
    ttl_seconds: int = 24 * 3600,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
    extra_claims: dict[str, object] | None = None,
    roles: Sequence[str] = (),
) -> str:
    """A dev token for `user_id`; the overrides exist so tests can make bad tokens.

    ``roles`` go into the ``roles`` claim (e.g. ``["moderator"]``: the review queue).
    """
    config = ensure_dev_keys(config)
    if roles:
        extra_claims = {**(extra_claims or {}), "roles": list(roles)}
    return ServiceTokenSigner(config).sign(
        user_id,
        ttl_seconds=ttl_seconds,
        audience=audience,
        issuer=issuer,
        now=now,
        extra_claims=extra_claims,
    )
