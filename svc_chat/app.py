"""svc_chat's composition root: the typed App that ``python -m svc_chat`` serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reels.v1 import chat_pb2_grpc

from reels.config import PlatformSettings, ServerSettings
from reels.server import Registration
from reels.supervise import Supervisor
from svc_chat.server import ChatService
from svc_chat.settings import Settings


@dataclass
class App:
    """Live streams and chat (the contract is served; later releases fill it in)."""

    settings: Settings
    supervisor: Supervisor = field(default_factory=lambda: Supervisor("chat"))
    name: str = "chat"

    @property
    def server(self) -> ServerSettings:
        return self.settings.server

    @property
    def platform(self) -> PlatformSettings:
        return self.settings.platform

    @property
    def grpc_options(self) -> Sequence[tuple[str, Any]]:
        return ()

    async def start(self) -> None:
        await self.supervisor.start()

    def registrations(self) -> list[Registration]:
        return [
            (chat_pb2_grpc.add_ChatServiceServicer_to_server, ChatService(), "reels.v1.ChatService")
        ]

    async def stop(self) -> None:
        await self.supervisor.stop()


def build(settings: Settings) -> App:
    """The App for ``settings``; nothing is opened until ``start()``."""
    return App(settings=settings)
