"""RTMP chunk headers as the ingest reads them (svc_chat.ingest.rtmp._read_raw_chunk).

RTMP specification 5.3.1.2: a type-3 header that starts a new message repeats the last
timestamp delta. pyrtmp 0.3.1 repeated the timestamp instead, so audio from ffmpeg's
publisher (type-3 headers for every constant-size AAC frame) fell behind.
"""

from __future__ import annotations

import asyncio

from svc_chat.ingest import rtmp


def _basic(fmt: int, cs_id: int) -> bytes:
    return bytes([(fmt << 6) | cs_id])


def _u24(v: int) -> bytes:
    return v.to_bytes(3, "big")


async def _read_all(data: bytes, count: int) -> list[tuple[int, int, int, bool]]:
    modules = rtmp._pyrtmp()  # noqa: SLF001 - installs the fixed reader
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    session = modules["session_manager"].SessionManager(reader=reader, writer=None)
    out = []
    for _ in range(count):
        chunk = await session.read_raw_chunk()
        out.append((chunk.timestamp, chunk.msg_length, chunk.raw_chunk_number, chunk.is_eof))
    return out


def test_a_type_3_header_that_starts_a_message_adds_the_last_delta() -> None:
    data = (
        _basic(0, 4) + _u24(100) + _u24(10) + bytes([8]) + (1).to_bytes(4, "little") + b"a" * 10
        + _basic(1, 4) + _u24(23) + _u24(10) + bytes([8]) + b"b" * 10
        + _basic(3, 4) + b"c" * 10
        + _basic(3, 4) + b"d" * 10
    )  # fmt: skip
    got = asyncio.run(_read_all(data, 4))
    assert [ts for ts, *_ in got] == [100, 123, 146, 169]


def test_a_type_3_continuation_chunk_keeps_its_messages_timestamp() -> None:
    data = (
        _basic(0, 6) + _u24(40) + _u24(200) + bytes([9]) + (1).to_bytes(4, "little") + b"v" * 128
        + _basic(3, 6) + b"v" * 72
        + _basic(2, 6) + _u24(33) + b"w" * 128
        + _basic(3, 6) + b"w" * 72
        + _basic(3, 6) + b"x" * 128
    )  # fmt: skip
    got = asyncio.run(_read_all(data, 5))
    assert got == [
        (40, 200, 0, False),
        (40, 200, 1, True),
        (73, 200, 0, False),
        (73, 200, 1, True),
        (106, 200, 0, False),
    ]
