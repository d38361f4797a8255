"""Settings of svc_chat's ingest part (a group of svc_chat.settings.Settings)."""

from __future__ import annotations

from dataclasses import dataclass

from reels.config import SettingError, setting


@dataclass(frozen=True)
class IngestSettings:
    """The RTMP ingest and the live HLS ladder it makes.

    Defaults follow DESIGN.md's measurements ("Live ingest"): 1 s segments put the first
    segment about 1.6 s after publish and glass-to-glass at 3.2-3.6 s with hls.js'
    defaults. ``REELS_LIVE_WINDOW_S`` is the sliding playlist window; a larger value
    is a DVR window (older segments stay listed and on disk).
    """

    host: str = setting("127.0.0.1", "REELS_RTMP_HOST", "RTMP ingest listen host")
    port: int = setting(1935, "REELS_RTMP_PORT", "RTMP ingest port (0: a free one)")
    segment_s: float = setting(
        1.0, "REELS_LIVE_SEGMENT_S", "live HLS segment length (s); GOP = fps x this"
    )
    window_s: float = setting(
        6.0,
        "REELS_LIVE_WINDOW_S",
        "live playlist window (s): segments older than this leave the playlist and the "
        "disk; raise it for a DVR window",
    )
    max_height: int = setting(
        720, "REELS_LIVE_MAX_HEIGHT", "highest live rung, by the picture's short edge (px)"
    )
    max_rungs: int = setting(3, "REELS_LIVE_MAX_RUNGS", "most rungs in a live ladder")
    x264_preset: str = setting(
        "veryfast", "REELS_LIVE_X264_PRESET", "x264 preset of the live ladder (Owncast's default)"
    )
    publisher_timeout_s: float = setting(
        5.0,
        "REELS_LIVE_PUBLISHER_TIMEOUT_S",
        "a publisher that sends no media for this long is dropped, as if it left (s)",
    )
    grace_s: float = setting(
        10.0,
        "REELS_LIVE_GRACE_S",
        "a publisher that left may come back within this and continue the same stream; "
        "after it the stream ends, its duration counted to the moment the publisher "
        "left (s)",
    )

    max_live_per_creator: int = setting(
        1,
        "REELS_LIVE_MAX_PER_CREATOR",
        "live streams one creator may have on air at once; a publish past it is refused",
    )

    record: bool = setting(
        True,
        "REELS_LIVE_RECORD",
        "record each stream (the publisher's encode, copied) and publish the recording "
        "as a video of the creator when the stream ends",
    )

    def __post_init__(self) -> None:
        for ok, message in (
            (self.max_live_per_creator >= 1, "REELS_LIVE_MAX_PER_CREATOR must be >= 1"),
            (0 <= self.port <= 65535, "REELS_RTMP_PORT must be 0..65535"),
            (0.5 <= self.segment_s <= 10, "REELS_LIVE_SEGMENT_S must be 0.5..10"),
            (
                self.window_s >= 2 * self.segment_s,
                "REELS_LIVE_WINDOW_S must hold at least two segments",
            ),
            (self.max_height >= 144, "REELS_LIVE_MAX_HEIGHT must be at least 144"),
            (1 <= self.max_rungs <= 6, "REELS_LIVE_MAX_RUNGS must be 1..6"),
            (self.publisher_timeout_s > 0, "REELS_LIVE_PUBLISHER_TIMEOUT_S must be positive"),
            (self.grace_s >= 0, "REELS_LIVE_GRACE_S must be >= 0 (0: end at once)"),
        ):
            if not ok:
                raise SettingError(message)

    @property
    def playlist_size(self) -> int:
        """Segments listed in a live playlist (``-hls_list_size``)."""
        return max(2, round(self.window_s / self.segment_s))
