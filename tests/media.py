"""Test media generated with ffmpeg's lavfi sources, so no binary fixtures live in git.

Clips are short (3-6 s) and encoded with `ultrafast` so a whole session's media costs a
few seconds; `MediaFactory` caches each clip per session.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"


async def _run(*argv: str) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return out


async def make_clip(
    out: Path,
    *,
    width: int,
    height: int,
    seconds: float = 4.0,
    fps: int = 30,
    audio: bool = True,
    faststart: bool = True,
) -> Path:
    """A testsrc2 clip (moving pattern, so x264 has real work) with an optional sine tone."""
    argv = [
        FFMPEG, "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}",
    ]  # fmt: skip
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    argv += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(fps), "-pix_fmt", "yuv420p"]
    if audio:
        argv += ["-c:a", "aac", "-b:a", "96k", "-shortest"]
    if faststart:
        argv += ["-movflags", "+faststart"]
    await _run(*argv, str(out))
    return out


async def make_rotated(out: Path, *, seconds: float = 4.0) -> Path:
    """A phone-style clip: 1920x1080 coded frames with rotate=90 (displayed 1080x1920).

    ffmpeg 5.1 drops a rotate flag on encode, so encode first and remux with the tag.
    """
    coded = out.with_name(out.stem + "-coded.mp4")
    await make_clip(coded, width=1920, height=1080, seconds=seconds)
    await _run(
        FFMPEG, "-v", "error", "-y", "-i", str(coded), "-map", "0", "-c", "copy",
        "-metadata:s:v:0", "rotate=90", str(out),
    )  # fmt: skip
    coded.unlink()
    return out


def corrupt_copy(good: Path, out: Path) -> Path:
    """`good` with a tenth of its bytes overwritten by noise in the middle.

    The container header is intact, so it probes fine and its first and last second
    decode; only a full decode finds the damage, like a bit-rotted or badly spliced upload.
    """
    data = bytearray(good.read_bytes())
    start, length = len(data) // 2, len(data) // 10
    data[start : start + length] = bytes((i * 37 + 11) % 256 for i in range(length))
    out.write_bytes(bytes(data))
    return out


def truncated_copy(good: Path, out: Path, keep: float = 0.6) -> Path:
    """The first `keep` of a faststart mp4: an upload cut off after its header was sent."""
    data = good.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def text_file(out: Path) -> Path:
    out.write_text("This is not a video, whatever its name says.\n" * 20)
    return out


async def ffprobe_json(path: Path, *extra: str) -> dict[str, Any]:
    out = await _run(
        FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
        *extra, str(path),
    )  # fmt: skip
    return json.loads(out)


async def decode_errors(path: Path) -> str:
    """Fully decode `path`; return ffmpeg's error output ("" when it decodes cleanly)."""
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    text = err.decode("utf-8", "replace").strip()
    return text if text or proc.returncode == 0 else f"exit {proc.returncode}"


class MediaFactory:
    """Generates each named clip once per session, on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Path] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> Path:
        async with self._lock:
            if name not in self._cache:
                self._cache[name] = await self._make(name)
            return self._cache[name]

    async def _make(self, name: str) -> Path:
        out = self.root / f"{name}.mp4"
        if name == "landscape":
            return await make_clip(out, width=1920, height=1080, seconds=4)
        if name == "portrait":
            return await make_clip(out, width=1080, height=1920, seconds=5)
        if name == "rotated":
            return await make_rotated(out, seconds=4)
        if name == "silent":
            return await make_clip(out, width=640, height=360, seconds=4, audio=False)
        if name == "tiny":
            return await make_clip(out, width=426, height=240, seconds=3)
        if name == "fast60":
            return await make_clip(out, width=640, height=360, seconds=3, fps=60)
        if name == "small":
            return await make_clip(out, width=640, height=360, seconds=6)
        if name == "corrupt":
            return corrupt_copy(await self.get_unlocked("small"), out)
        if name == "truncated":
            return truncated_copy(await self.get_unlocked("small"), out)
        if name == "text":
            return text_file(out)
        raise KeyError(name)

    async def get_unlocked(self, name: str) -> Path:
        if name not in self._cache:
            self._cache[name] = await self._make(name)
        return self._cache[name]


# --------------------------------------------------------------------------- sources that
# need normalising (svc_transcode/normalise.py): each is what a camera, a broadcast encoder
# or a phone really writes, made small.


async def make_anamorphic(
    out: Path, *, width: int, height: int, sar: str, seconds: float = 1.0, fps: int = 25
) -> Path:
    """Non-square pixels: `width`x`height` coded, displayed `width*sar` wide (e.g. HDV
    1440x1080 SAR 4:3 shows 16:9; PAL DV 720x576 SAR 16:15 shows 4:3, 64:45 shows 16:9)."""
    await _run(
        FFMPEG, "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}",
        "-vf", f"setsar={sar.replace(':', '/')}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out),
    )  # fmt: skip
    return out


async def make_open_gop(
    out: Path, *, width: int = 640, height: int = 360, seconds: float = 8.0, fps: int = 24
) -> Path:
    """Open-GOP H.264 (x264 open-gop=1, keyint 48, 3 B-frames) with AAC, as cameras and
    broadcast encoders write it. A seek into its tail makes the decoder log
    "mmco: unref short failure"; a full decode is clean."""
    await _run(
        FFMPEG, "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-bf", "3",
        "-x264-params", "open-gop=1:keyint=48:min-keyint=48:scenecut=0",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-shortest",
        "-movflags", "+faststart", str(out),
    )  # fmt: skip
    return out


async def make_interlaced(
    out: Path,
    *,
    width: int = 1280,
    height: int = 720,
    seconds: float = 2.0,
    rate: int = 25,
    codec: str = "h264",
    bottom_first: bool = False,
) -> Path:
    """Interlaced video: 2x`rate` progressive motion woven into fields (top field first
    unless `bottom_first`). `codec="h264"` codes it interlaced (field_order tt/bb);
    `codec="mpeg4"` codes the woven frames progressively, so no field order is stored and
    only the pictures show it (idet)."""
    weave = "interleave_bottom" if bottom_first else "interleave_top"
    order = "bff" if bottom_first else "tff"
    argv = [
        FFMPEG, "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={rate * 2}:duration={seconds}",
        "-vf", f"tinterlace={weave},setfield={order}", "-r", str(rate),
    ]  # fmt: skip
    if codec == "h264":
        argv += [
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-flags", "+ildct+ilme", "-x264-params", "bff=1" if bottom_first else "tff=1",
        ]  # fmt: skip
    else:
        argv += ["-c:v", codec, "-q:v", "3", "-pix_fmt", "yuv420p"]
    await _run(*argv, str(out))
    return out


async def make_hdr(
    out: Path,
    *,
    width: int = 640,
    height: int = 360,
    seconds: float = 1.0,
    transfer: str = "smpte2084",
    tagged_matrix: bool = True,
) -> Path:
    """10-bit BT.2020 HDR (PQ `smpte2084` or HLG `arib-std-b67`), as HDR phones and
    cameras record it (H.264 High 10 here; the tags are what matter)."""
    argv = [
        FFMPEG, "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25:duration={seconds}",
        "-vf", "format=yuv420p10le", "-c:v", "libx264", "-preset", "ultrafast",
        "-color_primaries", "bt2020", "-color_trc", transfer,
    ]  # fmt: skip
    if tagged_matrix:
        argv += ["-colorspace", "bt2020nc"]
    await _run(*argv, str(out))
    return out


def _boxes(data: bytes | bytearray, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the ISO-BMFF/QuickTime boxes in data[start:end]."""
    found = []
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8])
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        elif size == 0:
            size = end - pos
        if size < 8:
            break
        found.append((kind, pos, size))
        pos += size
    return found


