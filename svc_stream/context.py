"""Everything svc_stream's RPC groups share, built once per process in server.build().

svc_stream is the only process that opens the analytics store (chDB allows one
process per data path), so the Analytics handle lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

StopHook = Callable[[], Awaitable[None]]


@dataclass
class StreamContext:
    redis: aioredis.Redis
    # Filled by build(): sessionmaker (Postgres), analytics (chDB/ClickHouse), object
    # store, catalog of published videos, Kafka producer, signing keys, settings...
    extras: dict[str, Any] = field(default_factory=dict)
    on_stop: list[StopHook] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.extras[name]
        except KeyError:
            raise AttributeError(name) from None
