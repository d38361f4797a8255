"""HLS that meets RFC 8216, on real encodes: BANDWIDTH, AVERAGE-BANDWIDTH, CODECS and the rest.

Every source is generated here with ffmpeg's lavfi: flat grey (almost free to encode) with
a burst of full-frame noise (the most expensive thing there is) placed where a naive
measurement misses it: in a short last segment, in the first segment, across a segment
boundary, in a video of one segment, in a video shorter than the target duration. The
pipeline's master must declare a BANDWIDTH no lower than section 4.3.4.2's peak segment
bit rate, computed independently by tests/hls_check.py, and an AVERAGE-BANDWIDTH no
higher than BANDWIDTH. Then the checker itself is shown to fail on real ladders that
break each rule.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from svc_transcode.pipeline import TranscodeResult, transcode
from tests.hls_check import (
    LadderReport,
    assert_hls_valid,
    check_ladder,
    parse_master,
    peak_bit_rate,
)
from tests.media import _run

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe are not installed (scripts/setup.sh installs them)",
)


@dataclass(frozen=True)
class Case:
    width: int
    height: int
    seconds: float
    noise: tuple[float, float]  # when the full-frame noise runs, in seconds
    audio: bool = True
    segments: int = 0  # the number of segments each variant should have


CASES = {
    # The input: 8 s of flat grey, then 0.6 s of full-frame noise, at 720p.
    "dense_tail": Case(1280, 720, 8.6, (8.0, 8.6), segments=5),
    "dense_head": Case(854, 480, 6.0, (0.0, 0.6), segments=3),
    "dense_middle": Case(640, 360, 7.0, (3.5, 4.5), segments=4),  # across the 4 s boundary
    "single_segment": Case(426, 240, 1.5, (0.9, 1.5), segments=1),
    "shorter_than_target": Case(426, 240, 0.6, (0.0, 0.6), segments=1),
    "silent_dense_tail": Case(426, 240, 4.6, (4.0, 4.6), audio=False, segments=3),
    "dense_sliver_tail": Case(426, 240, 4.2, (4.0, 4.2), segments=3),  # a 0.2 s last segment
}


async def make_dense(out: Path, case: Case) -> Path:
    """Flat grey with full-frame temporal noise between `case.noise` seconds."""
    start, end = case.noise
    video = (
        f"color=c=gray:s={case.width}x{case.height}:r=30:d={case.seconds},"
        f"noise=alls=100:allf=t+u:enable='between(t,{start},{end})'"
    )
    argv = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", video]
    if case.audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:d={case.seconds}"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "16", "-pix_fmt", "yuv420p"]
    if case.audio:
        argv += ["-c:a", "aac", "-b:a", "96k", "-shortest"]
    await _run(*argv, str(out))
    return out


class Ladders:
    """Each case transcoded once per module; tests read the outputs, or copy them to tamper."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._done: dict[str, tuple[TranscodeResult, Path]] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> tuple[TranscodeResult, Path]:
        async with self._lock:
            if name not in self._done:
                src = await make_dense(self.root / f"{name}.mp4", CASES[name])
                out = self.root / name
                result = await transcode(src, out, preset="ultrafast")
                self._done[name] = (result, out)
            return self._done[name]

    async def copy(self, name: str, dest: Path) -> Path:
        _, out = await self.get(name)
        shutil.copytree(out, dest)
        return dest


@pytest.fixture(scope="module")
def ladders(tmp_path_factory: pytest.TempPathFactory) -> Ladders:
    return Ladders(tmp_path_factory.mktemp("hls-rfc8216"))


def _declared(root: Path) -> dict[str, dict[str, str]]:
    master, _ = parse_master((root / "master.m3u8").read_text())
    return {v.uri: v.attributes for v in master.variants}


