"""The live ladder, the live ffmpeg command and FLV framing (svc_chat.ingest): pure."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from reels.config import SettingError
from svc_chat.ingest import flv, stream_key_of
from svc_chat.ingest.command import gop_frames, live_hls_command
from svc_chat.ingest.ladder import live_ladder, output_fps
from svc_chat.ingest.settings import IngestSettings


def test_no_rung_above_the_source_and_at_most_720p_by_default() -> None:
    assert [r.name for r in live_ladder(1920, 1080)] == ["720p", "480p", "360p"]
    assert [r.name for r in live_ladder(640, 360)] == ["360p", "240p"]
    assert [r.name for r in live_ladder(640, 360, max_rungs=1)] == ["360p"]


def test_a_portrait_source_is_laddered_by_its_short_edge() -> None:
    top = live_ladder(1080, 1920)[0]
    assert (top.width, top.height) == (720, 1280)


def test_a_tiny_source_gets_one_rung_at_its_own_size() -> None:
    (only,) = live_ladder(320, 180)
    assert (only.width, only.height, only.name) == (320, 180, "180p")


def test_maxrate_and_bufsize_follow_owncast() -> None:
    top = live_ladder(1280, 720)[0]
    assert top.maxrate == int(top.video_bitrate * 1.06)
    assert top.bufsize == int(top.video_bitrate * 1.2)


def test_frame_rate_is_capped_by_an_integer_divisor() -> None:
    assert output_fps(60) == 30 and output_fps(50) == 25 and output_fps(25) == 25
    assert output_fps(0) == 30


def test_the_command_has_owncast_gop_no_scene_cuts_and_a_sliding_window() -> None:
    rungs = live_ladder(1280, 720, max_rungs=2)
    argv = live_hls_command(
        "ffmpeg", Path("/o/live/s"), rungs, fps=30, source_fps=30, has_audio=True,
        segment_s=1.0, list_size=6,
    )  # fmt: skip
    joined = " ".join(argv)
    assert argv.count("-i") == 1 and "-f flv -i pipe:0" in joined
    assert "-g 30 -keyint_min 30 -sc_threshold 0" in joined
    assert "-force_key_frames expr:gte(t,n_forced*1)" in joined
    assert "-hls_time 1 -hls_list_size 6" in joined
    assert "-hls_flags delete_segments+independent_segments+temp_file+omit_endlist" in joined
    assert "split=2[s0][s1]" in joined and "fps=" not in joined
    assert argv[argv.index("-var_stream_map") + 1] == "v:0,a:0,name:720p v:1,a:1,name:480p"
    assert argv[argv.index("-master_pl_name") + 1] == "master.m3u8"
    assert argv[-1] == "/o/live/s/%v/index.m3u8"


def test_a_returning_publisher_appends_to_the_playlists_and_a_60fps_source_is_halved() -> None:
    argv = live_hls_command(
        "ffmpeg", Path("/o"), live_ladder(640, 360, max_rungs=1), fps=30, source_fps=60,
        has_audio=False, segment_s=1.0, list_size=4, resume=True,
    )  # fmt: skip
    joined = " ".join(argv)
    assert "+append_list+discont_start" in joined
    assert "fps=30," in joined and "-map 0:a:0" not in joined
    assert argv[argv.index("-var_stream_map") + 1] == "v:0,name:360p"
    assert gop_frames(29.97, 2.0) == 60


def test_flv_tags_frame_rtmp_bodies() -> None:
    assert flv.header() == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert flv.header(audio=False)[4] == 1
    body = b"\x17\x01abc"
    tag = flv.tag(flv.VIDEO, 0x01020304, body)
    assert tag[0] == 9 and tag[1:4] == (5).to_bytes(3, "big")
    assert tag[4:7] == bytes([2, 3, 4]) and tag[7] == 1  # 24 low bits, then the high byte
    assert tag[11:16] == body and struct.unpack(">I", tag[-4:])[0] == 16
    assert flv.is_keyframe(body) and not flv.is_keyframe(b"\x27\x01")
    with pytest.raises(ValueError):
        flv.tag(7, 0, b"")


def test_the_stream_key_is_the_publishing_name_without_its_query() -> None:
    assert stream_key_of("abc?token=1") == "abc" and stream_key_of(" abc ") == "abc"


def test_settings_defaults_and_bounds() -> None:
    s = IngestSettings()
    assert (s.host, s.port, s.segment_s, s.max_height) == ("127.0.0.1", 1935, 1.0, 720)
    assert s.playlist_size == 6
    with pytest.raises(SettingError):
        IngestSettings(window_s=1.0)
