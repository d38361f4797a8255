"""svc_chat's composition root: the typed App that ``python -m svc_chat`` serves."""

from __future__ import annotations

from dataclasses import dataclass, field

from reels.v1 import chat_pb2_grpc

from reels.server import AppBase, Registration
from reels.supervise import Supervisor
from svc_chat.server import ChatService
from svc_chat.settings import Settings


@dataclass
class App(AppBase):
    """Live streams and chat (the contract is served; later releases fill it in)."""

    settings: Settings
    supervisor: Supervisor = field(default_factory=lambda: Supervisor("chat"))
    name: str = "chat"

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