def _bandwidth_holds(result: TranscodeResult, root: Path, report: LadderReport) -> None:
    declared = _declared(root)
    assert (
        {r.uri for r in report.variants} == set(declared) == {r.playlist for r in result.renditions}
    )
    for variant in report.variants:
        bandwidth = int(declared[variant.uri]["BANDWIDTH"])
        average = int(declared[variant.uri]["AVERAGE-BANDWIDTH"])
        assert bandwidth >= variant.peak_bps * (1 - 1e-9), (
            variant.uri,
            bandwidth,
            variant.peak_bps,
        )
        assert average <= bandwidth, (variant.uri, average, bandwidth)
        assert average == pytest.approx(variant.average_bps, rel=0.001)
    for rendition in result.renditions:  # what the published event carries agrees
        assert rendition.bandwidth == int(declared[rendition.playlist]["BANDWIDTH"])
        assert rendition.average_bandwidth == int(declared[rendition.playlist]["AVERAGE-BANDWIDTH"])


# --------------------------------------------------------------------------- BANDWIDTH


async def test_dense_tail_bandwidth_is_at_least_the_rfc_peak_in_every_variant(
    ladders: Ladders,
) -> None:
    result, root = await ladders.get("dense_tail")
    report = await assert_hls_valid(root)
    assert [r.name for r in result.renditions] == ["720p", "480p", "360p"]
    _bandwidth_holds(result, root, report)
    for variant in report.variants:
        assert variant.durations[-1] == pytest.approx(0.6, abs=0.05)
        assert len(variant.durations) == CASES["dense_tail"].segments
        # The input really is dense at the tail: the peak is the window that ends with the
        # short last segment, and it is far above both the average and every earlier window.
        without_tail = peak_bit_rate(
            variant.sizes[:-1], variant.durations[:-1], variant.target_duration or 2
        )
        assert variant.peak_bps > 2 * variant.average_bps
        assert variant.peak_bps > 3 * without_tail


@pytest.mark.parametrize(
    "name",
    [
        "dense_head",
        "dense_middle",
        "single_segment",
        "shorter_than_target",
        "silent_dense_tail",
        "dense_sliver_tail",
    ],
)
async def test_bandwidth_covers_the_peak_wherever_the_dense_part_is(
    ladders: Ladders, name: str
) -> None:
    result, root = await ladders.get(name)
    report = await assert_hls_valid(root)
    _bandwidth_holds(result, root, report)
    for variant in report.variants:
        assert len(variant.durations) == CASES[name].segments, variant.durations
        assert sum(variant.durations) == pytest.approx(CASES[name].seconds, abs=0.1)
    codecs = {r.codecs for r in result.renditions}
    assert all(("mp4a.40.2" in c) == CASES[name].audio for c in codecs), codecs


# --------------------------------------------------------------------------- the checker fails


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new, count))


def _first_attr(root: Path, name: str) -> str:
    master, _ = parse_master((root / "master.m3u8").read_text())
    return f"{name}={master.variants[0].attributes[name]}"


async def test_checker_fails_a_bandwidth_below_the_peak(ladders: Ladders, tmp_path: Path) -> None:
    root = await ladders.copy("dense_tail", tmp_path / "l")
    report = await check_ladder(root)
    first = report.variants[0] if report.variants else None
    assert first is not None
    # What the old measurement declared: the densest *full* segment, ignoring the tail.
    naive = max(s * 8 / d for s, d in zip(first.sizes, first.durations, strict=True) if d >= 1)
    _edit(root / "master.m3u8", _first_attr(root, "BANDWIDTH"), f"BANDWIDTH={int(naive)}")
    problems = (await check_ladder(root)).problems
    assert any("below the peak segment bit rate" in p for p in problems), problems
    assert any("exceeds BANDWIDTH" in p for p in problems), problems


async def test_checker_fails_an_average_bandwidth_that_is_not_the_average(
    ladders: Ladders, tmp_path: Path
) -> None:
    root = await ladders.copy("single_segment", tmp_path / "l")
    _edit(root / "master.m3u8", "AVERAGE-BANDWIDTH=", "AVERAGE-BANDWIDTH=1")  # ~10x
    problems = (await check_ladder(root)).problems
    assert any("but the average segment bit rate" in p for p in problems), problems


