"""`python -m svc_stream`: serve until SIGTERM, then drain and exit."""

from reels.server import serve_forever
from svc_stream.app import build
from svc_stream.settings import Settings

if __name__ == "__main__":
    serve_forever(build(Settings.from_env()))
