"""The transcode pipeline on real media: generated clips in, playable HLS and artifacts out.

Every clip is generated with ffmpeg (tests/media.py) and every output is checked with
ffprobe/ffmpeg the way a player or the CDN would see it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from reels.media.probe import ProbeLimits, probe
from svc_transcode.hls import parse_media_playlist
from svc_transcode.pipeline import TranscodeError, TranscodeResult, UnusableMedia, transcode
from tests.hls_check import assert_hls_valid
from tests.media import MediaFactory, decode_errors, ffprobe_json

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (scripts/setup.sh installs them)",
)

TEST_PRESET = "ultrafast"


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return MediaFactory(tmp_path_factory.mktemp("media"))


class Transcoded:
    """Transcodes each named clip once per session; tests share the outputs read-only."""

    def __init__(self, media: MediaFactory, root: Path) -> None:
        self.media = media
        self.root = root
        self._done: dict[str, tuple[TranscodeResult, Path]] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> tuple[TranscodeResult, Path]:
        async with self._lock:
            if name not in self._done:
                work = self.root / name
                result = await transcode(await self.media.get(name), work, preset=TEST_PRESET)
                await assert_hls_valid(work)  # tests/hls_check.py: RFC 8216
                self._done[name] = (result, work)
            return self._done[name]


@pytest.fixture(scope="session")
def transcoded(media: MediaFactory, tmp_path_factory: pytest.TempPathFactory) -> Transcoded:
    return Transcoded(media, tmp_path_factory.mktemp("out"))


def dims(result: TranscodeResult) -> list[tuple[int, int]]:
    return [(r.width, r.height) for r in result.renditions]


async def video_stream(path: Path) -> dict:
    data = await ffprobe_json(path)
    return next(s for s in data["streams"] if s["codec_type"] == "video")


async def first_segment(work: Path, playlist: str) -> Path:
    segments = parse_media_playlist((work / playlist).read_text())
    return (work / playlist).parent / segments[0][1]


# --- ladder shape -------------------------------------------------------------------------


async def test_portrait_1080x1920_gets_four_portrait_rungs(transcoded: Transcoded) -> None:
    result, work = await transcoded.get("portrait")
    assert dims(result) == [(1080, 1920), (720, 1280), (480, 854), (360, 640)]
    assert [r.name for r in result.renditions] == ["1080p", "720p", "480p", "360p"]
    for rendition in result.renditions:
        stream = await video_stream(await first_segment(work, rendition.playlist))
        assert (stream["width"], stream["height"]) == (rendition.width, rendition.height)


async def test_landscape_ladder_is_built_from_the_short_edge(transcoded: Transcoded) -> None:
    result, _ = await transcoded.get("landscape")
    assert dims(result) == [(1920, 1080), (1280, 720), (854, 480), (640, 360)]
    bitrates = [r.video_bitrate for r in result.renditions]
    assert bitrates == [5_000_000, 2_500_000, 1_200_000, 600_000]


async def test_rotated_phone_clip_comes_out_upright_portrait(
    transcoded: Transcoded, media: MediaFactory
) -> None:
    source = await probe(await media.get("rotated"))
    # ffmpeg 5.1 stores the remuxed tag as a display matrix; its direction is ffmpeg's
    # business, what matters is a quarter turn that makes the coded 1920x1080 portrait.
    assert source.rotation in (90, 270)
    assert (source.width, source.height) == (1080, 1920)

    result, work = await transcoded.get("rotated")
    assert dims(result)[0] == (1080, 1920)
    stream = await video_stream(await first_segment(work, result.renditions[0].playlist))
    assert (stream["width"], stream["height"]) == (1080, 1920)
    # Upright pixels, not a rotation flag a player might ignore.
    assert "rotate" not in stream.get("tags", {})
    assert not any("rotation" in side for side in stream.get("side_data_list", []))
    thumb = await video_stream(work / result.thumbnail)
    assert thumb["height"] > thumb["width"]


async def test_silent_video_transcodes_without_audio_track(transcoded: Transcoded) -> None:
    result, work = await transcoded.get("silent")
    assert not result.has_audio
    for rendition in result.renditions:
        assert "mp4a" not in rendition.codecs
        data = await ffprobe_json(await first_segment(work, rendition.playlist))
        assert [s["codec_type"] for s in data["streams"]] == ["video"]


async def test_240p_source_gets_one_rung_and_no_upscale(transcoded: Transcoded) -> None:
    result, work = await transcoded.get("tiny")
    assert dims(result) == [(426, 240)]
    assert result.renditions[0].name == "240p"
    assert result.renditions[0].video_bitrate < 600_000
    stream = await video_stream(await first_segment(work, result.renditions[0].playlist))
    assert (stream["width"], stream["height"]) == (426, 240)


async def test_60fps_source_is_capped_to_30fps(transcoded: Transcoded) -> None:
    result, work = await transcoded.get("fast60")
    assert {r.frame_rate for r in result.renditions} == {30.0}
    stream = await video_stream(await first_segment(work, result.renditions[0].playlist))
    assert stream["avg_frame_rate"] in ("30/1", "30000/1000")
    assert "FRAME-RATE=30.000" in (work / result.master_playlist).read_text()


# --- rejected inputs ----------------------------------------------------------------------


async def test_corrupt_file_is_a_permanent_failure_with_reason(
    media: MediaFactory, tmp_path: Path
) -> None:
    with pytest.raises(UnusableMedia) as err:
        await transcode(await media.get("corrupt"), tmp_path / "out", preset=TEST_PRESET)
    assert "corrupt" in err.value.reason


async def test_upload_cut_off_after_its_header_is_a_permanent_failure(
    media: MediaFactory, tmp_path: Path
) -> None:
    with pytest.raises(UnusableMedia) as err:
        await transcode(await media.get("truncated"), tmp_path / "out", preset=TEST_PRESET)
    assert "truncated" in err.value.reason or "corrupt" in err.value.reason


async def test_text_file_named_mp4_is_rejected(media: MediaFactory, tmp_path: Path) -> None:
    with pytest.raises(UnusableMedia) as err:
        await transcode(await media.get("text"), tmp_path / "out", preset=TEST_PRESET)
    assert "not a video file" in err.value.reason
    assert not (tmp_path / "out").exists()


async def test_gif_renamed_mp4_is_rejected_naming_its_codec(tmp_path: Path) -> None:
    gif = tmp_path / "anim.mp4"
    proc = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10:duration=2",
        "-f", "gif", str(gif),
    )  # fmt: skip
    assert await proc.wait() == 0
    with pytest.raises(UnusableMedia) as err:
        await probe(gif)
    assert "'gif' is not supported" in err.value.reason


async def test_duration_and_size_limits_give_readable_reasons(media: MediaFactory) -> None:
    clip = await media.get("small")  # 640x360, 6 s
    with pytest.raises(UnusableMedia, match="maximum is 2 s"):
        await probe(clip, ProbeLimits(max_duration_s=2))
    with pytest.raises(UnusableMedia, match="short edge must be at least 480 px"):
        await probe(clip, ProbeLimits(min_short_edge=480))
    with pytest.raises(UnusableMedia, match="long edge must be at most 600 px"):
        await probe(clip, ProbeLimits(max_long_edge=600))


# --- HLS output ---------------------------------------------------------------------------


async def test_master_playlist_has_bandwidth_resolution_codecs_framerate(
    transcoded: Transcoded,
) -> None:
    result, work = await transcoded.get("portrait")
    text = (work / result.master_playlist).read_text()
    infos = re.findall(r"#EXT-X-STREAM-INF:(.*)\n(.*)", text)
    assert len(infos) == 4
    by_uri = {r.playlist: r for r in result.renditions}
    for attrs, uri in infos:
        rendition = by_uri[uri]
        bandwidth = int(re.search(r"(?:^|,)BANDWIDTH=(\d+)", attrs).group(1))
        average = int(re.search(r"AVERAGE-BANDWIDTH=(\d+)", attrs).group(1))
        assert f"RESOLUTION={rendition.width}x{rendition.height}" in attrs
        assert "FRAME-RATE=30.000" in attrs
        codecs = re.search(r'CODECS="([^"]+)"', attrs).group(1)
        assert re.fullmatch(r"avc1\.[0-9a-f]{6},mp4a\.40\.2", codecs)
        # Measured from the segments: the peak covers the average, and both are in the
        # neighbourhood of what the encoder was asked for (the test clip is easy to code).
        segs = parse_media_playlist((work / uri).read_text())
        total = sum((work / uri).parent.joinpath(s).stat().st_size for _, s in segs)
        assert average == pytest.approx(total * 8 / sum(d for d, _ in segs), rel=0.01)
        assert bandwidth >= average > 0
        # The advertised profile/level is the one actually in the stream.
        stream = await video_stream(await first_segment(work, uri))
        profile_idc = {"High": 0x64, "Main": 0x4D, "Baseline": 0x42}
        expected = profile_idc.get(stream["profile"].replace("Constrained ", ""))
        assert int(codecs[5:7], 16) == expected
        assert int(codecs[9:11], 16) == stream["level"]
    assert text.index("720p/index.m3u8") < text.index("1080p/index.m3u8")  # fast start


async def test_every_variant_decodes_and_ffprobe_opens_master(transcoded: Transcoded) -> None:
    result, work = await transcoded.get("portrait")
    master = await ffprobe_json(work / result.master_playlist)
    assert float(master["format"]["duration"]) == pytest.approx(result.duration_s, abs=0.3)
    assert {s["codec_type"] for s in master["streams"]} == {"video", "audio"}
    for rendition in result.renditions:
        assert await decode_errors(work / rendition.playlist) == ""


async def test_keyframes_align_with_2s_segments(transcoded: Transcoded) -> None:
    result, work = await transcoded.get("portrait")  # 5 s: 2 + 2 + 1
    per_rung = []
    for rendition in result.renditions:
        segments = parse_media_playlist((work / rendition.playlist).read_text())
        durations = [d for d, _ in segments]
        assert all(d == pytest.approx(2.0, abs=0.05) for d in durations[:-1])
        assert 0 < durations[-1] <= 2.05
        per_rung.append(durations)
        for _, uri in segments:  # every segment opens on a keyframe: players can switch there
            data = await ffprobe_json(
                (work / rendition.playlist).parent / uri,
                "-select_streams", "v:0", "-read_intervals", "%+#1", "-show_frames",
            )  # fmt: skip
            assert data["frames"][0]["key_frame"] == 1
    assert all(d == per_rung[0] for d in per_rung)  # same boundaries on every rung


# --- artifacts ----------------------------------------------------------------------------


async def test_thumbnail_preview_and_storyboard_are_valid(transcoded: Transcoded) -> None:
    result, work = await transcoded.get("portrait")
    thumb = await video_stream(work / result.thumbnail)
    assert thumb["codec_name"] == "mjpeg"
    assert (thumb["width"], thumb["height"]) == (720, 1280)

    preview = await ffprobe_json(work / result.preview)
    assert float(preview["format"]["duration"]) == pytest.approx(3.0, abs=0.2)
    assert [s["codec_type"] for s in preview["streams"]] == ["video"]
    head = (work / result.preview).read_bytes()
    assert head.index(b"moov") < head.index(b"mdat")  # faststart: plays while downloading
    assert await decode_errors(work / result.preview) == ""

    index = json.loads((work / result.storyboard_index).read_text())
    sprite = await video_stream(work / result.storyboard)
    assert sprite["codec_name"] == "mjpeg"
    assert index["tile_width"] == 160 and index["tile_height"] == 284
    assert (sprite["width"], sprite["height"]) == (
        index["columns"] * index["tile_width"],
        index["rows"] * index["tile_height"],
    )
    assert index["count"] == len(index["tiles"]) == 5  # one a second
    vtt = (work / result.storyboard_vtt).read_text()
    assert vtt.startswith("WEBVTT")
    assert vtt.count("storyboard.jpg#xywh=") == 5
    assert "00:00:04.000 --> 00:00:05.000\nstoryboard.jpg#xywh=640,0,160,284" in vtt


async def test_outputs_stay_inside_work_dir(transcoded: Transcoded, media: MediaFactory) -> None:
    result, work = await transcoded.get("portrait")
    produced = [result.master_playlist, result.thumbnail, result.preview, result.storyboard]
    produced += [r.playlist for r in result.renditions]
    for rel in produced:
        assert not Path(rel).is_absolute()
        assert (work / rel).resolve().is_relative_to(work.resolve())
    assert sorted(p.name for p in media.root.iterdir() if p.name.startswith("portrait")) == [
        "portrait.mp4"
    ]


# --- progress and cancellation ------------------------------------------------------------


async def test_progress_moves_monotonically_to_100(media: MediaFactory, tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []

    async def on_progress(stage: str, percent: float) -> None:
        seen.append((stage, percent))

    await transcode(await media.get("small"), tmp_path / "out", on_progress, preset=TEST_PRESET)
    percents = [p for _, p in seen]
    assert percents == sorted(percents)
    assert seen[-1] == ("done", 100.0)
    stages = [s for s, _ in seen]
    assert stages.index("probe") < stages.index("encode") < stages.index("artifacts")
    encode = [p for s, p in seen if s == "encode"]
    assert min(encode) >= 2 and max(encode) == 90
    assert all(90 <= p <= 99 for s, p in seen if s == "artifacts")


def ffmpeg_children() -> list[int]:
    """PIDs of live (non-zombie) ffmpeg processes whose parent is this test process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if comm == "ffmpeg" and int(ppid) == os.getpid() and state != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def test_cancel_kills_ffmpeg(media: MediaFactory, tmp_path: Path) -> None:
    encoding = asyncio.Event()

    def on_progress(stage: str, percent: float) -> None:
        if stage == "encode":
            encoding.set()

    task = asyncio.create_task(
        transcode(await media.get("landscape"), tmp_path / "out", on_progress, preset="veryfast")
    )
    await asyncio.wait_for(encoding.wait(), 30)
    running = ffmpeg_children()
    assert running, "the ladder ffmpeg should be running while encode progress is reported"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ffmpeg_children() == []
    assert not any(alive(pid) for pid in running)


async def test_ffmpeg_killed_midway_is_a_transient_failure_with_stderr(
    media: MediaFactory, tmp_path: Path
) -> None:
    killed: list[int] = []

    def on_progress(stage: str, percent: float) -> None:
        if stage == "encode" and not killed:
            for pid in ffmpeg_children():
                os.kill(pid, signal.SIGKILL)  # what the OOM killer or a node drain does
                killed.append(pid)

    with pytest.raises(TranscodeError) as err:
        await transcode(
            await media.get("landscape"), tmp_path / "out", on_progress, preset="veryfast"
        )
    assert killed
    assert err.value.transient
    assert "killed by signal 9" in str(err.value)
