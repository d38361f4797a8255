"""svc_chat's composition root: the typed App that ``python -m svc_chat`` serves.

Three parts (svc_chat.parts): ``streams``, ``chat`` and ``ws``, built on one shared
:class:`~svc_chat.parts.Context` (Postgres, Redis, the supervisor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from reels.v1 import chat_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from reels.cache import redis_client, set_key_prefix
from reels.db.engine import make_engine, make_sessionmaker
from reels.server import AppBase, Registration
from reels.supervise import Supervisor
from svc_chat import chat, ingest, streams, ws
from svc_chat.parts import Context
from svc_chat.server import ChatService
from svc_chat.settings import Settings


@dataclass
class App(AppBase):
    """Live streams and their chat."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: aioredis.Redis
    supervisor: Supervisor = field(default_factory=lambda: Supervisor("chat"))
    ctx: Context | None = None
    parts: list[Any] = field(default_factory=list)
    name: str = "chat"

    async def start(self) -> None:
        set_key_prefix(self.platform.redis_prefix)
        ctx = Context(
            settings=self.settings,
            engine=self.engine,
            sessionmaker=self.sessionmaker,
            redis=self.redis,
            supervisor=self.supervisor,
        )
        ctx.streams = streams.build(ctx)
        ctx.chat = chat.build(ctx)
        ctx.ws = ws.build(ctx)
        ctx.ingest = ingest.build(ctx)
        self.ctx = ctx
        self.parts = [ctx.streams, ctx.chat, ctx.ws, ctx.ingest]
        for part in self.parts:
            await part.start()
        await self.supervisor.start()

    def registrations(self) -> list[Registration]:
        assert self.ctx is not None, "start() first"
        return [
            (
                chat_pb2_grpc.add_ChatServiceServicer_to_server,
                ChatService(self.ctx),
                "reels.v1.ChatService",
            )
        ]

    async def drain(self) -> None:
        """Before the gRPC drain: end every chat subscription now (UNAVAILABLE: the
        client resubscribes with its last offset, on another instance), so the drain
        does not wait its whole grace period on streams that never end by themselves."""
        if self.ctx is not None and self.ctx.chat is not None:
            await self.ctx.chat.hub.close()

    async def stop(self) -> None:
        for part in reversed(self.parts):
            await part.stop()
        await self.supervisor.stop()
        await self.redis.aclose()
        await self.engine.dispose()
        set_key_prefix(None)


def build(settings: Settings) -> App:
    """The App for ``settings``; nothing connects until ``start()``."""
    platform = settings.platform
    engine = make_engine(platform.database_url)
    return App(
        settings=settings,
        engine=engine,
        sessionmaker=make_sessionmaker(engine),
        redis=redis_client(platform.redis_url),
    )
