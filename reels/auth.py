"""JWT verification (RS256); dev keys and tokens are minted by ``reels_dev.keys``.

Envoy verifies every client request against the JWKS written here (jwt_authn) and
forwards the token; each service verifies it again in its interceptor, so a call
that bypasses Envoy inside the mesh is held to the same rule.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from pathlib import Path

import jwt

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
