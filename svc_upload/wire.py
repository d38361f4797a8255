"""Zero-copy parsing of the two request messages that carry file bytes.

protobuf's ``FromString`` copies a 4 MiB chunk into its arena, and reading the
``bytes`` field copies it again; at 500 MB per upload that is a gigabyte of memcpy
and page faults on the event loop thread. These parsers read the (tiny) wire format
of ``UploadChunkRequest`` and ``UploadVideoRequest`` directly and hand out the chunk
as a ``memoryview`` into the buffer gRPC received: one copy of the bytes in memory,
the one the socket delivered. Everything else (the metadata message) still goes
through protobuf.

``swap_deserializers`` registers a servicer with these parsers in place of the
generated ``FromString`` for the listed methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from reels.v1 import upload_pb2

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class WireError(ValueError):
    """The bytes are not a valid encoding of the message."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(raw: bytes) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value): an int, or a memoryview for length-delimited."""
    buf = memoryview(raw)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, kind = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if kind == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, kind, value
        elif kind == _LEN:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise WireError("length-delimited field runs past the message")
            yield number, kind, buf[pos : pos + length]
            pos += length
        elif kind == _I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield number, kind, int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif kind == _I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield number, kind, int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"unsupported wire type {kind}")


def _int64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(slots=True)
class ChunkRequest:
    """``UploadChunkRequest`` with ``data`` a view into the received buffer."""

    upload_id: str = ""
    offset: int = 0
    data: bytes | memoryview = b""


def parse_upload_chunk(raw: bytes) -> ChunkRequest:
    request = ChunkRequest()
    for number, kind, value in _fields(raw):
        if number == 1 and kind == _LEN:
            request.upload_id = bytes(value).decode()  # type: ignore[arg-type]
        elif number == 2 and kind == _VARINT:
            request.offset = _int64(value)  # type: ignore[arg-type]
        elif number == 3 and kind == _LEN:
            request.data = value  # type: ignore[assignment]
        # anything else: unknown field, skipped as protobuf would
    return request


@dataclass(slots=True)
class VideoRequest:
    """``UploadVideoRequest``: the ``payload`` oneof, ``chunk`` a view (last one wins)."""

    metadata: upload_pb2.UploadMetadata | None = None
    chunk: bytes | memoryview | None = None

    def WhichOneof(self, name: str) -> str | None:  # noqa: N802 - protobuf's spelling
        if name != "payload":
            raise ValueError(f"no oneof named {name!r}")
        if self.metadata is not None:
            return "metadata"
        return "chunk" if self.chunk is not None else None


def parse_upload_video(raw: bytes) -> VideoRequest:
    request = VideoRequest()
    for number, kind, value in _fields(raw):
        if number == 1 and kind == _LEN:
            # A repeated embedded message merges into the earlier one (protobuf encoding
            # spec, "Last One Wins" for scalars, merge for messages).
            if request.metadata is None:
                request.metadata = upload_pb2.UploadMetadata()
            request.metadata.MergeFromString(bytes(value))  # type: ignore[arg-type]
            request.chunk = None
        elif number == 2 and kind == _LEN:
            request.chunk = value  # type: ignore[assignment]
            request.metadata = None
    return request


class _Capture:
    """Stands in for the server while generated code registers a servicer."""

    def __init__(self, server: Any, swaps: dict[str, Callable[[bytes], object]]) -> None:
        self.server = server
        self.swaps = swaps
        self.done = False

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # rebuilt from the method table below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        table = {
            method: (
                handler._replace(request_deserializer=self.swaps[method])
                if method in self.swaps
                else handler
            )
            for method, handler in handlers.items()
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, table),)
        )
        self.server.add_registered_method_handlers(service, table)
        self.done = True


def swap_deserializers(
    add: Callable[[Any, Any], None],
    swaps: dict[str, Callable[[bytes], object]],
) -> Callable[[Any, Any], None]:
    """``add_XServicer_to_server`` with the request parsers of ``swaps`` by method name."""

    def add_swapped(servicer: Any, server: Any) -> None:
        capture = _Capture(server, swaps)
        add(servicer, capture)
        if not capture.done:  # generated code of another gRPC version: plain registration
            add(servicer, server)

    return add_swapped


UPLOAD_SWAPS: dict[str, Callable[[bytes], object]] = {
    "UploadChunk": parse_upload_chunk,
    "UploadVideo": parse_upload_video,
}
