"""The hand-written chunk parser (svc_upload/wire.py) against protobuf's own parser.

Rule under test: for every byte string, the zero-copy parser either yields exactly
what ``reels.v1.upload_pb2`` would, or refuses the bytes. It must never "half parse":
a truncated or hostile message is rejected, not turned into a chunk at a wrong offset.
"""

from __future__ import annotations

import random

import pytest
from google.protobuf.message import DecodeError
from reels.v1 import upload_pb2, upload_pb2_grpc

from svc_upload import wire
from svc_upload.wire import WireError, parse_upload_chunk, parse_upload_video

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


# --------------------------------------------------------------------------- helpers


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def len_field(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def chunk_tuple(raw: bytes) -> tuple[str, int, bytes]:
    parsed = parse_upload_chunk(raw)
    return parsed.upload_id, parsed.offset, bytes(parsed.data)


def proto_chunk_tuple(raw: bytes) -> tuple[str, int, bytes]:
    msg = upload_pb2.UploadChunkRequest.FromString(raw)
    return msg.upload_id, msg.offset, msg.data


def outcome(parse, raw: bytes):  # noqa: ANN001, ANN202 - parse: bytes -> tuple
    """The parsed tuple, or None when the parser refuses the bytes."""
    try:
        return parse(raw)
    except (ValueError, DecodeError):
        return None


def random_unknown_field(rng: random.Random) -> bytes:
    number = rng.randint(4, 5000)
    kind = rng.choice([0, 1, 2, 5])
    if kind == 0:
        return key(number, 0) + varint(rng.getrandbits(64))
    if kind == 1:
        return key(number, 1) + rng.randbytes(8)
    if kind == 5:
        return key(number, 5) + rng.randbytes(4)
    return len_field(number, rng.randbytes(rng.randint(0, 20)))


def random_text(rng: random.Random) -> str:
    alphabet = "abcXYZ019-_ é漢🎬\x00"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


def random_offset(rng: random.Random) -> int:
    return rng.choice(
        [0, 1, 127, 128, 4 << 20, INT64_MAX, INT64_MIN, -1, rng.randint(INT64_MIN, INT64_MAX)]
    )


# --------------------------------------------------------------------------- valid input


def test_a_chunk_encoded_by_protobuf_parses_to_the_same_fields() -> None:
    raw = upload_pb2.UploadChunkRequest(
        upload_id="3f2c1d9e-upload", offset=8 << 20, data=b"\x00\x01frame-bytes" * 1000
    ).SerializeToString()
    assert chunk_tuple(raw) == ("3f2c1d9e-upload", 8 << 20, b"\x00\x01frame-bytes" * 1000)


def test_empty_message_is_the_default_chunk_not_an_error() -> None:
    assert chunk_tuple(b"") == ("", 0, b"")
    assert parse_upload_video(b"").WhichOneof("payload") is None


def test_chunk_data_is_a_view_into_the_received_buffer_not_a_copy() -> None:
    raw = upload_pb2.UploadChunkRequest(upload_id="u", data=b"x" * 4096).SerializeToString()
    parsed = parse_upload_chunk(raw)
    assert isinstance(parsed.data, memoryview)
    assert parsed.data.obj is raw
    assert parsed.data.nbytes == 4096


@pytest.mark.parametrize("offset", [0, 1, 2**31, INT64_MAX, -1, INT64_MIN])
def test_offset_survives_the_full_int64_range(offset: int) -> None:
    raw = upload_pb2.UploadChunkRequest(upload_id="u", offset=offset).SerializeToString()
    assert parse_upload_chunk(raw).offset == offset


def test_unknown_fields_are_skipped_as_protobuf_skips_them() -> None:
    raw = (
        key(15, 0) + varint(99)
        + len_field(1, b"up-1")
        + key(16, 1) + b"\x01" * 8
        + key(2, 0) + varint(42)
        + key(17, 5) + b"\x02" * 4
        + len_field(900, b"future field")
        + len_field(3, b"payload")
    )  # fmt: skip
    assert chunk_tuple(raw) == proto_chunk_tuple(raw) == ("up-1", 42, b"payload")


def test_known_field_with_the_wrong_wire_type_is_ignored_like_protobuf() -> None:
    # upload_id sent as a varint, offset as a string, data as fixed64: all unknown fields.
    raw = key(1, 0) + varint(7) + len_field(2, b"12") + key(3, 1) + b"\x00" * 8
    assert chunk_tuple(raw) == proto_chunk_tuple(raw) == ("", 0, b"")


def test_a_repeated_scalar_field_takes_the_last_value_like_protobuf() -> None:
    raw = len_field(1, b"a") + len_field(3, b"first") + len_field(1, b"b") + len_field(3, b"2nd")
    assert chunk_tuple(raw) == proto_chunk_tuple(raw) == ("b", 0, b"2nd")


def test_an_overlong_but_valid_varint_is_accepted_like_protobuf() -> None:
    raw = key(2, 0) + b"\x85\x80\x80\x00"  # 5, padded to four bytes
    assert chunk_tuple(raw) == proto_chunk_tuple(raw) == ("", 5, b"")


def test_randomized_chunk_round_trips_match_protobuf() -> None:
    rng = random.Random(20240607)
    for _ in range(1500):
        msg = upload_pb2.UploadChunkRequest(
            upload_id=random_text(rng),
            offset=random_offset(rng),
            data=rng.randbytes(rng.choice([0, 1, 2, 127, 128, 300, rng.randint(0, 5000)])),
        )
        raw = msg.SerializeToString()
        if rng.random() < 0.5:  # splice in unknown fields between the known ones
            parts = [len_field(1, msg.upload_id.encode()), key(2, 0) + varint(msg.offset)]
            parts.append(len_field(3, msg.data))
            for _ in range(rng.randint(1, 4)):
                parts.insert(rng.randint(0, len(parts)), random_unknown_field(rng))
            raw = b"".join(parts)
        assert chunk_tuple(raw) == (msg.upload_id, msg.offset, msg.data), raw[:60]
        assert chunk_tuple(raw) == proto_chunk_tuple(raw)


def test_randomized_upload_video_messages_match_protobuf() -> None:
    rng = random.Random(99)
    for _ in range(500):
        if rng.random() < 0.5:
            msg = upload_pb2.UploadVideoRequest(
                metadata=upload_pb2.UploadMetadata(
                    title=random_text(rng),
                    hashtags=[random_text(rng) for _ in range(rng.randint(0, 3))],
                    declared_size_bytes=rng.randint(0, 1 << 40),
                    filename=random_text(rng),
                )
            )
        else:
            msg = upload_pb2.UploadVideoRequest(chunk=rng.randbytes(rng.randint(0, 3000)))
        raw = msg.SerializeToString()
        ours = parse_upload_video(raw)
        assert ours.WhichOneof("payload") == msg.WhichOneof("payload")
        if msg.WhichOneof("payload") == "metadata":
            assert ours.metadata == msg.metadata
        else:
            assert bytes(ours.chunk) == msg.chunk  # type: ignore[arg-type]


def test_upload_video_oneof_keeps_only_the_last_member_like_protobuf() -> None:
    meta = upload_pb2.UploadMetadata(title="t").SerializeToString()
    chunk_then_meta = len_field(2, b"bytes") + len_field(1, meta)
    meta_then_chunk = len_field(1, meta) + len_field(2, b"bytes")

    ours = parse_upload_video(chunk_then_meta)
    theirs = upload_pb2.UploadVideoRequest.FromString(chunk_then_meta)
    assert ours.WhichOneof("payload") == theirs.WhichOneof("payload") == "metadata"
    assert ours.chunk is None and ours.metadata.title == "t"  # type: ignore[union-attr]

    ours = parse_upload_video(meta_then_chunk)
    assert ours.WhichOneof("payload") == "chunk" and ours.metadata is None
    assert bytes(ours.chunk) == b"bytes"  # type: ignore[arg-type]


def test_an_empty_chunk_is_present_not_absent() -> None:
    # `chunk = b""` still selects the oneof member; the service must see "chunk".
    raw = upload_pb2.UploadVideoRequest(chunk=b"").SerializeToString()
    assert parse_upload_video(raw).WhichOneof("payload") == "chunk"


def test_which_oneof_refuses_a_name_that_is_not_the_oneof() -> None:
    with pytest.raises(ValueError):
        parse_upload_video(b"").WhichOneof("nope")


def test_a_split_metadata_field_is_merged_like_protobuf() -> None:
    raw = len_field(1, len_field(1, b"title")) + len_field(1, len_field(2, b"description"))
    theirs = upload_pb2.UploadVideoRequest.FromString(raw)
    assert (theirs.metadata.title, theirs.metadata.description) == ("title", "description")
    assert parse_upload_video(raw).metadata == theirs.metadata


# --------------------------------------------------------------------------- hostile input


def test_truncated_chunk_is_rejected_not_misparsed() -> None:
    raw = upload_pb2.UploadChunkRequest(
        upload_id="u-1", offset=1 << 30, data=b"0123456789" * 20
    ).SerializeToString()
    for cut in range(1, len(raw)):
        prefix = raw[:cut]
        ours, theirs = outcome(chunk_tuple, prefix), outcome(proto_chunk_tuple, prefix)
        assert ours == theirs, cut
        if ours is not None:  # a cut exactly between fields: a shorter, valid message
            assert ours[2] in (b"", raw[-200:]), cut
    # cutting into the data field can never produce a shorter chunk at the same offset
    with pytest.raises(WireError):
        parse_upload_chunk(raw[:-1])


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (key(3, 2) + varint(10) + b"short", "length past the end"),
        (key(3, 2) + varint((1 << 63) - 1), "huge declared length"),
        (key(3, 2) + varint(1 << 62) + b"x" * 64, "huge declared length with bytes"),
        (key(1, 2) + b"\xff\xff\xff\xff\x0f", "4 GiB string in a 6-byte message"),
        (key(2, 0) + b"\xff" * 10 + b"\x01", "varint longer than 10 bytes"),
        (key(2, 0) + b"\x80" * 20, "varint that never ends"),
        (key(2, 0), "varint value missing"),
        (key(2, 0) + b"\x80", "varint cut mid-way"),
        (b"\x80", "key cut mid-way"),
        (key(17, 1) + b"\x00" * 7, "truncated fixed64"),
        (key(17, 5) + b"\x00" * 3, "truncated fixed32"),
        (key(4, 6), "wire type 6"),
        (key(4, 7), "wire type 7"),
        (b"\x00", "field number 0"),
        (b"\x02\x00", "field number 0, length-delimited"),
    ],
)
def test_hostile_chunk_is_rejected_like_protobuf_rejects_it(raw: bytes, why: str) -> None:
    with pytest.raises(DecodeError):
        upload_pb2.UploadChunkRequest.FromString(raw)
    with pytest.raises(WireError):
        parse_upload_chunk(raw)
    with pytest.raises(WireError):
        parse_upload_video(raw)


