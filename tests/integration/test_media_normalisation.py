"""Media normalisation on real files (svc_transcode/normalise.py, reels/media/probe.py).

Each source is what a camera, broadcast encoder or phone really writes, generated small
(tests/media.py): anamorphic pixels, open-GOP H.264, an iPhone MOV whose default audio
track this ffmpeg cannot decode, interlaced video, HDR. Each must come out as a ladder of
square-pixel, progressive, SDR BT.709 rungs with the right audio, checked with
ffprobe/ffmpeg the way a player sees it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from fractions import Fraction
from pathlib import Path

import pytest

from reels.media.probe import probe
from svc_transcode import normalise
from svc_transcode.hls import parse_media_playlist
from svc_transcode.pipeline import TranscodeError, TranscodeResult, UnusableMedia, transcode
from svc_transcode.worker import classify
from tests.hls_check import assert_hls_valid
from tests.media import (
    decode_errors,
    ffprobe_json,
    make_anamorphic,
    make_hdr,
    make_interlaced,
    make_open_gop,
    make_spatial_audio_mov,
    truncated_copy,
)

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (scripts/setup.sh installs them)",
)

PRESET = "ultrafast"


async def video_stream(path: Path) -> dict:
    data = await ffprobe_json(path)
    return next(s for s in data["streams"] if s["codec_type"] == "video")


def segments(work: Path, playlist: str) -> list[Path]:
    return [
        (work / playlist).parent / uri
        for _, uri in parse_media_playlist((work / playlist).read_text())
    ]


async def idet_interlaced_share(path: Path) -> float:
    """Share of frames ffmpeg's idet (multi-frame detection) calls interlaced."""
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-i", str(path),
        "-vf", "idet", "-an", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    found = re.findall(
        r"Multi frame detection:\s*TFF:\s*(\d+)\s*BFF:\s*(\d+)\s*Progressive:\s*(\d+)\s*"
        r"Undetermined:\s*(\d+)",
        err.decode(),
    )
    tff, bff, progressive, undetermined = (int(v) for v in found[-1])
    total = tff + bff + progressive + undetermined
    assert total > 0
    return (tff + bff) / total


async def assert_square_pixel_rungs(result: TranscodeResult, work: Path, aspect: float) -> None:
    """Every rung: the advertised size is the coded size, SAR 1:1, display aspect `aspect`."""
    assert result.width / result.height == pytest.approx(aspect, abs=0.03)
    for rendition in result.renditions:
        assert rendition.width / rendition.height == pytest.approx(aspect, abs=0.03)
        stream = await video_stream(segments(work, rendition.playlist)[0])
        assert (stream["width"], stream["height"]) == (rendition.width, rendition.height)
        assert stream.get("sample_aspect_ratio", "1:1") in ("1:1", "0:1", "N/A")
        assert stream["width"] / stream["height"] == pytest.approx(aspect, abs=0.03)
    thumb = await video_stream(work / result.thumbnail)
    assert thumb["width"] / thumb["height"] == pytest.approx(aspect, abs=0.03)


async def assert_bt709_sdr(path: Path) -> None:
    stream = await video_stream(path)
    assert stream["pix_fmt"] == "yuv420p"
    assert stream.get("color_transfer") == "bt709"
    assert stream.get("color_primaries") == "bt709"
    assert stream.get("color_space") == "bt709"
    assert stream.get("color_range", "tv") == "tv"


# --- display size -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "sar", "display", "aspect"),
    [
        (1440, 1080, "4:3", (1920, 1080), 16 / 9),  # HDV / broadcast 1080
        (720, 576, "64:45", (1024, 576), 16 / 9),  # PAL DV widescreen
        (720, 576, "16:15", (768, 576), 4 / 3),  # PAL DV 4:3
        (480, 640, "3:4", (360, 640), 9 / 16),  # portrait, pixels narrower than tall
    ],
)
async def test_anamorphic_source_publishes_its_display_aspect_with_square_pixels(
    tmp_path: Path,
    width: int,
    height: int,
    sar: str,
    display: tuple[int, int],
    aspect: float,
) -> None:
    src = await make_anamorphic(tmp_path / "ana.mp4", width=width, height=height, sar=sar)
    source = await probe(src)
    assert source.sample_aspect_ratio == Fraction(sar.replace(":", "/"))
    assert (source.width, source.height) == display  # what svc_upload stores
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")  # RFC 8216 on every ladder
    assert (result.width, result.height) == display
    assert max(min(r.width, r.height) for r in result.renditions) <= min(display)  # no upscale
    await assert_square_pixel_rungs(result, tmp_path / "out", aspect)


# --- decodability -------------------------------------------------------------------------


