"""Settings of svc_chat's chat part (a group of svc_chat.settings.Settings).

Bounds are checked once in ``__post_init__``: a bad value fails the start naming its
variable, instead of a chat that silently drops everyone or never trims its history.
"""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import SettingError, setting


@dataclass(frozen=True)
class ChatSettings:
    """History, delivery and moderation limits of the chat (svc_chat.chat)."""

    # History and recovery (Centrifugo's history_size / history_ttl / history_meta_ttl).
    history_size: int = setting(
        1000,
        "REELS_CHAT_HISTORY_SIZE",
        "publications kept per channel for recovery and GetChatHistory (the last N)",
    )
    history_ttl_s: float = setting(
        86400.0,
        "REELS_CHAT_HISTORY_TTL_S",
        "a channel's history is dropped this long after its last publication (s)",
    )
    history_meta_ttl_s: float = setting(
        7 * 86400.0,
        "REELS_CHAT_HISTORY_META_TTL_S",
        "a channel's offset, epoch and moderation state live this long after its last "
        "publication or moderation action; past it a new epoch starts (s)",
    )
    idempotency_ttl_s: float = setting(
        86400.0,
        "REELS_CHAT_IDEMPOTENCY_TTL_S",
        "a retried send with the same client_message_id returns the first result for this long (s)",
    )
    max_message_chars: int = setting(
        500, "REELS_CHAT_MAX_MESSAGE_CHARS", "longest chat message, in code points after NFC"
    )

    # Delivery (Owncast's bounded per-client buffer).
    queue_size: int = setting(
        256,
        "REELS_CHAT_QUEUE_SIZE",
        "publications one subscriber may have waiting; past it the subscriber gets "
        "SLOW_CONSUMER and is disconnected",
    )
    subscribe_timeout_s: float = setting(
        5.0,
        "REELS_CHAT_SUBSCRIBE_TIMEOUT_S",
        "how long a new subscription waits for Redis to confirm the channel (s)",
    )
    channel_linger_s: float = setting(
        30.0,
        "REELS_CHAT_CHANNEL_LINGER_S",
        "an instance stays subscribed to a channel this long after its last local "
        "subscriber left, so reconnect storms do not churn Redis (s)",
    )
    viewer_touch_s: float = setting(
        10.0,
        "REELS_CHAT_VIEWER_TOUCH_S",
        "how often chat subscribers are reported as viewers of their stream (s)",
    )

    # Moderation.
    rate_limit: int = setting(
        20, "REELS_CHAT_RATE_LIMIT", "messages one user may send per window per stream"
    )
    rate_window_s: float = setting(
        30.0, "REELS_CHAT_RATE_WINDOW_S", "the sliding window of the rate limit (s)"
    )
    privileged_rate_limit: int = setting(
        100,
        "REELS_CHAT_PRIVILEGED_RATE_LIMIT",
        "messages the creator or a moderator may send per window",
    )

    # streams.chat relay (Redis stream -> Kafka).
    relay_batch: int = setting(
        500, "REELS_CHAT_RELAY_BATCH", "publications the relay sends to Kafka per round"
    )
    relay_claim_idle_s: float = setting(
        30.0,
        "REELS_CHAT_RELAY_CLAIM_IDLE_S",
        "publications another instance read but did not relay for this long are taken "
        "over (XAUTOCLAIM) (s)",
    )
    relay_max_len: int = setting(
        1_000_000,
        "REELS_CHAT_RELAY_MAX_LEN",
        "safety cap of the relay stream while Kafka is down (relayed entries are deleted)",
    )

    def __post_init__(self) -> None:
        checks = [
            (self.history_size >= 1, "REELS_CHAT_HISTORY_SIZE must be at least 1"),
            (self.history_ttl_s >= 1, "REELS_CHAT_HISTORY_TTL_S must be at least 1 s"),
            (
                self.history_meta_ttl_s >= self.history_ttl_s,
                "REELS_CHAT_HISTORY_META_TTL_S must be >= REELS_CHAT_HISTORY_TTL_S",
            ),
            (self.idempotency_ttl_s >= 1, "REELS_CHAT_IDEMPOTENCY_TTL_S must be at least 1 s"),
            (self.max_message_chars >= 1, "REELS_CHAT_MAX_MESSAGE_CHARS must be at least 1"),
            (self.queue_size >= 1, "REELS_CHAT_QUEUE_SIZE must be at least 1"),
            (self.subscribe_timeout_s > 0, "REELS_CHAT_SUBSCRIBE_TIMEOUT_S must be positive"),
            (self.channel_linger_s >= 0, "REELS_CHAT_CHANNEL_LINGER_S must be >= 0"),
            (self.viewer_touch_s > 0, "REELS_CHAT_VIEWER_TOUCH_S must be positive"),
            (self.rate_limit >= 1, "REELS_CHAT_RATE_LIMIT must be at least 1"),
            (self.rate_window_s > 0, "REELS_CHAT_RATE_WINDOW_S must be positive"),
            (
                self.privileged_rate_limit >= self.rate_limit,
                "REELS_CHAT_PRIVILEGED_RATE_LIMIT must be >= REELS_CHAT_RATE_LIMIT",
            ),
            (self.relay_batch >= 1, "REELS_CHAT_RELAY_BATCH must be at least 1"),
            (self.relay_claim_idle_s > 0, "REELS_CHAT_RELAY_CLAIM_IDLE_S must be positive"),
            (self.relay_max_len >= 1000, "REELS_CHAT_RELAY_MAX_LEN must be at least 1000"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingError(message)
