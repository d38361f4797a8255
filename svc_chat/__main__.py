"""`python -m svc_chat`: serve until SIGTERM, then drain and exit."""

import asyncio

from reels.server import serve_forever
from svc_chat.server import build

if __name__ == "__main__":
    asyncio.run(serve_forever("chat", build))
