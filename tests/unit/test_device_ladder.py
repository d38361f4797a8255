"""Which renditions a device is offered and which it starts on (svc_stream/playback/devices.py).

unknown: all rungs, start 480p; web: all, start 720p; iOS: up to 1080p, start 720p;
Android: up to 720p, start 480p. The start is the highest offered rung at or below
the target, else the lowest offered one; a missing rung is simply not offered.
"""

from __future__ import annotations

import pytest
from reels.v1 import common_pb2

from svc_stream.playback.catalog import CatalogRendition
from svc_stream.playback.devices import (
    DeviceClass,
    choose_ladder,
    device_from_user_agent,
    parse_device,
    resolve_device,
)

FULL = [1080, 720, 480, 360]


def choose(device: DeviceClass, rungs: list[int]) -> tuple[list[int], int | None]:
    return choose_ladder(rungs, device, lambda short: short)


@pytest.mark.parametrize(
    ("device", "offered", "start"),
    [
        (DeviceClass.UNKNOWN, [360, 480, 720, 1080], 480),
        (DeviceClass.WEB, [360, 480, 720, 1080], 720),
        (DeviceClass.IOS, [360, 480, 720, 1080], 720),
        (DeviceClass.ANDROID, [360, 480, 720], 480),
    ],
)
def test_each_device_gets_its_ladder_and_start_rung(
    device: DeviceClass, offered: list[int], start: int
) -> None:
    assert choose(device, FULL) == (offered, start)


def test_ios_is_capped_at_1080p_and_web_is_not() -> None:
    rungs = [2160, 1440, *FULL]
    assert choose(DeviceClass.IOS, rungs)[0] == [360, 480, 720, 1080]
    assert choose(DeviceClass.WEB, rungs)[0] == [360, 480, 720, 1080, 1440, 2160]


def test_a_missing_start_rung_falls_back_to_the_next_lower_one() -> None:
    assert choose(DeviceClass.ANDROID, [1080, 720, 360]) == ([360, 720], 360)
    assert choose(DeviceClass.WEB, [1080, 480, 360]) == ([360, 480, 1080], 480)


def test_with_nothing_at_or_below_the_target_the_lowest_rung_starts() -> None:
    assert choose(DeviceClass.UNKNOWN, [1080, 720]) == ([720, 1080], 720)


def test_a_device_capped_below_every_rung_still_gets_the_lowest_one() -> None:
    assert choose(DeviceClass.ANDROID, [1440, 1080]) == ([1080], 1080)


def test_a_video_with_no_renditions_offers_nothing() -> None:
    assert choose(DeviceClass.WEB, []) == ([], None)


def test_offered_rungs_are_listed_lowest_first_whatever_the_input_order() -> None:
    assert choose(DeviceClass.UNKNOWN, [480, 1080, 360, 720])[0] == [360, 480, 720, 1080]


def test_portrait_renditions_are_ranked_by_their_short_side() -> None:
    def rendition(name: str, width: int, height: int) -> CatalogRendition:
        return CatalogRendition(name, width, height, 1, 1, "avc1", 30.0, f"{name}/index.m3u8")

    portrait = [rendition("1080p", 1080, 1920), rendition("720p", 720, 1280),
                rendition("480p", 480, 854)]  # fmt: skip
    offered, start = choose_ladder(portrait, DeviceClass.ANDROID, lambda r: r.short_side)
    assert [r.name for r in offered] == ["480p", "720p"]
    assert start is not None and start.name == "480p"


# --------------------------------------------------------------------------- which device


@pytest.mark.parametrize(
    ("user_agent", "device"),
    [
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0 Mobile Safari/537.36",
            DeviceClass.ANDROID,
        ),
        ("ExoPlayerLib/2.19.1", DeviceClass.ANDROID),
        ("okhttp/4.12.0", DeviceClass.ANDROID),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            DeviceClass.IOS,
        ),
        ("AppleCoreMedia/1.0.0.21E236 (iPhone; U; CPU OS 17_4 like Mac OS X)", DeviceClass.IOS),
        ("Reels/3.2 CFNetwork/1494.0.7 Darwin/23.4.0", DeviceClass.IOS),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/124.0 Safari/537.36",
            DeviceClass.WEB,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            DeviceClass.WEB,
        ),
        ("curl/8.5.0", DeviceClass.UNKNOWN),
        ("grpc-python/1.62", DeviceClass.UNKNOWN),
        ("", DeviceClass.UNKNOWN),
    ],
)
def test_the_user_agent_decides_the_device_when_the_client_does_not_say(
    user_agent: str, device: DeviceClass
) -> None:
    assert device_from_user_agent(user_agent) == device
    assert resolve_device(common_pb2.DEVICE_UNSPECIFIED, user_agent) == device


def test_the_explicit_device_field_wins_over_the_user_agent() -> None:
    android_ua = "Mozilla/5.0 (Linux; Android 14) Chrome/124.0 Mobile Safari/537.36"
    assert resolve_device(common_pb2.DEVICE_IOS, android_ua) == DeviceClass.IOS
    assert resolve_device(common_pb2.DEVICE_WEB, android_ua) == DeviceClass.WEB
    assert resolve_device(common_pb2.DEVICE_ANDROID, "") == DeviceClass.ANDROID


def test_an_unknown_device_number_falls_back_to_the_user_agent() -> None:
    assert resolve_device(42, "ExoPlayerLib/2.19.1") == DeviceClass.ANDROID


@pytest.mark.parametrize(
    ("value", "device"),
    [("ios", DeviceClass.IOS), ("android", DeviceClass.ANDROID), ("web", DeviceClass.WEB),
     ("", DeviceClass.UNKNOWN), (None, DeviceClass.UNKNOWN), ("IOS", DeviceClass.UNKNOWN),
     ("tv", DeviceClass.UNKNOWN)],
)  # fmt: skip
def test_a_dev_url_parameter_maps_back_to_a_device(value: str | None, device: DeviceClass) -> None:
    assert parse_device(value) == device
