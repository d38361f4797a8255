"""The chat WebSocket's JSON protocol (svc_chat.ws.protocol): what a client may send,
what it is sent, and which close code tells it what to do."""

from __future__ import annotations

import json

import pytest
from google.protobuf import timestamp_pb2
from reels.v1 import chat_pb2

from reels import errors
from svc_chat.ws import protocol
from svc_chat.ws.protocol import Ack, FrameError, Ping, Send, parse_client_frame

LIMIT = 8192


def test_a_send_frame_is_read_in_either_spelling() -> None:
    snake = '{"type":"send","text":"hi","client_message_id":"c-1"}'
    camel = '{"type":"send","text":"hi","clientMessageId":"c-1"}'
    assert parse_client_frame(snake, LIMIT) == Send("hi", "c-1")
    assert parse_client_frame(camel, LIMIT) == Send("hi", "c-1")


def test_an_ack_takes_the_offset_as_a_number_or_as_protobuf_json_writes_it() -> None:
    assert parse_client_frame('{"type":"ack","offset":12}', LIMIT) == Ack(12)
    assert parse_client_frame('{"type":"ack","offset":"18446744073709551615"}', LIMIT) == Ack(
        2**64 - 1
    )
    assert parse_client_frame('{"type":"ping"}', LIMIT) == Ping()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("hello", "not JSON"),
        ("", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('"send"', "JSON object"),
        ('{"text":"no type"}', "unknown frame type none"),
        ('{"type":"subscribe"}', 'unknown frame type "subscribe"'),
        ('{"type":"send"}', "send needs text"),
        ('{"type":"send","text":5}', "send needs text"),
        ('{"type":"send","text":"x","client_message_id":7}', "client_message_id"),
        ('{"type":"ack","offset":-1}', "offset"),
        ('{"type":"ack","offset":true}', "offset"),
        ('{"type":"ack","offset":"1e3"}', "offset"),
        ('{"type":"ack","offset":18446744073709551616}', "offset"),
    ],
)
def test_an_unreadable_frame_is_refused_with_a_reason(raw: str, says: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_client_frame(raw, LIMIT)
    assert says in info.value.message


def test_deeply_nested_json_is_refused_not_a_crash() -> None:
    with pytest.raises(FrameError, match="not JSON"):
        parse_client_frame("[" * 100_000 + "]" * 100_000, 10_000_000)


def test_an_oversize_frame_is_refused_before_it_is_parsed() -> None:
    raw = json.dumps({"type": "send", "text": "é" * 5000, "client_message_id": "c"})
    with pytest.raises(FrameError, match="over the limit of 8192 bytes"):
        parse_client_frame(raw, LIMIT)


def test_the_longest_valid_send_fits_the_default_frame_limit() -> None:
    # 500 characters outside the BMP, written as JSON escape pairs by a cautious client.
    raw = json.dumps({"type": "send", "text": "😀" * 500, "client_message_id": "x" * 64})
    assert parse_client_frame(raw, LIMIT) == Send("😀" * 500, "x" * 64)


def test_since_offset_alone_asks_for_recovery() -> None:
    assert protocol.subscribe_query({}) == protocol.SubscribeQuery()
    assert protocol.subscribe_query({"since_offset": "41", "epoch": "e1"}) == (
        protocol.SubscribeQuery(recover=True, since_offset=41, epoch="e1")
    )
    assert protocol.subscribe_query({"since_offset": "41", "recover": "0"}).recover is False
    assert protocol.subscribe_query({"recover": "true"}).recover is True


@pytest.mark.parametrize(
    "query",
    [{"since_offset": "-1"}, {"since_offset": "abc"}, {"recover": "maybe"}, {"epoch": "e" * 200}],
)
def test_a_malformed_recovery_query_is_invalid_argument(query: dict[str, str]) -> None:
    with pytest.raises(errors.InvalidArgument):
        protocol.subscribe_query(query)


def test_the_credential_is_the_ticket_then_the_bearer_subprotocol_then_the_header() -> None:
    offered = protocol.offered_protocols("reels.chat.v1, bearer.a.b.c")
    assert offered == ["reels.chat.v1", "bearer.a.b.c"]
    assert protocol.credential_of({"ticket": "t"}, offered, None) == protocol.Credential(
        "ticket", "t"
    )
    assert protocol.credential_of({}, offered, "Bearer x") == protocol.Credential("bearer", "a.b.c")
    assert protocol.credential_of({}, [], "Bearer x.y.z") == protocol.Credential("bearer", "x.y.z")
    assert protocol.credential_of({}, ["reels.chat.v1"], None) is None


def test_a_bearer_subprotocol_without_the_chat_subprotocol_is_refused() -> None:
    # The server must select an offered subprotocol; it never selects (echoes) the token.
    with pytest.raises(errors.InvalidArgument, match="reels.chat.v1"):
        protocol.credential_of({}, ["bearer.a.b.c"], None)


def test_a_non_bearer_authorization_header_is_unauthenticated() -> None:
    with pytest.raises(errors.Unauthenticated):
        protocol.credential_of({}, [], "Basic dXNlcjpwdw==")


def test_the_display_name_comes_from_the_token_else_the_user_id() -> None:
    assert protocol.display_name({"name": "Alice"}, "u1") == "Alice"
    assert protocol.display_name({"preferred_username": "al"}, "u1") == "al"
    assert protocol.display_name({"name": "  "}, "u1") == "u1"


def _message(offset: int, text: str = "hi") -> chat_pb2.SubscribeChatResponse:
    return chat_pb2.SubscribeChatResponse(
        message=chat_pb2.ChatMessage(
            message_id=f"m{offset}",
            stream_id="s1",
            user_id="u1",
            text=text,
            sent_at=timestamp_pb2.Timestamp(seconds=1_700_000_000),
            offset=offset,
            epoch="e1",
            username="Alice",
        )
    )


def test_server_frames_are_the_json_apis_frames_with_their_type() -> None:
    frame = protocol.chat_frame(_message(7))
    assert frame["type"] == "message"
    assert frame["message"]["offset"] == "7"  # protobuf JSON: uint64 as a string
    assert frame["message"]["sentAt"] == "2023-11-14T22:13:20Z"
    assert frame["message"]["clientMessageId"] == ""  # every field, as the JSON API
    joined = protocol.chat_frame(
        chat_pb2.SubscribeChatResponse(
            joined=chat_pb2.ChatJoined(stream_id="s1", epoch="e1", offset=3, recovered=True)
        )
    )
    assert joined["type"] == "joined" and joined["joined"]["recovered"] is True
    notice = protocol.chat_frame(
        chat_pb2.SubscribeChatResponse(
            notice=chat_pb2.ChatNotice(kind=chat_pb2.CHAT_NOTICE_KIND_MESSAGE_DELETED)
        )
    )
    assert notice["notice"]["kind"] == "CHAT_NOTICE_KIND_MESSAGE_DELETED"


def test_a_publication_is_encoded_once_for_every_socket() -> None:
    cache = protocol.FrameCache(size=2)
    first = cache.text(_message(1))
    assert cache.text(_message(1)) is first and cache.hits == 1
    assert json.loads(first) == protocol.chat_frame(_message(1))
    cache.text(_message(2))
    cache.text(_message(3))
    assert cache.text(_message(1)) is not first  # evicted, encoded again
    # Frames to one client (offset 0) are never cached.
    cache.text(_message(0))
    cache.text(_message(0))
    assert cache.hits == 1


def test_an_error_frame_says_the_code_why_and_when_to_retry() -> None:
    frame = protocol.error_frame(errors.ResourceExhausted("slow mode", 4.25), "c-9")
    assert frame == {
        "type": "error",
        "code": "RESOURCE_EXHAUSTED",
        "message": "slow mode",
        "clientMessageId": "c-9",
        "retryAfterSeconds": 4.25,
    }
    bad = protocol.error_frame(errors.InvalidArgument("empty", [("text", "1 to 500")]))
    assert bad["fieldViolations"] == [{"field": "text", "description": "1 to 500"}]
    outage = protocol.error_frame(ConnectionRefusedError("redis"))
    assert outage["code"] == "UNAVAILABLE" and outage["retryAfterSeconds"] == 1.0


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (chat_pb2.CHAT_NOTICE_KIND_STREAM_ENDED, 1000),
        (chat_pb2.CHAT_NOTICE_KIND_YOU_ARE_BANNED, 4003),
        (chat_pb2.CHAT_NOTICE_KIND_SLOW_CONSUMER, 4008),
        (chat_pb2.CHAT_NOTICE_KIND_USER_MUTED, 1001),
    ],
)
def test_the_close_code_follows_the_notice_that_ended_the_subscription(
    kind: int, code: int
) -> None:
    last = chat_pb2.SubscribeChatResponse(notice=chat_pb2.ChatNotice(kind=kind))  # type: ignore[arg-type]
    assert protocol.close_for(last) == code
    assert protocol.close_for(_message(5)) == protocol.CLOSE_GOING_AWAY
    assert protocol.close_for(None) == protocol.CLOSE_GOING_AWAY


def test_every_close_reason_fits_a_close_frame() -> None:
    for code, reason in protocol.CLOSE_REASONS.items():
        assert len(reason.encode()) <= 123, code  # RFC 6455 5.5: 125 bytes with the code


def test_an_error_frame_carries_the_refusals_reason_when_it_has_one() -> None:
    class Banned(errors.PermissionDenied):
        reason = "CHAT_BANNED"
        retry_after_seconds = None

    frame = protocol.error_frame(Banned("you are banned from this chat"), "c-1")
    assert frame["code"] == "PERMISSION_DENIED" and frame["reason"] == "CHAT_BANNED"
    assert "retryAfterSeconds" not in frame
