import json
import time
from dataclasses import asdict

from tests.fixtures.mesh import Mesh


def test_hold(mesh: Mesh) -> None:
    info = {
        "ports": mesh.ports,
        "upload_http_port": mesh.upload_http_port,
        "otlp_port": mesh.otlp_port,
        "media_port": mesh.backends.media_port,
        "front_port": mesh.backends.front_port,
    }
    open("/tmp/hold/mesh.json", "w").write(json.dumps(info))
    time.sleep(3000)