def _child(
    data: bytearray, parent: tuple[bytes, int, int], kind: bytes
) -> list[tuple[bytes, int, int]]:
    _, offset, size = parent
    return [b for b in _boxes(data, offset + 8, offset + size) if b[0] == kind]


def patch_audio_codec(
    path: Path, track: int = 0, fourcc: bytes = b"apac", config: bytes = b"dapa"
) -> Path:
    """Turn the `track`-th audio track of an MP4/MOV into a codec this ffmpeg cannot decode.

    The sample entry's fourcc (`mp4a`, also inside a QuickTime `wave` atom and its `frma`)
    becomes `fourcc` and the `esds` decoder config box is renamed `config`: the bytes of an
    iPhone's Apple Positional Audio Codec track (`apac` + `dapa`), as far as ffmpeg 5.1 can
    tell — it reports codec "none" and cannot open a decoder for it.
    """
    data = bytearray(path.read_bytes())
    [moov] = [b for b in _boxes(data, 0, len(data)) if b[0] == b"moov"]
    audio = []
    for trak in _child(data, moov, b"trak"):
        [mdia] = _child(data, trak, b"mdia")
        [hdlr] = _child(data, mdia, b"hdlr")
        if bytes(data[hdlr[1] + 16 : hdlr[1] + 20]) == b"soun":
            audio.append(mdia)
    mdia = audio[track]
    [minf] = _child(data, mdia, b"minf")
    [stbl] = _child(data, minf, b"stbl")
    [stsd] = _child(data, stbl, b"stsd")
    _, offset, size = stsd
    # stsd: header (8), version/flags (4), entry count (4), then the sample entries.
    entry_kind, entry_at, entry_size = _boxes(data, offset + 16, offset + size)[0]
    assert entry_kind == b"mp4a", entry_kind
    entry = bytes(data[entry_at : entry_at + entry_size])
    data[entry_at : entry_at + entry_size] = entry.replace(b"mp4a", fourcc).replace(b"esds", config)
    path.write_bytes(bytes(data))
    return path


async def make_spatial_audio_mov(
    out: Path,
    *,
    width: int = 320,
    height: int = 240,
    seconds: float = 1.0,
    aac_companion: bool = True,
) -> Path:
    """An iPhone-style MOV: the first, default audio track is 4-channel spatial audio in a
    codec this ffmpeg cannot decode (APAC, see `patch_audio_codec`); with `aac_companion`
    a second, non-default stereo AAC track follows, as the iPhone writes for compatibility."""
    argv = [
        FFMPEG, "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=220:sample_rate=48000:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=880:sample_rate=48000:duration={seconds}",
        "-map", "0", "-map", "1",
    ]  # fmt: skip
    if aac_companion:
        argv += ["-map", "2"]
    argv += [
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", "-ac:a:0", "4", "-disposition:a:0", "default",
    ]  # fmt: skip
    if aac_companion:
        argv += ["-ac:a:1", "2", "-disposition:a:1", "0"]
    await _run(*argv, "-movflags", "+faststart", "-f", "mov", str(out))
    return patch_audio_codec(out, track=0)
