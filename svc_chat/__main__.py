"""`python -m svc_chat`: serve until SIGTERM, then drain and exit."""

from reels.server import serve_forever
from svc_chat.app import build
from svc_chat.settings import Settings

if __name__ == "__main__":
    serve_forever(build(Settings.from_env()))
