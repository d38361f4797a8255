"""FLV framing of RTMP media messages, for ffmpeg's ``-f flv -i pipe:0``. Pure.

An RTMP audio/video/data message body is exactly an FLV tag body (Adobe FLV spec v10.1,
E.4), so a tag is an 11-byte header (type, 24-bit size, 24+8-bit timestamp in ms,
stream id 0), the body, and the 4-byte size of the tag just written. Written with
``struct`` rather than pyrtmp's bitstring ``FLVWriter``: a live 720p stream is a few
hundred tags a second and this is on the event loop.
"""

from __future__ import annotations

import struct

AUDIO = 8
VIDEO = 9
SCRIPT = 18


def header(*, audio: bool = True, video: bool = True) -> bytes:
    """The FLV file header plus PreviousTagSize0 (13 bytes)."""
    flags = (4 if audio else 0) | (1 if video else 0)
    return b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + struct.pack(">I", 0)


def tag(kind: int, timestamp_ms: int, body: bytes) -> bytes:
    """One FLV tag (and its trailing PreviousTagSize) carrying ``body``."""
    if kind not in (AUDIO, VIDEO, SCRIPT):
        raise ValueError(f"FLV tag type {kind} is not audio, video or script data")
    size = len(body)
    if size >= 1 << 24:
        raise ValueError(f"FLV tag body of {size} bytes exceeds 24 bits")
    ts = timestamp_ms & 0xFFFFFFFF
    head = struct.pack(">B", kind) + size.to_bytes(3, "big")
    head += (ts & 0xFFFFFF).to_bytes(3, "big") + bytes([ts >> 24]) + b"\x00\x00\x00"
    return head + body + struct.pack(">I", 11 + size)


def is_keyframe(video_body: bytes) -> bool:
    """Whether an FLV video body starts a keyframe (FrameType 1, the high nibble)."""
    return bool(video_body) and video_body[0] >> 4 == 1
