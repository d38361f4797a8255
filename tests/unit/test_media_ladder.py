"""The ladder rules both services share (reels.media.ladder) and the ffmpeg argv pieces
of a one-run HLS ladder (reels.media.hls_args): pure, no ffmpeg.

Each service's own ladder is tested through its wrapper: the VOD ladder in
test_ladder.py, the live one in test_live_ingest_ladder.py."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pytest

from reels.media.hls_args import (
    gop_frames,
    keyframe_args,
    rung_maps,
    rung_rate_args,
    split_scale_graph,
    var_stream_map,
)
from reels.media.ladder import (
    LIVE_RUNGS,
    VOD_RUNGS,
    Rendition,
    build_renditions,
    choose_rungs,
    output_fps,
    scaled_dims,
)


def shorts(rows: list[tuple[int, int, int]]) -> list[int]:
    return [short for short, _, _ in rows]


def test_the_live_table_is_the_vod_table_plus_240p() -> None:
    assert shorts(list(VOD_RUNGS)) == [1080, 720, 480, 360]
    assert LIVE_RUNGS == (*VOD_RUNGS, (240, 300, 64))


def test_portrait_and_landscape_are_chosen_by_the_short_edge() -> None:
    assert choose_rungs(1080, 1920, VOD_RUNGS) == choose_rungs(1920, 1080, VOD_RUNGS)
    assert shorts(choose_rungs(1080, 1920, VOD_RUNGS)) == [1080, 720, 480, 360]
    portrait = build_renditions(1080, 1920, VOD_RUNGS)
    landscape = build_renditions(1920, 1080, VOD_RUNGS)
    assert [(r.name, r.width, r.height) for r in portrait][:2] == [
        ("1080p", 1080, 1920),
        ("720p", 720, 1280),
    ]
    assert [(r.width, r.height) for r in landscape] == [(r.height, r.width) for r in portrait]


def test_no_rung_is_above_the_source() -> None:
    assert shorts(choose_rungs(1000, 700, LIVE_RUNGS)) == [480, 360, 240]
    assert shorts(choose_rungs(3840, 2160, VOD_RUNGS))[0] == 1080
    for r in build_renditions(1000, 700, LIVE_RUNGS):
        assert r.width <= 1000 and r.height <= 700


def test_a_source_below_the_lowest_rung_gets_one_rung_at_its_own_size() -> None:
    (only,) = build_renditions(320, 180, LIVE_RUNGS)
    # 300 kbps (240p) scaled by pixel count: 300 x (180/240)^2 = 168.75 -> 168 kbps.
    assert (only.name, only.width, only.height) == ("180p", 320, 180)
    assert (only.video_bitrate, only.audio_bitrate) == (168_000, 64_000)
    (vod,) = build_renditions(200, 100, VOD_RUNGS)
    assert (vod.name, vod.width, vod.height) == ("100p", 200, 100)
    assert vod.video_bitrate == 150_000  # 600 x (100/360)^2 = 46 kbps, raised to the floor


def test_max_short_edge_and_max_rungs_cap_the_ladder() -> None:
    assert shorts(choose_rungs(1920, 1080, LIVE_RUNGS, max_short_edge=720)) == [
        720, 480, 360, 240,
    ]  # fmt: skip
    assert shorts(choose_rungs(1920, 1080, LIVE_RUNGS, max_short_edge=720, max_rungs=2)) == [
        720, 480,
    ]  # fmt: skip
    # A cap below the lowest rung: one rung at the cap, like a tiny source.
    (only,) = build_renditions(1920, 1080, LIVE_RUNGS, max_short_edge=200)
    assert (only.name, only.width, only.height) == ("200p", 356, 200)


def test_rates_are_owncast_ratios_of_the_scaled_bitrate() -> None:
    top = build_renditions(1280, 720, VOD_RUNGS, bitrate_scale=1.5)[0]
    assert top.video_bitrate == 3_750_000
    assert top.maxrate == int(3_750_000 * 1.06) and top.bufsize == int(3_750_000 * 1.2)
    assert top.audio_bitrate == 128_000  # audio is not scaled
    assert build_renditions(1280, 720, VOD_RUNGS)[0].video_bitrate == 2_500_000


def test_make_builds_the_callers_rung_type() -> None:
    @dataclass(frozen=True)
    class WithFps(Rendition):
        fps: float

    rungs = build_renditions(640, 360, LIVE_RUNGS, make=partial(WithFps, fps=25.0))
    assert [type(r) for r in rungs] == [WithFps, WithFps]
    assert [(r.name, r.fps, r.short_edge) for r in rungs] == [
        ("360p", 25.0, 360),
        ("240p", 25.0, 240),
    ]
    assert type(build_renditions(640, 360, LIVE_RUNGS)[0]) is Rendition


def test_odd_sources_get_even_dimensions_and_keep_their_aspect_ratio() -> None:
    for width, height in [(1081, 1921), (427, 241), (1366, 768), (720, 1560), (1080, 1080)]:
        for r in build_renditions(width, height, LIVE_RUNGS, max_rungs=10):
            assert r.width % 2 == 0 and r.height % 2 == 0
            assert r.width / r.height == pytest.approx(width / height, rel=0.02)


def test_scaled_dims_round_to_even() -> None:
    assert scaled_dims(1080, 1920, 480) == (480, 854)
    assert scaled_dims(1920, 1080, 480) == (854, 480)
    assert scaled_dims(1080, 1080, 720) == (720, 720)


@pytest.mark.parametrize(
    ("source", "expected"),
    [(60, 30), (50, 25), (59.94, 29.97), (120, 30), (30, 30), (24, 24), (29.97, 29.97), (0, 30)],
)
def test_frame_rate_is_capped_by_an_integer_divisor(source: float, expected: float) -> None:
    assert output_fps(source) == pytest.approx(expected, abs=0.01)


def test_output_fps_honours_another_cap_and_unknown_rates() -> None:
    assert output_fps(120, 60) == 60 and output_fps(50, 60) == 50
    assert output_fps(float("nan")) == 30 and output_fps(-1, 24) == 24


def test_hls_args_pieces() -> None:
    rungs = build_renditions(1280, 720, LIVE_RUNGS, max_rungs=2)
    assert split_scale_graph("0:v:0", ["fps=30", "format=yuv420p"], rungs) == (
        "[0:v:0]fps=30,format=yuv420p,split=2[s0][s1];"
        "[s0]scale=1280:720:flags=bicubic,setsar=1[v0];"
        "[s1]scale=854:480:flags=bicubic,setsar=1[v1]"
    )
    assert " ".join(rung_maps(2, "0:a:0")) == "-map [v0] -map 0:a:0 -map [v1] -map 0:a:0"
    assert rung_maps(2, None) == ["-map", "[v0]", "-map", "[v1]"]
    assert gop_frames(29.97, 2) == 60 and gop_frames(0, 1) == 1
    assert keyframe_args(30, 1.0) == [
        "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
        "-force_key_frames", "expr:gte(t,n_forced*1)",
    ]  # fmt: skip
    assert keyframe_args(60, 2)[-1] == "expr:gte(t,n_forced*2)"
    assert rung_rate_args(rungs[:1], has_audio=False) == [
        "-b:v:0", "2500000", "-maxrate:v:0", "2650000", "-bufsize:v:0", "3000000",
    ]  # fmt: skip
    with_audio = rung_rate_args(rungs, has_audio=True)
    assert with_audio[12:] == [
        "-c:a", "aac", "-ac", "2", "-ar", "48000", "-b:a:0", "128000", "-b:a:1", "96000",
    ]  # fmt: skip
    assert var_stream_map(rungs, True) == "v:0,a:0,name:720p v:1,a:1,name:480p"
    assert var_stream_map(rungs, False) == "v:0,name:720p v:1,name:480p"
