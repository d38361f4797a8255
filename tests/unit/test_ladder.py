"""The VOD ladder, without ffmpeg: what rungs a source of a given shape gets.

The rules it shares with the live ladder (scaled_dims, output_fps, the rung choice) are
tested on their own in test_media_ladder.py."""

from __future__ import annotations

import pytest

from svc_transcode.ladder import build_ladder


def shape(width: int, height: int, fps: float = 30) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in build_ladder(width, height, fps)]


def test_portrait_1080x1920_keeps_portrait_orientation_on_every_rung() -> None:
    assert shape(1080, 1920) == [
        ("1080p", 1080, 1920),
        ("720p", 720, 1280),
        ("480p", 480, 854),
        ("360p", 360, 640),
    ]


def test_landscape_rungs_are_chosen_by_short_edge_not_width() -> None:
    assert shape(1920, 1080) == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]


def test_no_rung_exceeds_the_source_short_edge() -> None:
    assert [name for name, _, _ in shape(1280, 720)] == ["720p", "480p", "360p"]
    assert [name for name, _, _ in shape(1000, 700)] == ["480p", "360p"]


def test_4k_source_tops_out_at_1080p() -> None:
    assert shape(2160, 3840)[0] == ("1080p", 1080, 1920)


def test_240p_source_gets_exactly_one_rung_at_its_own_size() -> None:
    rungs = build_ladder(426, 240, 30)
    assert [(r.name, r.width, r.height) for r in rungs] == [("240p", 426, 240)]
    assert 150_000 <= rungs[0].video_bitrate < 600_000


def test_odd_sources_get_even_dimensions() -> None:
    for width, height in [(1081, 1921), (427, 241), (1366, 768), (720, 1560)]:
        for _, w, h in shape(width, height):
            assert w % 2 == 0 and h % 2 == 0


def test_aspect_ratio_is_kept_within_rounding() -> None:
    for width, height in [(1080, 1920), (1920, 1080), (1440, 1080), (720, 1560), (1080, 1080)]:
        for _, w, h in shape(width, height):
            assert w / h == pytest.approx(width / height, rel=0.01)


def test_square_source_gets_square_rungs() -> None:
    assert shape(1080, 1080)[1] == ("720p", 720, 720)


def test_rates_follow_owncast_ratios() -> None:
    top = build_ladder(1920, 1080, 30)
    assert [r.video_bitrate for r in top] == [5_000_000, 2_500_000, 1_200_000, 600_000]
    assert [r.audio_bitrate for r in top] == [128_000, 128_000, 96_000, 64_000]
    for r in top:
        assert r.maxrate == int(r.video_bitrate * 1.06)
        assert r.bufsize == int(r.video_bitrate * 1.2)


def test_every_rung_uses_the_capped_frame_rate() -> None:
    assert {r.fps for r in build_ladder(1920, 1080, 60)} == {30}


def test_above_30fps_the_video_bitrate_grows_with_the_square_root_of_the_rate() -> None:
    rungs = build_ladder(1920, 1080, 60, fps_cap=60)
    assert {r.fps for r in rungs} == {60}
    assert [r.video_bitrate for r in rungs] == [
        int(kbps * 1000 * 2**0.5) for kbps in (5000, 2500, 1200, 600)
    ]
    assert [r.audio_bitrate for r in rungs] == [128_000, 128_000, 96_000, 64_000]
    assert rungs[0].maxrate == int(rungs[0].video_bitrate * 1.06)
    assert [r.video_bitrate for r in build_ladder(1920, 1080, 24)][0] == 5_000_000
