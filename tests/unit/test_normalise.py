"""The normalisation decisions without ffmpeg: ffprobe JSON in, facts and filters out.

The stream dictionaries are trimmed ffprobe 5.1 output captured from the files
tests/media.py generates (anamorphic HDV, an iPhone-style MOV with an APAC track,
interlaced H.264 and MPEG-4, PQ HDR), plus hand-written variants of them.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from reels.media.ffmpeg_run import TranscodeError, UnusableMedia, ffmpeg_failure
from reels.media.probe import ProbeLimits, display_size, parse_probe, parse_ratio, rotation_of
from svc_transcode import normalise
from svc_transcode.hls import build_ladder_command
from svc_transcode.ladder import build_ladder
from svc_transcode.worker import classify


def video(**fields: Any) -> dict[str, Any]:
    base = {
        "index": 0, "codec_name": "h264", "codec_type": "video", "codec_tag_string": "avc1",
        "width": 1920, "height": 1080, "sample_aspect_ratio": "1:1", "pix_fmt": "yuv420p",
        "field_order": "progressive", "r_frame_rate": "25/1", "avg_frame_rate": "25/1",
        "duration": "2.000000", "bits_per_raw_sample": "8",
        "disposition": {"default": 1, "attached_pic": 0},
    }  # fmt: skip
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def audio(index: int, codec: str | None, *, default: int, channels: int = 2) -> dict[str, Any]:
    stream: dict[str, Any] = {
        "index": index, "codec_type": "audio", "channels": channels,
        "codec_tag_string": "mp4a" if codec == "aac" else "apac",
        "disposition": {"default": default, "attached_pic": 0},
    }  # fmt: skip
    if codec:
        stream["codec_name"] = codec
    return stream


def probe_json(*streams: dict[str, Any], duration: str = "2.000000") -> dict[str, Any]:
    return {
        "streams": list(streams),
        "format": {"duration": duration, "format_name": "mov,mp4,m4a,3gp,3g2,mj2"},
    }


def facts(*streams: dict[str, Any]) -> normalise.SourceFacts:
    return normalise.normalise(probe_json(*streams))


# --------------------------------------------------------------------------- display size


@pytest.mark.parametrize(
    ("text", "value"),
    [("4:3", Fraction(4, 3)), ("16/9", Fraction(16, 9)), ("64:45", Fraction(64, 45)),
     ("30000/1001", Fraction(30000, 1001)), ("1:1", Fraction(1)), (25, Fraction(25)),
     ("0:1", None), ("0/0", None), ("N/A", None), ("", None), (None, None), ("-4:3", None)],
)  # fmt: skip
def test_ratios_are_read_in_both_of_ffprobes_forms(text: Any, value: Fraction | None) -> None:
    assert parse_ratio(text) == value


@pytest.mark.parametrize(
    ("width", "height", "sar", "display"),
    [(1440, 1080, "4:3", (1920, 1080)), (720, 576, "64:45", (1024, 576)),
     (720, 576, "16:15", (768, 576)), (720, 480, "8:9", (640, 480)),
     (720, 480, "32:27", (854, 480)), (1920, 1080, "1:1", (1920, 1080)),
     (1920, 1080, "0:1", (1920, 1080)), (1920, 1080, "N/A", (1920, 1080)),
     (1920, 1080, "100:1", (1920, 1080))],  # a broken header: square pixels
)  # fmt: skip
def test_display_size_applies_the_sample_aspect_ratio_to_the_width(
    width: int, height: int, sar: str, display: tuple[int, int]
) -> None:
    result = parse_probe(
        probe_json(video(width=width, height=height, sample_aspect_ratio=sar)), ProbeLimits()
    )
    assert (result.width, result.height) == display


def test_anamorphic_and_rotated_phone_frame_is_widened_then_turned() -> None:
    stream = video(
        width=1440, height=1080, sample_aspect_ratio="4:3",
        side_data_list=[{"side_data_type": "Display Matrix", "rotation": -90}],
    )  # fmt: skip
    result = parse_probe(probe_json(stream), ProbeLimits())
    assert result.rotation == 90
    assert (result.width, result.height) == (1080, 1920)
    assert display_size(1440, 1080, Fraction(4, 3), 270) == (1080, 1920)


@pytest.mark.parametrize(
    ("stream", "rotation"),
    [({"tags": {"rotate": "90"}}, 90), ({"tags": {"rotate": "-90"}}, 270),
     ({"side_data_list": [{"rotation": -90}]}, 90), ({"side_data_list": [{"rotation": 90}]}, 270),
     ({"side_data_list": [{"rotation": 180}]}, 180),
     ({"side_data_list": [{"rotation": -90.00000250447816}]}, 90),
     ({"side_data_list": [{"side_data_type": "Spherical"}]}, 0), ({}, 0)],
)  # fmt: skip
def test_rotation_comes_from_the_tag_or_the_display_matrix(
    stream: dict[str, Any], rotation: int
) -> None:
    assert rotation_of(stream) == rotation


def test_anamorphic_rungs_are_16_9_with_square_pixels() -> None:
    f = facts(video(width=1440, height=1080, sample_aspect_ratio="4:3"))
    rungs = build_ladder(f.width, f.height, f.fps)
    assert [(r.width, r.height) for r in rungs] == [
        (1920, 1080),
        (1280, 720),
        (854, 480),
        (640, 360),
    ]
    for rung in rungs:
        assert rung.width / rung.height == pytest.approx(16 / 9, abs=0.03)
    argv = build_ladder_command(
        Path("in.mp4"), Path("out"), rungs, has_audio=False, source_fps=25
    ).argv
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.count("setsar=1") == len(rungs)  # square pixels on every rung


# --------------------------------------------------------------------------- scan type


@pytest.mark.parametrize(
    ("order", "scan", "parity"),
    [("progressive", "progressive", None), ("tt", "interlaced", "tff"),
     ("bb", "interlaced", "bff"), ("tb", "interlaced", "bff"), ("bt", "interlaced", "tff"),
     ("unknown", "unknown", None), (None, "unknown", None)],
)  # fmt: skip
def test_field_order_decides_the_scan_type(
    order: str | None, scan: str, parity: str | None
) -> None:
    f = facts(video(field_order=order))
    assert (f.scan, f.field_parity) == (scan, parity)
    pre = normalise.plan(f).pre_filters
    if scan == "interlaced":
        assert pre == (f"bwdif=mode=send_frame:parity={parity}:deint=all",)
    else:
        assert pre == ()


@pytest.mark.parametrize(
    ("tff", "bff", "progressive", "verdict"),
    [(50, 0, 0, ("interlaced", "tff")), (0, 49, 0, ("interlaced", "bff")),
     (30, 0, 20, ("interlaced", "tff")), (10, 0, 40, ("progressive", None)),
     (3, 0, 0, ("progressive", None)), (0, 0, 100, ("progressive", None))],
)  # fmt: skip
def test_idet_summary_decides_when_the_codec_does_not(
    tff: int, bff: int, progressive: int, verdict: tuple[str, str | None]
) -> None:
    stderr = (
        "[Parsed_idet_0 @ 0x1] Repeated Fields: Neither: 50 Top: 0 Bottom: 0\n"
        f"[Parsed_idet_0 @ 0x1] Single frame detection: TFF: 1 BFF: 1 Progressive: 1 "
        "Undetermined: 1\n"
        f"[Parsed_idet_0 @ 0x1] Multi frame detection: TFF: {tff:5d} BFF: {bff:5d} "
        f"Progressive: {progressive:5d} Undetermined: 1\n"
    )
    assert normalise.judge_idet(stderr) == verdict
    assert normalise.judge_idet("no summary") == ("progressive", None)


# --------------------------------------------------------------------------- colour


def test_pq_hdr_is_tone_mapped_to_bt709_and_scaled_first_when_larger() -> None:
    stream = video(
        width=3840, height=2160, pix_fmt="yuv420p10le", bits_per_raw_sample="10",
        color_range="tv", color_space="bt2020nc", color_transfer="smpte2084",
        color_primaries="bt2020",
    )  # fmt: skip
    f = facts(stream)
    assert f.colour.hdr == "pq" and f.colour.bit_depth == 10
    plan = normalise.plan(f, (1920, 1080))
    assert plan.colour_filters == (
        "zscale=w=1920:h=1080:f=bicubic:tin=smpte2084:min=bt2020nc:pin=bt2020:rin=tv:"
        "t=linear:npl=100",
        "format=gbrpf32le",
        "zscale=p=bt709",
        "tonemap=tonemap=hable:desat=0",
        "zscale=t=bt709:m=bt709:r=tv",
        "format=yuv420p",
    )
    assert plan.output_args == (
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
        "-color_range", "tv",
    )  # fmt: skip
    assert "w=" not in plan.thumbnail_filters[0]  # the thumbnail is scaled on its own


def test_hlg_with_untagged_primaries_and_matrix_is_read_as_bt2020() -> None:
    f = facts(video(pix_fmt="yuv420p10le", color_transfer="arib-std-b67"))
    assert f.colour.hdr == "hlg"
    assert (f.colour.primaries, f.colour.matrix) == ("bt2020", "bt2020nc")
    first = normalise.plan(f, (1920, 1080)).colour_filters[0]
    assert first.startswith("zscale=tin=arib-std-b67:min=bt2020nc:pin=bt2020:")
    assert "tonemap=tonemap=hable:desat=0" in normalise.plan(f).colour_filters


def test_wide_gamut_sdr_converts_primaries_without_tone_mapping() -> None:
    f = facts(video(color_space="bt2020nc", color_primaries="bt2020", color_transfer="bt2020-10"))
    assert f.colour.hdr is None and f.colour.wide_gamut
    assert normalise.plan(f).colour_filters == (
        "zscale=tin=bt2020-10:min=bt2020nc:pin=bt2020:rin=tv:t=bt709:m=bt709:p=bt709:r=tv",
        "format=yuv420p",
    )


def test_without_zscale_hdr_falls_back_to_colorspace() -> None:
    f = facts(video(color_transfer="smpte2084", color_primaries="bt2020"))
    [only] = normalise.plan(f, zscale=False).colour_filters
    assert only.startswith("colorspace=all=bt709:iall=bt2020:")


@pytest.mark.parametrize(
    ("fields", "filters"),
    [({"color_space": "bt709", "color_range": "tv"}, ()),
     ({}, ()),  # untagged HD: BT.709, as players assume
     ({"width": 720, "height": 576},
      ("scale=in_color_matrix=smpte170m:out_color_matrix=bt709:in_range=tv:out_range=tv",)),
     ({"width": 720, "height": 576, "color_space": "bt470bg"},
      ("scale=in_color_matrix=bt601:out_color_matrix=bt709:in_range=tv:out_range=tv",)),
     ({"pix_fmt": "yuvj420p", "color_range": "pc", "color_space": "bt470bg"},
      ("scale=in_color_matrix=bt601:out_color_matrix=bt709:in_range=pc:out_range=tv",)),
     ({"color_space": "bt709", "color_range": "pc"},
      ("scale=in_color_matrix=bt709:out_color_matrix=bt709:in_range=pc:out_range=tv",))],
)  # fmt: skip
def test_sdr_is_converted_to_bt709_limited_range_only_when_it_is_not(
    fields: dict[str, Any], filters: tuple[str, ...]
) -> None:
    assert normalise.plan(facts(video(**fields))).colour_filters == filters


# --------------------------------------------------------------------------- audio


def test_an_undecodable_default_track_yields_to_the_decodable_one() -> None:
    """The iPhone MOV: APAC (no codec_name in ffprobe 5.1) first and default, AAC second."""
    f = facts(video(), audio(1, None, default=1, channels=4), audio(2, "aac", default=0))
    assert f.audio_candidates == (2,)
    assert f.audio_index == 2
    assert normalise.plan(f).audio_map == "0:2"
    assert (
        parse_probe(probe_json(video(), audio(1, None, default=1)), ProbeLimits()).audio_codec
        is None
    )


def test_the_default_track_is_preferred_then_file_order() -> None:
    f = facts(
        video(), audio(1, "aac", default=0), audio(2, "ac3", default=1), audio(3, "mp3", default=0)
    )
    assert f.audio_candidates == (2, 1, 3)
    assert facts(video(), audio(1, "aac", default=0), audio(2, "mp3", default=0)).audio_index == 1


def test_no_decodable_audio_means_silent() -> None:
    f = facts(video(), audio(1, None, default=1))
    assert f.audio_index is None and not f.has_audio
    assert normalise.plan(f).audio_map is None


def test_the_ladder_maps_the_chosen_streams_and_tags_bt709() -> None:
    f = facts(
        {**video(index=0, codec_name="mjpeg"), "disposition": {"default": 0, "attached_pic": 1}},
        {**video(index=1), "width": 720, "height": 576, "field_order": "tt"},
        audio(2, None, default=1),
        audio(3, "aac", default=0),
    )
    p = normalise.plan(f)
    assert p.video_map == "0:1"  # the cover art is stream 0
    rungs = build_ladder(f.width, f.height, f.fps)
    argv = build_ladder_command(
        Path("in.mov"), Path("out"), rungs, has_audio=True, source_fps=50,
        video_map=p.video_map, pre_filters=p.pre_filters, colour_filters=p.colour_filters,
        audio_map=p.audio_map or "", output_args=p.output_args,
    ).argv  # fmt: skip
    assert argv[argv.index("-filter_complex") + 1] == (
        "[0:1]bwdif=mode=send_frame:parity=tff:deint=all,fps=25,"
        "scale=in_color_matrix=smpte170m:out_color_matrix=bt709:in_range=tv:out_range=tv,"
        "format=yuv420p,split=2[s0][s1];"
        "[s0]scale=600:480:flags=bicubic,setsar=1[v0];"
        "[s1]scale=450:360:flags=bicubic,setsar=1[v1]"
    )
    assert argv.count("0:3") == 2 and "0:a:0" not in argv
    i = argv.index("-colorspace")
    assert argv[i : i + 8] == list(normalise.OUTPUT_COLOUR_ARGS)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("returncode", "stderr", "kind", "transient"),
    [(1, "Decoder (codec none) not found for input stream #0:1", TranscodeError, False),
     (1, "Error initializing complex filters.\nInvalid argument", TranscodeError, False),
     (-9, "", TranscodeError, True),
     (255, "Exiting normally, received signal 15.", TranscodeError, True),
     (1, "av_interleaved_write_frame(): No space left on device", TranscodeError, True),
     (1, "Cannot allocate memory", TranscodeError, True),
     (1, "[h264 @ 0x1] error while decoding MB 3 4, bytestream -5", UnusableMedia, False)],
)  # fmt: skip
def test_ffmpeg_failures_are_routed_by_what_they_blame(
    returncode: int, stderr: str, kind: type, transient: bool
) -> None:
    exc = ffmpeg_failure(returncode, stderr, "encoding the ladder")
    assert type(exc) is kind
    reason, retried = classify(exc)
    assert retried is transient
    if kind is TranscodeError and not transient:
        assert reason.startswith("the video cannot be processed: ffmpeg stopped while encoding")


def test_variable_frame_rate_is_built_for_its_maximum_rate_not_its_average() -> None:
    """RFC 8216 4.3.4.2: FRAME-RATE is the maximum; frames come on the 1/30 s grid."""
    from reels.media.probe import frame_rate

    phone_vfr = {"avg_frame_rate": "15341/1000", "r_frame_rate": "30/1"}
    assert frame_rate(phone_vfr) == 30.0
    assert frame_rate({"avg_frame_rate": "2997/100", "r_frame_rate": "90000/1"}) == 29.97
    assert frame_rate({"avg_frame_rate": "25/1", "r_frame_rate": "50/1", "field_order": "tt"}) == 25
    assert frame_rate({"avg_frame_rate": "30/1", "r_frame_rate": "30/1"}) == 30.0
    assert frame_rate({"avg_frame_rate": "0/0", "r_frame_rate": "0/0"}) == 30.0
