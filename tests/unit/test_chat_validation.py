"""What the chat accepts from a client (svc_chat.chat.validation), without I/O."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import duration_pb2
from reels.v1 import chat_pb2, common_pb2

from reels import errors
from svc_chat.chat import validation
from svc_chat.chat.moderation import ChatForbidden, ChatThrottled, refusal
from svc_chat.chat.settings import ChatSettings

A = common_pb2


def test_chat_text_is_nfc_single_line_and_trimmed() -> None:
    text = validation.message_text("  cafe\u0301\r\n  au   lait\t! \u200b", 500)
    assert text == "café au lait !"


def test_a_message_of_500_code_points_passes_and_501_is_refused_with_the_count() -> None:
    assert len(validation.message_text("é" * 500, 500)) == 500
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.message_text("a" * 501, 500)
    assert "longer than 500 characters (got 501)" in caught.value.message
    assert caught.value.violations[0][0] == "text"


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u200b\u200b", "\u2060\ufeff", "\u3164"])
def test_empty_and_invisible_only_messages_are_refused_as_empty(text: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.message_text(text, 500)
    assert caught.value.message.startswith("message is empty")


def test_bidi_overrides_are_refused_naming_the_code_point() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.message_text("evil\u202etxt.exe", 500)
    assert "bidirectional embedding or override" in caught.value.message
    assert "U+202E" in caught.value.message


@pytest.mark.parametrize(
    ("text", "kept"),
    [("bell\x07", "bell"), ("a\x00b\x1bc\x7fd\x85e", "abcde"), ("tab\tand\nline", "tab and line")],
)
def test_control_characters_are_stripped(text: str, kept: str) -> None:
    """Issue 10: "control characters are stripped" (line breaks and tabs: spaces)."""
    assert validation.message_text(text, 500) == kept


def test_a_message_of_only_control_characters_is_empty() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        validation.message_text("\x07\x1b\x00", 500)
    assert caught.value.message.startswith("message is empty")


def test_client_message_id_is_required_bounded_and_printable() -> None:
    assert validation.client_message_id("7f3c-01") == "7f3c-01"
    assert validation.client_message_id("x" * 64) == "x" * 64
    for bad, why in [
        ("", "required"),
        ("x" * 65, "longer than 64"),
        ("a\nb", "printable"),
        ("   ", "not blank"),
    ]:
        with pytest.raises(errors.InvalidArgument) as caught:
            validation.client_message_id(bad)
        assert why in caught.value.message


def test_a_missing_stream_id_is_invalid_and_an_impossible_one_is_not_found() -> None:
    with pytest.raises(errors.InvalidArgument):
        validation.stream_id("")
    for impossible in ["{tag}", "x" * 200, "a\x00b"]:
        with pytest.raises(errors.NotFound):
            validation.stream_id(impossible)
    assert validation.stream_id("0b0f6f8e-aa") == "0b0f6f8e-aa"


def test_history_limit_defaults_to_50_and_is_at_most_200() -> None:
    assert validation.history_limit(0) == 50
    assert validation.history_limit(200) == 200
    for bad in (-1, 201):
        with pytest.raises(errors.InvalidArgument):
            validation.history_limit(bad)


def _request(**fields: object) -> chat_pb2.ModerateChatRequest:
    return chat_pb2.ModerateChatRequest(stream_id="s", **fields)  # type: ignore[arg-type]


def test_each_moderation_action_needs_its_parameters() -> None:
    with pytest.raises(errors.InvalidArgument, match="action is required"):
        validation.moderation(_request())
    with pytest.raises(errors.InvalidArgument, match="message_id"):
        validation.moderation(_request(action=A.MODERATION_ACTION_DELETE_MESSAGE))
    for action in (
        A.MODERATION_ACTION_BAN_USER,
        A.MODERATION_ACTION_UNBAN_USER,
        A.MODERATION_ACTION_UNMUTE_USER,
        A.MODERATION_ACTION_ADD_MODERATOR,
        A.MODERATION_ACTION_REMOVE_MODERATOR,
    ):
        with pytest.raises(errors.InvalidArgument, match="user_id"):
            validation.moderation(_request(action=action))
        assert validation.moderation(_request(action=action, user_id="u")).user_id == "u"


def test_a_timeout_is_1_second_to_7_days_and_slow_mode_0_to_1_hour() -> None:
    mute = A.MODERATION_ACTION_MUTE_USER
    for seconds in (0, 7 * 86400 + 1):
        with pytest.raises(errors.InvalidArgument, match="1 s..7 days"):
            validation.moderation(
                _request(action=mute, user_id="u", duration=duration_pb2.Duration(seconds=seconds))
            )
    checked = validation.moderation(
        _request(action=mute, user_id="u", duration=duration_pb2.Duration(seconds=90))
    )
    assert checked.seconds == 90
    slow = A.MODERATION_ACTION_SET_SLOW_MODE
    assert validation.moderation(_request(action=slow)).seconds == 0  # off
    with pytest.raises(errors.InvalidArgument, match="slow mode"):
        validation.moderation(_request(action=slow, duration=duration_pb2.Duration(seconds=3601)))


def test_refusals_say_why_and_when_with_retry_info() -> None:
    settings = ChatSettings()
    rate = refusal("rate", 3200, 20, settings, "creator")
    assert isinstance(rate, ChatThrottled) and rate.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rate.message == (
        "you are sending too fast (20 messages per 30 s); you may send again in 3 s"
    )
    assert rate.retry_after_seconds == pytest.approx(3.2)
    slow = refusal("slow", 4000, 10_000, settings, "creator")
    assert "slow mode is on (one message every 10 s)" in slow.message
    muted = refusal("muted", 300_000, 0, settings, "creator")
    assert isinstance(muted, ChatForbidden) and muted.code == grpc.StatusCode.PERMISSION_DENIED
    assert "timed out" in muted.message and "5 min" in muted.message
    assert [type(d).__name__ for d in muted.details()] == ["ErrorInfo", "RetryInfo"]
    banned = refusal("banned", 0, 0, settings, "creator")
    assert [type(d).__name__ for d in banned.details()] == ["ErrorInfo"]
    followers = refusal("followers_only", 0, 0, settings, "alice")
    assert "follow alice" in followers.message