def test_a_huge_declared_length_is_refused_without_allocating_it() -> None:
    # A 16-byte request claiming an 8 EiB chunk must fail fast, not try to read it.
    raw = len_field(1, b"u") + key(3, 2) + varint(1 << 63)
    with pytest.raises(WireError, match="past the message"):
        parse_upload_chunk(raw)


def test_a_ten_byte_varint_keeps_only_64_bits_like_protobuf() -> None:
    raw = key(2, 0) + b"\xff" * 9 + b"\x7f"  # the 10th byte carries more than bit 63
    assert chunk_tuple(raw) == proto_chunk_tuple(raw) == ("", -1, b"")


def test_invalid_utf8_upload_id_is_rejected() -> None:
    raw = len_field(1, b"\xff\xfe") + len_field(3, b"data")
    with pytest.raises(DecodeError):
        upload_pb2.UploadChunkRequest.FromString(raw)
    with pytest.raises(ValueError):  # UnicodeDecodeError today, not WireError
        parse_upload_chunk(raw)


def test_garbage_metadata_inside_upload_video_is_rejected() -> None:
    raw = len_field(1, key(1, 2) + varint(50) + b"x")
    with pytest.raises(DecodeError):
        upload_pb2.UploadVideoRequest.FromString(raw)
    with pytest.raises((ValueError, DecodeError)):  # protobuf's DecodeError, passed through
        parse_upload_video(raw)


