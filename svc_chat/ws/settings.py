"""Settings of svc_chat's ws part (a group of svc_chat.settings.Settings)."""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import SettingError, setting

# svc_chat's WebSocket port under `make up`; Envoy's FrontDoorSettings.chat_ws_port
# reads the same variable (REELS_CHAT_WS_PORT), as the tus port does for svc_upload.
DEFAULT_WS_PORT = 50065


@dataclass(frozen=True)
class WebSocketSettings:
    """The chat WebSocket (``/api/v1/streams/{stream_id}/chat/ws``) and its tickets."""

    host: str = setting("127.0.0.1", "REELS_CHAT_WS_HOST", "chat WebSocket listen host")
    port: int = setting(
        DEFAULT_WS_PORT, "REELS_CHAT_WS_PORT", "chat WebSocket port (0: a free one)"
    )
    ticket_ttl_seconds: float = setting(
        30.0, "REELS_CHAT_TICKET_TTL_S", "a chat WebSocket ticket expires after (s)"
    )
    max_frame_bytes: int = setting(
        8192,
        "REELS_CHAT_WS_MAX_FRAME_BYTES",
        "largest client frame read (bytes); a larger one gets an error frame",
    )
    hard_frame_bytes: int = setting(
        65536,
        "REELS_CHAT_WS_HARD_FRAME_BYTES",
        "a client frame over this closes the socket with 1009 (bytes)",
    )
    heartbeat_seconds: float = setting(
        20.0,
        "REELS_CHAT_WS_HEARTBEAT_S",
        "ping interval; no pong within half of it closes (s; 0: no pings)",
    )
    send_timeout_seconds: float = setting(
        5.0,
        "REELS_CHAT_WS_SEND_TIMEOUT_S",
        "a frame the client's socket does not take within this drops it (s)",
    )
    max_bad_frames: int = setting(
        50,
        "REELS_CHAT_WS_MAX_BAD_FRAMES",
        "invalid client frames in a row before the socket is closed with 1008",
    )

    def __post_init__(self) -> None:
        for ok, message in (
            (0 <= self.port <= 65535, "REELS_CHAT_WS_PORT must be 0..65535"),
            (self.ticket_ttl_seconds > 0, "REELS_CHAT_TICKET_TTL_S must be positive"),
            (self.max_frame_bytes >= 1024, "REELS_CHAT_WS_MAX_FRAME_BYTES must be >= 1024"),
            (
                self.hard_frame_bytes >= self.max_frame_bytes,
                "REELS_CHAT_WS_HARD_FRAME_BYTES must be >= REELS_CHAT_WS_MAX_FRAME_BYTES",
            ),
            (self.heartbeat_seconds >= 0, "REELS_CHAT_WS_HEARTBEAT_S must be >= 0 (0: off)"),
            (self.send_timeout_seconds > 0, "REELS_CHAT_WS_SEND_TIMEOUT_S must be positive"),
            (self.max_bad_frames >= 1, "REELS_CHAT_WS_MAX_BAD_FRAMES must be at least 1"),
        ):
            if not ok:
                raise SettingError(message)
