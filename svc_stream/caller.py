"""Who is calling: every event and engagement action belongs to an authenticated user."""

from __future__ import annotations

from reels import errors
from reels.auth import current_user


def require_user() -> str:
    """The caller (set by the auth interceptor), or UNAUTHENTICATED."""
    user = current_user.get()
    if not user:
        raise errors.Unauthenticated("this call needs an authenticated user")
    return user
