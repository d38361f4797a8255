"""Single-use tickets for the chat WebSocket.

Why tickets: a browser cannot set an ``Authorization`` header on a WebSocket, and a JWT
in the URL ends up in access logs, proxies' logs and the browser's history. The page
calls ``CreateChatTicket`` (gRPC, gRPC-web or ``POST /api/v1/live/{id}/chat:ticket``)
with its JWT, then opens ``/api/v1/streams/{id}/chat/ws?ticket=<ticket>``. A ticket:

* is 256 random bits (``secrets.token_urlsafe(32)``), opaque to the client;
* is bound to one user and one stream (and carries the display name from the JWT);
* lives ``REELS_CHAT_TICKET_TTL_S`` seconds (default 30) in Redis, under the SHA-256
  of the ticket (what Redis holds cannot open a socket);
* is consumed by the first handshake that presents it (one GETDEL: atomic, so two
  handshakes racing with one ticket cannot both win, on any instance). A logged or
  replayed URL is worthless afterwards.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from reels import errors
from svc_chat.ws.protocol import MAX_TICKET_CHARS

TICKET_BYTES = 32


@dataclass(frozen=True)
class Viewer:
    """Who a socket belongs to."""

    user_id: str
    username: str


class TicketBook:
    """Issues and redeems tickets in Redis (keys ``<prefix>chat:ticket:<sha256>``)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl_seconds * 1000))

    def _key(self, ticket: str) -> str:
        return f"{self.prefix}chat:ticket:{hashlib.sha256(ticket.encode()).hexdigest()}"

    async def issue(self, viewer: Viewer, stream_id: str) -> tuple[str, datetime]:
        """A new ticket for ``viewer`` on ``stream_id`` and when it expires (UTC)."""
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        value = json.dumps({"u": viewer.user_id, "n": viewer.username, "s": stream_id})
        expires = datetime.now(UTC) + timedelta(milliseconds=self.ttl_ms)
        await self.redis.set(self._key(ticket), value, px=self.ttl_ms)
        return ticket, expires

    async def redeem(self, ticket: str, stream_id: str) -> Viewer:
        """The viewer ``ticket`` was issued to, consuming it; Unauthenticated when it is
        unknown, expired, already used, or was issued for another stream (it is used up
        either way: a ticket is tried once)."""
        if len(ticket) > MAX_TICKET_CHARS or not ticket.isascii():
            raise errors.Unauthenticated("unknown, expired or used chat ticket")
        raw = await self.redis.getdel(self._key(ticket))
        if raw is None:
            raise errors.Unauthenticated(
                "unknown, expired or used chat ticket: get a new one (CreateChatTicket)"
            )
        held = json.loads(raw)
        if held.get("s") != stream_id:
            raise errors.Unauthenticated(
                "this chat ticket was issued for another stream: get one for this stream"
            )
        return Viewer(user_id=str(held["u"]), username=str(held.get("n") or held["u"]))
