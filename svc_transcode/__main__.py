"""`python -m svc_transcode`: serve until SIGTERM, then drain and exit."""

from reels.server import serve_forever
from svc_transcode.app import build
from svc_transcode.settings import Settings

if __name__ == "__main__":
    serve_forever(build(Settings.from_env()))
