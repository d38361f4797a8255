"""svc_chat's settings: one frozen dataclass, read from the environment once.

Each part owns its group: ``streams`` (svc_chat.streams.settings), ``chat``
(svc_chat.chat.settings), ``ws`` (svc_chat.ws.settings).
"""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import FromEnv, PlatformSettings, ServerSettings, group, server_group
from svc_chat.chat.settings import ChatSettings
from svc_chat.ingest.settings import IngestSettings
from svc_chat.streams.settings import StreamSettings
from svc_chat.ws.settings import WebSocketSettings


@dataclass(frozen=True)
class Settings(FromEnv):
    """Everything svc_chat reads from the environment (README, "Service settings")."""

    server: ServerSettings = server_group("chat")
    platform: PlatformSettings = group(PlatformSettings)
    streams: StreamSettings = group(StreamSettings, "live streams: lifecycle, keys, viewers")
    chat: ChatSettings = group(ChatSettings, "chat: history, delivery, moderation limits")
    ws: WebSocketSettings = group(WebSocketSettings, "chat WebSocket server and tickets")
    ingest: IngestSettings = group(IngestSettings, "RTMP ingest and the live HLS ladder")
