"""`python -m svc_upload`: serve until SIGTERM, then drain and exit."""

from reels.server import serve_forever
from svc_upload.app import build
from svc_upload.settings import Settings

if __name__ == "__main__":
    serve_forever(build(Settings.from_env()))
