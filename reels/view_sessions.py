"""View sessions: which watch events belong to one view of one video.

A player names its view session in every event (``VideoEvent.session_id``); a replay
within it (the video looping, or watched again) is the same view. Older clients send
no session id: their events within one 30-minute window (``LEGACY_SESSION_WINDOW_S``,
the usual web-analytics session timeout) are one view session.

Shared by svc_stream's analytics sink (``views`` = distinct view sessions) and
svc_rank's watch indexer (views, skips and completions per view, as
``recsim.features`` defines them), so both count the same views.
"""

from __future__ import annotations

from typing import Any

LEGACY_SESSION_WINDOW_S = 30 * 60


def effective_session(session_id: str, occurred_at: Any) -> str:
    """The view session of an event: its own ``session_id``, or for an event without one
    (older clients) ``legacy-<n>``, n = the 30-minute window of its established time
    (``occurred_at``: a protobuf Timestamp)."""
    if session_id:
        return session_id
    return f"legacy-{occurred_at.seconds // LEGACY_SESSION_WINDOW_S}"