async def test_open_gop_h264_is_accepted_by_the_probe_and_published(tmp_path: Path) -> None:
    src = await make_open_gop(tmp_path / "open-gop.mp4")
    assert await decode_errors(src) == ""  # a full decode is clean ...
    source = await probe(src)  # ... and the tail seek's warnings are not corruption
    assert source.duration_s == pytest.approx(8.0, abs=0.1)
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")  # RFC 8216 on every ladder
    assert result.has_audio
    for rendition in result.renditions:
        assert await decode_errors(tmp_path / "out" / rendition.playlist) == ""


async def test_a_truncated_open_gop_upload_is_still_refused(tmp_path: Path) -> None:
    src = await make_open_gop(tmp_path / "open-gop.mp4")
    cut = truncated_copy(src, tmp_path / "cut.mp4", keep=0.5)
    with pytest.raises(UnusableMedia, match="truncated|corrupt"):
        await probe(cut)
    garbage = tmp_path / "garbage.mp4"
    data = bytearray(src.read_bytes())
    moov = data.index(b"mdat") + 8  # keep the header, ruin every sample
    data[moov:] = bytes((i * 151 + 7) % 256 for i in range(len(data) - moov))
    garbage.write_bytes(bytes(data))
    with pytest.raises(UnusableMedia, match="truncated|corrupt"):
        await probe(garbage)


# --- audio track ----------------------------------------------------------------------------


async def test_iphone_mov_with_undecodable_default_audio_publishes_the_aac_track(
    tmp_path: Path,
) -> None:
    src = await make_spatial_audio_mov(tmp_path / "IMG_0001.MOV")
    probed = await ffprobe_json(src)
    audio = [s for s in probed["streams"] if s["codec_type"] == "audio"]
    assert audio[0].get("codec_tag_string") == "apac" and audio[0]["disposition"]["default"]
    assert audio[0].get("codec_name") in (None, "none")  # this ffmpeg cannot decode it

    source = await probe(src)
    assert source.has_audio and source.audio_codec == "aac"
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")  # RFC 8216 on every ladder
    assert result.has_audio
    master = (tmp_path / "out" / result.master_playlist).read_text()
    for rendition in result.renditions:
        assert "mp4a.40.2" in rendition.codecs
        assert f'CODECS="{rendition.codecs}"' in master
        data = await ffprobe_json(segments(tmp_path / "out", rendition.playlist)[0])
        [track] = [s for s in data["streams"] if s["codec_type"] == "audio"]
        assert track["codec_name"] == "aac" and track["channels"] == 2


async def test_a_video_whose_only_audio_is_undecodable_publishes_silent(tmp_path: Path) -> None:
    src = await make_spatial_audio_mov(tmp_path / "IMG_0002.MOV", aac_companion=False)
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")  # RFC 8216 on every ladder
    assert not result.has_audio
    for rendition in result.renditions:
        assert "mp4a" not in rendition.codecs
        data = await ffprobe_json(segments(tmp_path / "out", rendition.playlist)[0])
        assert [s["codec_type"] for s in data["streams"]] == ["video"]


