"""The exact ffmpeg command for a ladder (svc_transcode/hls.py), asserted argument by
argument as Owncast's transcoder tests do, plus the ladder it is built from.

One decode, `split` to every rung, keyframes every segment on every rung (GOP = segment
seconds x fps, no scene-cut keyframes) so renditions switch cleanly, per-rung
bitrate/maxrate/bufsize, and never a rung larger than the source.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from svc_transcode import hls
from svc_transcode.hls import SEGMENT_SECONDS, avc1_from_sps, build_ladder_command
from svc_transcode.ladder import build_ladder

SRC = Path("/staging/in.mp4")
OUT = Path("/work/job")


def test_portrait_1080x1920_with_audio_builds_the_exact_command() -> None:
    rungs = build_ladder(1080, 1920, 30)
    command = build_ladder_command(SRC, OUT, rungs, has_audio=True, source_fps=30)
    assert command.argv == [
        hls.FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error",
        "-progress", "pipe:1", "-nostats",
        "-i", "/staging/in.mp4",
        "-filter_complex",
        "[0:v:0]format=yuv420p,split=4[s0][s1][s2][s3];"
        "[s0]scale=1080:1920:flags=bicubic,setsar=1[v0];"
        "[s1]scale=720:1280:flags=bicubic,setsar=1[v1];"
        "[s2]scale=480:854:flags=bicubic,setsar=1[v2];"
        "[s3]scale=360:640:flags=bicubic,setsar=1[v3]",
        "-map", "[v0]", "-map", "0:a:0",
        "-map", "[v1]", "-map", "0:a:0",
        "-map", "[v2]", "-map", "0:a:0",
        "-map", "[v3]", "-map", "0:a:0",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
        "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
        "-force_key_frames", "expr:gte(t,n_forced*2)",
        "-threads", "0",
        "-b:v:0", "5000000", "-maxrate:v:0", "5300000", "-bufsize:v:0", "6000000",
        "-b:v:1", "2500000", "-maxrate:v:1", "2650000", "-bufsize:v:1", "3000000",
        "-b:v:2", "1200000", "-maxrate:v:2", "1272000", "-bufsize:v:2", "1440000",
        "-b:v:3", "600000", "-maxrate:v:3", "636000", "-bufsize:v:3", "720000",
        "-c:a", "aac", "-ac", "2", "-ar", "48000",
        "-b:a:0", "128000", "-b:a:1", "128000", "-b:a:2", "96000", "-b:a:3", "64000",
        "-f", "hls",
        "-hls_time", "2",
        "-hls_playlist_type", "vod",
        "-hls_segment_type", "mpegts",
        "-hls_flags", "independent_segments",
        "-hls_list_size", "0",
        "-hls_segment_filename", "/work/job/%v/seg_%04d.ts",
        "-var_stream_map", "v:0,a:0,name:1080p v:1,a:1,name:720p v:2,a:2,name:480p "
        "v:3,a:3,name:360p",
        "/work/job/%v/index.m3u8",
    ]  # fmt: skip
    assert command.playlists == {
        "1080p": "1080p/index.m3u8",
        "720p": "720p/index.m3u8",
        "480p": "480p/index.m3u8",
        "360p": "360p/index.m3u8",
    }


def test_silent_720p_landscape_at_60fps_builds_the_exact_command() -> None:
    rungs = build_ladder(1280, 720, 60)
    command = build_ladder_command(
        SRC, OUT, rungs, has_audio=False, source_fps=60, preset="medium", progress=False,
        threads=2,
    )  # fmt: skip
    assert command.argv == [
        hls.FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error",
        "-nostats",
        "-i", "/staging/in.mp4",
        "-filter_complex",
        "[0:v:0]fps=30,format=yuv420p,split=3[s0][s1][s2];"
        "[s0]scale=1280:720:flags=bicubic,setsar=1[v0];"
        "[s1]scale=854:480:flags=bicubic,setsar=1[v1];"
        "[s2]scale=640:360:flags=bicubic,setsar=1[v2]",
        "-map", "[v0]", "-map", "[v1]", "-map", "[v2]",
        "-c:v", "libx264", "-preset", "medium", "-profile:v", "high",
        "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
        "-force_key_frames", "expr:gte(t,n_forced*2)",
        "-threads", "2",
        "-b:v:0", "2500000", "-maxrate:v:0", "2650000", "-bufsize:v:0", "3000000",
        "-b:v:1", "1200000", "-maxrate:v:1", "1272000", "-bufsize:v:1", "1440000",
        "-b:v:2", "600000", "-maxrate:v:2", "636000", "-bufsize:v:2", "720000",
        "-f", "hls",
        "-hls_time", "2",
        "-hls_playlist_type", "vod",
        "-hls_segment_type", "mpegts",
        "-hls_flags", "independent_segments",
        "-hls_list_size", "0",
        "-hls_segment_filename", "/work/job/%v/seg_%04d.ts",
        "-var_stream_map", "v:0,name:720p v:1,name:480p v:2,name:360p",
        "/work/job/%v/index.m3u8",
    ]  # fmt: skip


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize(
    ("source_fps", "gop", "fps_filter"),
    [(30, 60, None), (25, 50, None), (24, 48, None), (29.97, 60, None),
     (60, 60, "fps=30"), (50, 50, "fps=25"), (59.94, 60, "fps=29.97"), (120, 60, "fps=30")],
)  # fmt: skip
def test_gop_is_segment_seconds_times_output_fps_on_every_rung(
    source_fps: float, gop: int, fps_filter: str | None
) -> None:
    rungs = build_ladder(1920, 1080, source_fps)
    argv = build_ladder_command(SRC, OUT, rungs, has_audio=True, source_fps=source_fps).argv
    assert gop == round(SEGMENT_SECONDS * rungs[0].fps)
    assert flag(argv, "-g") == flag(argv, "-keyint_min") == str(gop)
    assert flag(argv, "-sc_threshold") == "0"
    assert flag(argv, "-force_key_frames") == f"expr:gte(t,n_forced*{SEGMENT_SECONDS})"
    graph = flag(argv, "-filter_complex")
    if fps_filter is None:
        assert graph.startswith("[0:v:0]format=yuv420p,split=")
    else:
        assert graph.startswith(f"[0:v:0]{fps_filter},format=yuv420p,split=")


@pytest.mark.parametrize(
    ("width", "height"),
    [(1080, 1920), (1920, 1080), (1280, 720), (720, 1280), (854, 480), (640, 360),
     (426, 240), (3840, 2160), (7680, 4320), (4320, 7680), (1000, 700), (1080, 1080)],
)  # fmt: skip
def test_no_rung_is_ever_scaled_above_the_source(width: int, height: int) -> None:
    rungs = build_ladder(width, height, 30)
    graph = flag(build_ladder_command(SRC, OUT, rungs, has_audio=False, source_fps=30).argv,
                 "-filter_complex")  # fmt: skip
    scales = [(int(w), int(h)) for w, h in re.findall(r"scale=(\d+):(\d+)", graph)]
    assert len(scales) == len(rungs) >= 1
    for w, h in scales:
        assert w <= width + 1 and h <= height + 1  # +1: rounding to even
        assert min(w, h) <= 1080
        assert (w >= h) == (width >= height)  # orientation kept


def test_an_8k_phone_video_is_transcoded_down_the_normal_ladder() -> None:
    rungs = build_ladder(4320, 7680, 30)
    assert [(r.name, r.width, r.height) for r in rungs] == [
        ("1080p", 1080, 1920),
        ("720p", 720, 1280),
        ("480p", 480, 854),
        ("360p", 360, 640),
    ]


def test_each_rung_gets_its_own_maxrate_and_bufsize() -> None:
    rungs = build_ladder(1920, 1080, 30)
    argv = build_ladder_command(SRC, OUT, rungs, has_audio=True, source_fps=30).argv
    for i, r in enumerate(rungs):
        assert flag(argv, f"-b:v:{i}") == str(r.video_bitrate)
        assert flag(argv, f"-maxrate:v:{i}") == str(r.maxrate)
        assert flag(argv, f"-bufsize:v:{i}") == str(r.bufsize)
        assert flag(argv, f"-b:a:{i}") == str(r.audio_bitrate)
        assert r.video_bitrate < r.maxrate < r.bufsize


def test_a_tiny_source_still_gets_one_playable_rung() -> None:
    rungs = build_ladder(320, 180, 30)
    argv = build_ladder_command(SRC, OUT, rungs, has_audio=True, source_fps=30).argv
    assert flag(argv, "-filter_complex") == (
        "[0:v:0]format=yuv420p,split=1[s0];[s0]scale=320:180:flags=bicubic,setsar=1[v0]"
    )
    assert flag(argv, "-var_stream_map") == "v:0,a:0,name:180p"


def test_an_empty_ladder_is_refused() -> None:
    with pytest.raises(ValueError):
        build_ladder_command(SRC, OUT, [], has_audio=True, source_fps=30)


def test_sources_above_30fps_are_capped_by_an_integer_divisor() -> None:
    assert {r.fps for r in build_ladder(1920, 1080, 60)} == {30}
    assert build_ladder(1920, 1080, 60)[0].video_bitrate == 5_000_000
    assert build_ladder(1920, 1080, 48)[0].fps == pytest.approx(24)  # halved, not 30


def test_a_60fps_ladder_gets_more_bits_per_rung_than_a_30fps_one() -> None:
    sixty = build_ladder(1920, 1080, 60, fps_cap=60)
    assert sixty[0].fps == 60
    assert sixty[0].video_bitrate == int(5_000_000 * 2**0.5)
    argv = build_ladder_command(SRC, OUT, sixty, has_audio=False, source_fps=60).argv
    assert flag(argv, "-g") == "120"
    assert not flag(argv, "-filter_complex").startswith("[0:v:0]fps=")


# --------------------------------------------------------------------------- measured facts


def test_codecs_string_is_read_from_the_sps() -> None:
    # Annex-B stream: an AUD, then an SPS for High profile (0x64), no constraints, level 4.0
    stream = b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x01\x67\x64\x00\x28\xac\xd9"
    assert avc1_from_sps(stream) == "avc1.640028"
    assert avc1_from_sps(b"\x00\x00\x01\x09\xf0") is None
    assert avc1_from_sps(b"\x00\x00\x01\x67\x64") is None  # SPS cut short


def test_media_playlist_segments_are_read_with_their_durations() -> None:
    text = "#EXTM3U\n#EXTINF:2.000000,\nseg_0000.ts\n#EXTINF:0.533,title\nseg_0001.ts\n"
    assert hls.parse_media_playlist(text) == [(2.0, "seg_0000.ts"), (0.533, "seg_0001.ts")]
