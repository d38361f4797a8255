"""Dev JWT keys, tokens, and verification (RS256).

Envoy verifies every client request against the JWKS written here (jwt_authn) and
forwards the token; each service verifies it again in its interceptor, so a call
that bypasses Envoy inside the mesh is held to the same rule.
"""

from __future__ import annotations

import base64
import contextvars
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from reels.config import AuthConfig

KEY_ID = "reels-dev-1"

# The authenticated user of the call being served (set by the auth interceptor).
current_user: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "reels_current_user", default=None
)
# The raw bearer token of that call, forwarded when this service calls another one.
current_token: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "reels_current_token", default=None
)


class AuthError(Exception):
    """A token is missing, malformed, expired or meant for someone else."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    claims: dict[str, object]


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
) -> str:
    """A dev token for `user_id`; the overrides exist so tests can make bad tokens."""
    config = ensure_dev_keys(config)
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "iss": issuer or config.issuer,
        "aud": audience or config.audience,
        "iat": issued,
        "nbf": issued - 5,
        "exp": issued + ttl_seconds,
        "jti": str(uuid.uuid4()),
        **(extra_claims or {}),
    }
    private_key = config.private_key_path.read_bytes()
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": KEY_ID})


class TokenVerifier:
    """Checks RS256 signature, issuer, audience and expiry of bearer tokens."""

    def __init__(self, config: AuthConfig | None = None) -> None:
        self.config = config or AuthConfig()
        self._public_key: bytes | None = None

    def _key(self) -> bytes:
        if self._public_key is None:
            path: Path = self.config.public_key_path
            if not path.exists():
                raise AuthError(f"server has no JWT public key at {path}; run `make setup`")
            self._public_key = path.read_bytes()
        return self._public_key

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("missing bearer token: send 'authorization: Bearer <jwt>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("authorization header must be 'Bearer <jwt>'")
        try:
            claims = jwt.decode(
                token.strip(),
                self._key(),
                algorithms=["RS256"],
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired: get a new one") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"token audience is not '{self.config.audience}'") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return Principal(user_id=str(claims["sub"]), claims=claims)
