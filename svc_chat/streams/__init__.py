"""svc_chat's streams part (see svc_chat.parts and svc_chat.streams.part)."""

from __future__ import annotations

from svc_chat.parts import Context
from svc_chat.streams.model import StreamInfo
from svc_chat.streams.part import StreamsPart

__all__ = ["StreamInfo", "StreamsPart", "build"]


def build(ctx: Context) -> StreamsPart:
    return StreamsPart(ctx)
