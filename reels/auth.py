"""JWT verification (RS256) and service tokens; dev keys are made by ``reels_dev.keys``.

Envoy verifies every client request against the JWKS written here (jwt_authn) and
forwards the token; each service verifies it again in its interceptor, so a call
that bypasses Envoy inside the mesh is held to the same rule.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt

from reels.config import AuthConfig

KEY_ID = "reels-dev-1"

# The authenticated user of the call being served (set by the auth interceptor).
current_user: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "reels_current_user", default=None
)
# The roles of that user: the JWT claim ``roles`` (a list of strings, or one string),
# e.g. ["moderator"] for the review queue (svc_upload.review). Empty when absent.
current_roles: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "reels_current_roles", default=frozenset()
)
ROLES_CLAIM = "roles"
MODERATOR_ROLE = "moderator"


def roles_of(claims: dict[str, object]) -> frozenset[str]:
    """The ``roles`` claim as a set; anything malformed counts as no role."""
    raw = claims.get(ROLES_CLAIM)
    if isinstance(raw, str):
        return frozenset(r for r in raw.replace(",", " ").split() if r)
    if isinstance(raw, list | tuple):
        return frozenset(r for r in raw if isinstance(r, str) and r)
    return frozenset()


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
    """Checks RS256 signature, issuer, audience and expiry of bearer tokens.

    A token that verified is remembered (up to ``cache_size`` tokens, least recently
    used out first) until its ``exp`` (+ the same 5 s leeway): a client sends the same
    token on every call (a tus upload: POST, then PATCHes), and an RS256 verification
    costs ~0.1 ms of CPU, ~5 % of svc_upload's request path under load (py-spy,
    docs/DECISIONS.md "Uploads under load"). Only successes are kept; an expired
    token is refused exactly as without the cache.
    """

    LEEWAY_S = 5

    def __init__(self, config: AuthConfig | None = None, *, cache_size: int = 4096) -> None:
        self.config = config or AuthConfig()
        self._public_key: bytes | None = None
        self.cache_size = cache_size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_lock = threading.Lock()  # svc_chat also verifies from threads
        self._clock = time.time

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
        token = token.strip()
        with self._cache_lock:
            hit = self._verified.get(token)
            if hit is not None:
                principal, valid_until = hit
                if self._clock() <= valid_until:
                    self._verified.move_to_end(token)
                    return principal
                del self._verified[token]  # expired: decode says so, with its message
        principal = self._decode(token)
        exp = principal.claims.get("exp")
        if isinstance(exp, (int, float)) and self.cache_size > 0:
            with self._cache_lock:
                self._verified[token] = (principal, float(exp) + self.LEEWAY_S)
                while len(self._verified) > self.cache_size:
                    self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key(),
                algorithms=["RS256"],
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
                leeway=self.LEEWAY_S,
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired: get a new one") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"token audience is not '{self.config.audience}'") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return Principal(user_id=str(claims["sub"]), claims=claims)


class ServiceTokenSigner:
    """Signs the short-lived bearer tokens a service calls other services with.

    Background work (a transcode worker reporting status) serves no request whose
    token it could forward, so it acts as itself: a token for ``subject`` signed with
    ``AuthConfig.private_key_path`` (dev: the dev key pair; production: a service
    account's key whose public half the verifiers trust). :meth:`header` caches the
    token and renews it once half its lifetime has passed.
    """

    def __init__(self, config: AuthConfig, *, ttl_seconds: int = 15 * 60) -> None:
        self.config = config
        self.ttl_seconds = ttl_seconds
        self._key: bytes | None = None
        self._cached: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        """True when the private key exists (else no token can be signed)."""
        return self._key is not None or self.config.private_key_path.exists()

    def sign(
        self,
        subject: str,
        *,
        ttl_seconds: int | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        now: float | None = None,
        extra_claims: dict[str, object] | None = None,
    ) -> str:
        """A fresh RS256 token for ``subject`` (overrides: tests that need bad tokens)."""
        if self._key is None:
            self._key = self.config.private_key_path.read_bytes()
        issued = int(now if now is not None else time.time())
        claims: dict[str, object] = {
            "sub": subject,
            "iss": issuer or self.config.issuer,
            "aud": audience or self.config.audience,
            "iat": issued,
            "nbf": issued - 5,
            "exp": issued + (self.ttl_seconds if ttl_seconds is None else ttl_seconds),
            "jti": str(uuid.uuid4()),
            **(extra_claims or {}),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": KEY_ID})

    def header(self, subject: str) -> str:
        """``Bearer <token>`` for ``subject``, renewed at half its lifetime."""
        with self._lock:
            token, signed_at = self._cached.get(subject, ("", 0.0))
            if not token or time.monotonic() - signed_at > self.ttl_seconds / 2:
                token, signed_at = self.sign(subject), time.monotonic()
                self._cached[subject] = (token, signed_at)
        return f"Bearer {token}"
