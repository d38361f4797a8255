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
