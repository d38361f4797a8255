"""The contract between svc_chat's App and its three parts.

svc_chat is built from three parts, each a package with a ``build(ctx) -> Part``:

* ``svc_chat.streams`` — live-stream lifecycle (Postgres + outbox), stream keys,
  viewer counts (Redis);
* ``svc_chat.chat`` — the chat core: ordered publications in Redis (Lua), the
  per-instance hub (pub/sub fan-out, bounded subscriber queues, recovery),
  history, moderation, the streams.chat relay;
* ``svc_chat.ws`` — the chat WebSocket server (aiohttp) and its tickets.

Every part gets the same :class:`Context` (shared connections, settings, the
supervisor for its background loops) and may look up the others through it
(``ctx.streams``, ``ctx.chat``) after ``build``: parts are built in that order,
started in that order and stopped in reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from reels.supervise import Supervisor

if TYPE_CHECKING:
    from svc_chat.settings import Settings


class Part(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Context:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    supervisor: Supervisor
    streams: Any = None
    """svc_chat.streams' Part, once built."""
    chat: Any = None
    """svc_chat.chat's Part, once built."""
    ws: Any = None
    """svc_chat.ws' Part, once built."""
    ingest: Any = None
    """svc_chat.ingest's Part (RTMP ingest), once built."""
