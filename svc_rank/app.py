"""svc_rank's composition root: the typed App that ``python -m svc_rank`` serves."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from reels.v1 import rank_pb2_grpc, stream_pb2_grpc

from reels.clients import channel
from reels.server import AppBase, Registration
from reels.supervise import Supervisor
from svc_rank.server import FeedService
from svc_rank.settings import Settings


@dataclass
class App(AppBase):
    """The feed service: a FeedService over svc_stream's trending pool (for now)."""

    settings: Settings
    stream_channel: grpc.aio.Channel | None = None
    supervisor: Supervisor = field(default_factory=lambda: Supervisor("rank"))
    name: str = "rank"

    async def start(self) -> None:
        # grpc.aio channels belong to the running loop, so they are opened here.
        if self.stream_channel is None:
            self.stream_channel = channel(self.platform.stream_addr)
        await self.supervisor.start()

    def registrations(self) -> list[Registration]:
        assert self.stream_channel is not None, "start() first"
        stub = stream_pb2_grpc.StreamServiceStub(self.stream_channel)
        feed = FeedService(stub, timeout_s=self.settings.trending_timeout_s)
        return [(rank_pb2_grpc.add_FeedServiceServicer_to_server, feed, "reels.v1.FeedService")]

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self.stream_channel is not None:
            await self.stream_channel.close()


def build(settings: Settings) -> App:
    """The App for ``settings``; nothing is opened until ``start()``."""
    return App(settings=settings)
