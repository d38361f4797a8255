"""`python -m svc_upload`: serve until SIGTERM, then drain and exit."""

import asyncio

from reels.server import serve_forever
from svc_upload.server import build

if __name__ == "__main__":
    asyncio.run(serve_forever("upload", build))