def test_randomly_corrupted_chunks_are_never_misparsed() -> None:
    """Flip, insert and drop bytes of valid chunks; compare with protobuf's verdict.

    Known, accepted differences: wire.py refuses group wire types (3/4), which no proto3
    encoder emits, and skips field numbers above protobuf's 2**29-1 limit as unknown.
    """
    rng = random.Random(1234)
    for _ in range(20000):
        base = upload_pb2.UploadChunkRequest(
            upload_id="u" * rng.randint(0, 6),
            offset=rng.choice([0, 1, -1, 300, INT64_MAX]),
            data=rng.randbytes(rng.randint(0, 6)),
        ).SerializeToString()
        raw = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.4 and raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            elif op < 0.7:
                raw.insert(rng.randint(0, len(raw)), rng.randrange(256))
            elif raw:
                del raw[rng.randrange(len(raw))]
        data = bytes(raw)
        ours, theirs = outcome(chunk_tuple, data), outcome(proto_chunk_tuple, data)
        if ours is not None and theirs is not None:
            assert ours == theirs, data
        elif ours is not None:  # we accepted what protobuf refused
            numbers = [number for number, _, _ in wire._fields(data)]
            assert max(numbers) >= 1 << 29, data
        elif theirs is not None:  # we refused what protobuf accepted
            with pytest.raises(WireError, match="wire type [34]"):
                parse_upload_chunk(data)


# --------------------------------------------------------------------------- registration


class _RecordingServer:
    def __init__(self) -> None:
        self.registered: dict[str, dict[str, object]] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, object]) -> None:
        self.registered[service] = handlers


def test_upload_rpcs_are_served_by_the_zero_copy_parsers_and_the_rest_by_protobuf() -> None:
    server = _RecordingServer()
    add = wire.swap_deserializers(
        upload_pb2_grpc.add_UploadServiceServicer_to_server, wire.UPLOAD_SWAPS
    )
    add(upload_pb2_grpc.UploadServiceServicer(), server)
    (handlers,) = server.registered.values()
    assert handlers["UploadChunk"].request_deserializer is parse_upload_chunk  # type: ignore[attr-defined]
    assert handlers["UploadVideo"].request_deserializer is parse_upload_video  # type: ignore[attr-defined]
    others = {name: h for name, h in handlers.items() if name not in wire.UPLOAD_SWAPS}
    assert others, "the service has other methods"
    for handler in others.values():
        assert handler.request_deserializer not in (parse_upload_chunk, parse_upload_video)  # type: ignore[attr-defined]
