"""The RTMP side of the ingest: pyrtmp's protocol with our controller.

pyrtmp (PyPI 0.3.1, MIT, pure-Python asyncio) parses the handshake, chunks and AMF0
commands; this controller decides. The stream key is checked in ``on_ns_publish``
(the publishing name of ``rtmp://host:port/live/<key>``) before anything is written:
a refusal answers ``onStatus NetStream.Publish.BadName`` (level ``error``) and closes
the connection. DESIGN.md: ``SimpleRTMPServer.create()`` ignores a custom controller,
so :func:`serve` starts the server itself with ``loop.create_server``.

Importing pyrtmp calls ``logging.basicConfig(level=DEBUG)`` and sets its loggers to
DEBUG; :func:`_pyrtmp` undoes both, so a service's JSON logging stays as configured.

pyrtmp 0.3.1 gives a type-3 chunk that STARTS a new message the previous message's
timestamp, where the RTMP specification (section 5.3.1.2.4) adds the previous
timestamp delta: ffmpeg's publisher sends such headers whenever type, size and delta
repeat (constant-size AAC frames), so audio timestamps fell behind by 1.5 % with a tone
and 32 % with a muted microphone, and glass-to-glass latency grew without bound
(bench/bench_live.py --audio silence). :func:`_read_raw_chunk` is pyrtmp's reader with
that one rule fixed as ffmpeg's own reader has it (``libavformat/rtmppkt.c``: a type-3
header repeats the last header's timestamp field, added to the last timestamp), and
:func:`_pyrtmp` installs it (DECISIONS.md, "Live video").

A connection that has not published within :data:`PUBLISH_TIMEOUT_S` is closed (idle
sockets would otherwise stay open for ever), and input pyrtmp cannot parse (anyone can
send bytes to the port) is logged as one warning line, not an error with a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyrtmp.session_manager import SessionManager

log = logging.getLogger(__name__)

BAD_NAME = "NetStream.Publish.BadName"
PUBLISH_TIMEOUT_S = 10.0
"""A connection must have published within this (handshake, connect, publish) (s)."""


class _QuietParseErrors(logging.Filter):
    """pyrtmp logs a client's unparseable input with ``logger.exception``: one warning
    line instead (the client's fault, not ours; and no log flood from a port scan)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info:
            exc = record.exc_info[1]
            record.msg = "RTMP connection dropped: input not understood (%r)"
            record.args = (exc,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


class Refused(Exception):
    """A publish the ingest will not take; the message goes to the encoder and the log."""


class IngestHandler(Protocol):
    """What the controller calls (svc_chat.ingest.IngestPart)."""

    async def publish(self, session: SessionManager, name: str) -> None:
        """Accept (return) or refuse (raise :class:`Refused`) ``name``'s publish."""

    async def metadata(self, session: SessionManager, meta: Any) -> None: ...

    async def media(self, session: SessionManager, kind: int, ts_ms: int, body: bytes) -> None: ...

    async def closed(self, session: SessionManager) -> None:
        """The connection is gone (any reason); called once per connection."""


async def _read_raw_chunk(self: Any) -> Any:
    """pyrtmp 0.3.1's ``SessionManager.read_raw_chunk`` with the type-3 timestamp fixed
    (see the module docstring); otherwise the same parsing."""
    from pyrtmp.messages import RawChunk

    stream = self.fifo_reader
    fields: dict[str, int] = self.state.setdefault("_ts_fields", {})
    fmt = await stream.read("uint:2")
    cs_id = await stream.read("uint:6")
    if cs_id == 0:
        cs_id = await stream.read("uint:8") + 64
    elif cs_id == 1:
        cs_id = await stream.read("uint:16") + 64
    previous = None if fmt == 0 else self.get_previous_chunk(cs_id)
    if fmt != 0 and previous is None:
        raise ValueError(f"chunk type {fmt} on chunk stream {cs_id} with no previous header")
    if fmt in (0, 1, 2):
        field = await stream.read("uint:24")
        if fmt == 0:
            msg_length = await stream.read("uint:24")
            msg_type_id = await stream.read("uint:8")
            msg_stream_id = await stream.read("uintle:32")
        elif fmt == 1:
            msg_length = await stream.read("uint:24")
            msg_type_id = await stream.read("uint:8")
            msg_stream_id = previous.msg_stream_id
        else:
            msg_length, msg_type_id = previous.msg_length, previous.msg_type_id
            msg_stream_id = previous.msg_stream_id
        if field >= 0xFFFFFF:
            field = await stream.read("uint:32")
        fields[str(cs_id)] = field
        timestamp = field if fmt == 0 else previous.timestamp + field
        sequence = 0 if fmt == 0 or previous.is_eof else previous.raw_chunk_number + 1
    else:
        msg_length, msg_type_id = previous.msg_length, previous.msg_type_id
        msg_stream_id = previous.msg_stream_id
        if previous.is_eof:  # a new message: the last delta again
            timestamp = previous.timestamp + fields.get(str(cs_id), 0)
            sequence = 0
        else:  # the next chunk of the same message
            timestamp = previous.timestamp
            sequence = previous.raw_chunk_number + 1
        if fields.get(str(cs_id), 0) >= 0xFFFFFF:
            await stream.read("uint:32")  # the extended timestamp is repeated
    total_read = self.reader_chunk_size * sequence
    bytes_length = min(self.reader_chunk_size, msg_length - total_read)
    payload = await stream.read(f"bytes:{bytes_length}")
    chunk = RawChunk(
        chunk_type=fmt,
        chunk_id=cs_id,
        timestamp=timestamp,
        msg_length=msg_length,
        msg_type_id=msg_type_id,
        msg_stream_id=msg_stream_id,
        payload=payload,
        raw_chunk_number=sequence,
        is_eof=(msg_length - total_read - bytes_length) == 0,
    )
    self.set_latest_chunk(chunk)
    return chunk


def _pyrtmp() -> Any:
    """pyrtmp's modules, imported once without its logging side effects."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    modules = {
        name: importlib.import_module(f"pyrtmp.{name}")
        for name in ("rtmp", "session_manager", "messages", "messages.command")
    }
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in (
        "pyrtmp",
        *(
            f"pyrtmp.{m}"
            for m in (
                "rtmp",
                "messages",
                "messages.data",
                "messages.command",
                "messages.user_control",
            )
        ),
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    modules["session_manager"].SessionManager.read_raw_chunk = _read_raw_chunk
    rtmp_log = logging.getLogger("pyrtmp.rtmp")
    if not any(isinstance(f, _QuietParseErrors) for f in rtmp_log.filters):
        rtmp_log.addFilter(_QuietParseErrors())
    return modules


def _status_chunk(message: Any, level: str, code: str, description: str) -> Any:
    """An ``onStatus`` command on the publishing message stream."""
    from bitstring import BitStream
    from pyrtmp.amf.serializers import AMF0Serializer
    from pyrtmp.messages import Chunk

    data = BitStream()
    AMF0Serializer.create_object(data, "onStatus")
    AMF0Serializer.create_object(data, 0)
    AMF0Serializer.create_object(data, None)
    AMF0Serializer.create_object(data, {"level": level, "code": code, "description": description})
    return Chunk(
        chunk_type=0,
        chunk_id=3,
        timestamp=0,
        msg_length=len(data.bytes),
        msg_type_id=0x14,
        msg_stream_id=message.msg_stream_id,
        payload=data.bytes,
    )


def make_controller(handler: IngestHandler) -> Any:
    """A pyrtmp controller that hands publish, metadata, media and close to ``handler``."""
    mods = _pyrtmp()
    simple = mods["rtmp"].SimpleRTMPController
    stream_closed = importlib.import_module("pyrtmp").StreamClosedException
    user_control = importlib.import_module("pyrtmp.messages.user_control")

    published: set[Any] = set()

    class Controller(simple):  # type: ignore[misc, valid-type]
        async def client_callback(self, reader: Any, writer: Any) -> None:
            def idle() -> None:
                if writer not in published:
                    writer.transport.abort()

            timer = asyncio.get_running_loop().call_later(PUBLISH_TIMEOUT_S, idle)
            try:
                await super().client_callback(reader, writer)
            finally:
                timer.cancel()
                published.discard(writer)

        async def on_ns_publish(self, session: SessionManager, message: Any) -> None:
            name = str(message.publishing_name or "")
            try:
                await handler.publish(session, name)
            except Refused as why:
                session.write_chunk_to_stream(_status_chunk(message, "error", BAD_NAME, str(why)))
                await session.drain()
                raise stream_closed(str(why)) from None
            published.add(session.writer)
            session.write_chunk_to_stream(user_control.StreamBegin(stream_id=1))
            session.write_chunk_to_stream(message.create_response())
            await session.drain()

        async def on_metadata(self, session: SessionManager, message: Any) -> None:
            await handler.metadata(session, getattr(message, "meta", None))

        async def on_video_message(self, session: SessionManager, message: Any) -> None:
            try:
                await handler.media(session, 9, message.timestamp, message.payload)
            except Refused as why:  # logged by the handler; the publisher is dropped
                raise stream_closed(str(why)) from None

        async def on_audio_message(self, session: SessionManager, message: Any) -> None:
            try:
                await handler.media(session, 8, message.timestamp, message.payload)
            except Refused as why:
                raise stream_closed(str(why)) from None

        async def on_unknown_message(self, session: SessionManager, message: Any) -> None:
            pass  # FCPublish, releaseStream, _checkbw...: nothing to answer

        async def cleanup(self, session: SessionManager) -> None:
            await handler.closed(session)

    return Controller()


async def serve(handler: IngestHandler, host: str, port: int) -> asyncio.Server:
    """The RTMP listener on ``host:port`` (0: a free port), serving now."""
    protocol = _pyrtmp()["rtmp"].RTMPProtocol
    controller = make_controller(handler)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: protocol(controller=controller), host=host, port=port)
