"""`python -m svc_rank`: serve until SIGTERM, then drain and exit."""

from reels.server import serve_forever
from svc_rank.app import build
from svc_rank.settings import Settings

if __name__ == "__main__":
    serve_forever(build(Settings.from_env()))
