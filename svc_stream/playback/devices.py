"""Which renditions a device is offered, and which one it starts on.

Decisions (rungs are named by their SHORT side, so portrait 720x1280 is "720p"):

=========  ============  ===========  ====================================================
device     ladder        start        why
=========  ============  ===========  ====================================================
unknown    all rungs     480p         the seed's default: safe on any network
web        all rungs     720p         desktop/laptop screens, mostly wired or Wi-Fi
iOS        up to 1080p   720p         phone screens gain nothing above 1080p; AVPlayer
                                      adapts quickly after a mid start
Android    up to 720p    480p         the long tail of low-end devices (1080p decode
                                      drops frames) and metered data: start low, cap at
                                      720p; ExoPlayer climbs after the first segments
=========  ============  ===========  ====================================================

The start rendition is the highest offered rung at or below the target; when none is
that low, the lowest offered one. A rendition whose playlist is missing from the store
is not offered at all, so the start "falls back to the next lower one" by the same
rule. HLS players begin with the first variant listed in the master playlist, so the
master we serve lists the start rendition first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from reels.v1 import common_pb2


class DeviceClass(StrEnum):
    UNKNOWN = "unknown"
    WEB = "web"
    IOS = "ios"
    ANDROID = "android"


@dataclass(frozen=True)
class DevicePolicy:
    max_short_side: int | None
    start_short_side: int


POLICIES: dict[DeviceClass, DevicePolicy] = {
    DeviceClass.UNKNOWN: DevicePolicy(None, 480),
    DeviceClass.WEB: DevicePolicy(None, 720),
    DeviceClass.IOS: DevicePolicy(1080, 720),
    DeviceClass.ANDROID: DevicePolicy(720, 480),
}

_FROM_PROTO = {
    common_pb2.DEVICE_WEB: DeviceClass.WEB,
    common_pb2.DEVICE_IOS: DeviceClass.IOS,
    common_pb2.DEVICE_ANDROID: DeviceClass.ANDROID,
}
# Order matters: Android UAs contain "Mozilla"/"Safari"/"Linux", iOS ones "Safari".
_UA_RULES: tuple[tuple[re.Pattern[str], DeviceClass], ...] = (
    (re.compile(r"android|exoplayer|dalvik|okhttp", re.I), DeviceClass.ANDROID),
    (
        re.compile(r"iphone|ipad|ipod|\bios\b|cfnetwork|applecoremedia|darwin", re.I),
        DeviceClass.IOS,
    ),
    (re.compile(r"mozilla|chrome|safari|firefox|edg/|opera|hls\.js", re.I), DeviceClass.WEB),
)


def device_from_user_agent(user_agent: str) -> DeviceClass:
    """Best-effort device class from a User-Agent (iPadOS Safari reports as desktop: web)."""
    for pattern, device in _UA_RULES:
        if pattern.search(user_agent or ""):
            return device
    return DeviceClass.UNKNOWN


def resolve_device(device: int, user_agent: str = "") -> DeviceClass:
    """The explicit field wins; otherwise the user agent decides."""
    return _FROM_PROTO.get(device) or device_from_user_agent(user_agent)


def parse_device(value: str | None) -> DeviceClass:
    """A ``dev`` URL parameter back to a class (anything unknown: UNKNOWN)."""
    try:
        return DeviceClass(value or DeviceClass.UNKNOWN)
    except ValueError:
        return DeviceClass.UNKNOWN


T = TypeVar("T")


def choose_ladder(
    available: Sequence[T], device: DeviceClass, short_side: Callable[[T], int]
) -> tuple[list[T], T | None]:
    """(offered rungs lowest first, start rung) among the renditions that exist.

    A device whose cap would leave nothing (a video whose only rung is above the cap)
    still gets its lowest rung: playing something beats refusing.
    """
    policy = POLICIES[device]
    ordered = sorted(available, key=short_side)
    offered = [
        r
        for r in ordered
        if policy.max_short_side is None or short_side(r) <= policy.max_short_side
    ]
    if not offered and ordered:
        offered = ordered[:1]
    if not offered:
        return [], None
    at_or_below = [r for r in offered if short_side(r) <= policy.start_short_side]
    start = at_or_below[-1] if at_or_below else offered[0]
    return offered, start
