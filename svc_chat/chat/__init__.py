"""svc_chat's chat part (see svc_chat.parts): ordered, recoverable chat across instances.

The part object (:class:`~svc_chat.chat.part.ChatPart`) carries the core API the
transports share (``send``, ``subscribe``, ``history``, ``moderate``, ``stream_started``,
``stream_ended``) and the gRPC RPCs ChatService delegates to it; its docstring is the
reference.
"""

from __future__ import annotations

from svc_chat.chat.part import ChatPart, StreamNotLive
from svc_chat.chat.subscription import Subscription
from svc_chat.parts import Context


def build(ctx: Context) -> ChatPart:
    return ChatPart(ctx)


__all__ = ["ChatPart", "StreamNotLive", "Subscription", "build"]