async def test_a_deterministic_ffmpeg_failure_is_permanent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What happened before normalisation: the ladder mapped the undecodable APAC track,
    ffmpeg exited 1 on every attempt, and the job was retried as if the machine failed."""
    src = await make_spatial_audio_mov(tmp_path / "IMG_0003.MOV")

    async def first_candidate(src: Path, facts: normalise.SourceFacts) -> int | None:
        return 1  # the APAC track, as `-map 0:a:0` picked it

    monkeypatch.setattr(normalise, "pick_audio", first_candidate)
    with pytest.raises(TranscodeError) as err:
        await transcode(src, tmp_path / "out", preset=PRESET)
    assert not err.value.transient
    assert "cannot be processed" in str(err.value)
    reason, transient = classify(err.value)
    assert not transient and "cannot be processed" in reason


# --- scan type ------------------------------------------------------------------------------


async def test_interlaced_source_is_deinterlaced_on_every_rung(tmp_path: Path) -> None:
    src = await make_interlaced(tmp_path / "1080i.mp4", width=1280, height=720)
    assert await idet_interlaced_share(src) > 0.8  # the input really is interlaced
    facts = normalise.normalise(await probe(src))
    assert (facts.scan, facts.field_parity) == ("interlaced", "tff")  # field_order "tt"
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")  # RFC 8216 on every ladder
    top = result.renditions[0]
    assert (top.width, top.height) == (1280, 720)
    assert top.frame_rate == 25.0
    assert await idet_interlaced_share(tmp_path / "out" / top.playlist) <= 0.2
    stream = await video_stream(segments(tmp_path / "out", top.playlist)[0])
    assert stream.get("field_order", "progressive") == "progressive"


async def test_interlaced_pictures_without_a_field_order_are_found_by_idet(
    tmp_path: Path,
) -> None:
    """MPEG-4 part 2 in AVI stores no field order; bottom field first, as DV is. (720 lines
    so the top rung is not scaled: scaling blurs the combs away and idet sees nothing.)"""
    src = await make_interlaced(
        tmp_path / "woven.avi", width=1280, height=720, codec="mpeg4", bottom_first=True
    )
    facts = normalise.normalise(await probe(src))
    assert facts.scan == "unknown"
    settled = await normalise.settle(src, facts)
    assert (settled.scan, settled.field_parity) == ("interlaced", "bff")
    assert await idet_interlaced_share(src) > 0.8
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")  # RFC 8216 on every ladder
    assert (result.renditions[0].width, result.renditions[0].height) == (1280, 720)
    assert await idet_interlaced_share(tmp_path / "out" / result.renditions[0].playlist) <= 0.2


async def test_progressive_source_without_field_order_is_not_deinterlaced(
    tmp_path: Path,
) -> None:
    src = tmp_path / "prog.avi"
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi",
        "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "mpeg4", "-q:v", "3", str(src),
    )  # fmt: skip
    assert await proc.wait() == 0
    facts = await normalise.settle(src, normalise.normalise(await probe(src)))
    assert facts.scan == "progressive"
    assert normalise.plan(facts).pre_filters == ()


# --- colour ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67"])
async def test_hdr_source_is_tone_mapped_to_sdr_bt709(tmp_path: Path, transfer: str) -> None:
    src = await make_hdr(tmp_path / "hdr.mp4", transfer=transfer)
    source = await video_stream(src)
    assert (source["color_transfer"], source["color_primaries"]) == (transfer, "bt2020")
    assert source["pix_fmt"] == "yuv420p10le"
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")  # RFC 8216 on every ladder
    assert result.facts is not None and result.facts.colour.hdr in ("pq", "hlg")
    for rendition in result.renditions:
        first = segments(tmp_path / "out", rendition.playlist)[0]
        await assert_bt709_sdr(first)
        assert rendition.codecs[5:7] in ("42", "4d", "64")  # 8-bit; not High 10 (6e)
        assert await decode_errors(tmp_path / "out" / rendition.playlist) == ""


async def test_without_zscale_hdr_still_publishes_bt709(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented fallback for an ffmpeg built without zimg: `colorspace`, no tone map."""

    async def missing(name: str) -> bool:
        return False

    monkeypatch.setattr(normalise, "filter_available", missing)
    src = await make_hdr(tmp_path / "hdr.mp4", width=320, height=180)
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")  # RFC 8216 on every ladder
    await assert_bt709_sdr(segments(tmp_path / "out", result.renditions[0].playlist)[0])


# --------------------------------------------------------------------------- review follow-ups


async def _lavfi(out: Path, *args: str) -> Path:
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-y", *args, str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out


async def test_concealed_decoder_errors_publish_when_every_frame_comes_out(
    tmp_path: Path,
) -> None:
    """A few flipped bytes in a long open GOP: ffmpeg conceals the damage and every frame
    comes out, so the video is usable (issue 8: judge by frames, not warnings)."""
    src = await _lavfi(
        tmp_path / "longgop.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "4",
        "-c:v", "libx264", "-preset", "ultrafast",
        "-x264-params",
        "keyint=250:min-keyint=250:bframes=3:b-pyramid=normal:open-gop=1:scenecut=0",
    )  # fmt: skip
    data = bytearray(src.read_bytes())
    at = len(data) // 2
    data[at : at + 16] = bytes(b ^ 0xFF for b in data[at : at + 16])
    glitched = tmp_path / "glitch.mp4"
    glitched.write_bytes(bytes(data))
    result = await transcode(glitched, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")
    assert result.renditions


async def test_variable_frame_rate_declares_and_encodes_its_maximum_rate(tmp_path: Path) -> None:
    """A phone's VFR clip (frames dropped on a 1/30 s grid, average ~15 fps): FRAME-RATE is
    the maximum (RFC 8216 4.3.4.2) and the GOP is counted at the rate frames are written."""
    src = await _lavfi(
        tmp_path / "vfr.mp4",
        "-f", "lavfi", "-i", "testsrc2=size=480x270:rate=30", "-t", "4",
        "-vf", "select='lt(mod(n\\,10)\\,4)+eq(mod(n\\,10)\\,7)'", "-fps_mode", "vfr",
        "-c:v", "libx264", "-preset", "ultrafast",
    )  # fmt: skip
    result = await transcode(src, tmp_path / "out", preset=PRESET)
    await assert_hls_valid(tmp_path / "out")
    master = (tmp_path / "out" / result.master_playlist).read_text()
    rates = {float(r) for r in re.findall(r"FRAME-RATE=([0-9.]+)", master)}
    assert rates == {30.0}, master
    assert all(abs(r.frame_rate - 30.0) < 0.01 for r in result.renditions)
