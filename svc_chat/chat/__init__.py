"""svc_chat's chat part (see svc_chat.parts)."""

from __future__ import annotations

from typing import Any

from svc_chat.parts import Context


class ChatPart:
    """Placeholder until the part is written: starts and stops nothing."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def build(ctx: Context) -> Any:
    return ChatPart(ctx)