@pytest.mark.parametrize(
    ("name", "replace", "complaint"),
    [
        ("single_segment", ("avc1.", "avc1.ff"), "CODECS"),  # wrong profile/level bytes
        ("single_segment", (",mp4a.40.2", ""), "CODECS"),  # audio left out
        ("single_segment", ("mp4a.40.2", "mp4a.40.5"), "CODECS"),  # HE-AAC claimed for LC
        ("silent_dense_tail", ('"', '"mp4a.40.2,'), "CODECS"),  # audio claimed, none there
        ("single_segment", ("RESOLUTION=426x240", "RESOLUTION=428x240"), "RESOLUTION"),
        ("single_segment", ("FRAME-RATE=30.000", "FRAME-RATE=25.000"), "FRAME-RATE"),
    ],
)
async def test_checker_fails_attributes_untrue_to_the_media(
    ladders: Ladders, tmp_path: Path, name: str, replace: tuple[str, str], complaint: str
) -> None:
    root = await ladders.copy(name, tmp_path / "l")
    _edit(root / "master.m3u8", *replace)
    problems = (await check_ladder(root)).problems
    assert any(complaint in p for p in problems), problems


async def test_checker_fails_a_segment_that_is_missing_or_a_target_that_differs(
    ladders: Ladders, tmp_path: Path
) -> None:
    root = await ladders.copy("dense_head", tmp_path / "l")
    (root / "360p" / "seg_0001.ts").unlink()
    _edit(root / "480p" / "index.m3u8", "#EXT-X-TARGETDURATION:2", "#EXT-X-TARGETDURATION:3")
    problems = (await check_ladder(root)).problems
    assert any("seg_0001.ts does not resolve" in p for p in problems), problems
    assert any("different target durations" in p for p in problems), problems


async def test_checker_wants_independent_segments_declared_when_they_are(
    ladders: Ladders, tmp_path: Path
) -> None:
    root = await ladders.copy("single_segment", tmp_path / "l")
    for playlist in [root / "master.m3u8", *root.glob("*/index.m3u8")]:
        _edit(playlist, "#EXT-X-INDEPENDENT-SEGMENTS\n", "")
    problems = (await check_ladder(root)).problems
    assert any("no playlist says EXT-X-INDEPENDENT-SEGMENTS" in p for p in problems), problems


@pytest.mark.parametrize("open_gop", [False, True])
async def test_checker_fails_independent_segments_that_do_not_start_with_an_idr(
    tmp_path: Path, open_gop: bool
) -> None:
    """Segments cut mid-GOP (no keyframe), or at open-GOP I-frames (a keyframe to ffprobe,
    but B-frames before it refer to the previous segment), are not independent."""
    src = tmp_path / "src.ts"
    x264 = "keyint=60:min-keyint=60:scenecut=0" + (":open-gop=1:bframes=3" if open_gop else "")
    await _run(
        "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=30:d=4",
        "-c:v", "libx264", "-preset", "veryfast" if open_gop else "ultrafast",
        "-x264-params", x264, "-pix_fmt", "yuv420p", str(src),
    )  # fmt: skip
    (tmp_path / "v").mkdir()
    cut = (
        ["-segment_time", "2"] if open_gop else ["-segment_time", "1", "-break_non_keyframes", "1"]
    )
    await _run(
        "ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-f", "segment", *cut,
        "-reset_timestamps", "0", str(tmp_path / "v" / "seg_%d.ts"),
    )  # fmt: skip
    segments = sorted((tmp_path / "v").glob("seg_*.ts"), key=lambda p: int(p.stem[4:]))
    assert len(segments) >= 2
    media = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
    media += ["#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for seg in segments:
        media += [f"#EXTINF:{4 / len(segments):.6f},", seg.name]
    (tmp_path / "v" / "index.m3u8").write_text("\n".join([*media, "#EXT-X-ENDLIST", ""]))
    (tmp_path / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=99999999,RESOLUTION=160x96,CODECS="avc1.640000"\n'
        "v/index.m3u8\n"
    )
    problems = (await check_ladder(tmp_path)).problems
    assert any("does not start with an IDR keyframe" in p for p in problems), problems
