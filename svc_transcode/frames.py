"""Frames for the visual embedding: sampled evenly across a video, 224x224 RGB.

Source: the video's **lowest HLS rendition** in the job's work directory (a 360p
rung; ``TranscodeResult.renditions[-1]``), not the original upload. The rendition is
already normalised (rotation applied, deinterlaced, HDR tone-mapped to SDR, square
pixels), and decoding 360p H.264 costs a few milliseconds per second of video where a
4K HEVC original would cost seconds. 224 px is below every rung, so nothing is lost.

Timing: ``n = clamp(floor(duration / 0.5 s), 1, 16)`` frames, one at the middle of
each of n equal slices of the video (``(i + 0.5) * duration / n``): at most 16 (one
Triton request), never closer than half a second (a 3 s clip gets 6, 8 s and longer
get 16), and never the very first or last frame (fades, black frames). One ffmpeg
run decodes the rendition once and keeps, for each target time, the first frame at
or after it (``select``).

Geometry: **center-crop of the middle square**, then scale to 224x224. Reels are
mostly portrait 9:16; the alternatives were worse for this model:

* squashing the whole frame to a square distorts every shape by 1.78x, far outside
  anything ImageNet training showed EfficientNet;
* letterboxing wastes 44 % of the input on black bars, which the network sees as
  content, and their size changes with the aspect ratio, so the same footage in 9:16
  and 1:1 would embed differently.

The middle square keeps the subject (framed centrally in almost all short videos)
and drops the top and bottom bands, where re-uploads add captions, watermarks and
borders — which helps near-duplicate detection. Landscape videos lose their sides
the same way. Non-square pixels are squared first (``scale=iw*sar:ih``).
"""

from __future__ import annotations

import io
import logging
import zlib
from pathlib import Path

import numpy as np

from reels.media.ffmpeg_run import TranscodeError, run
from reels.model_client import FRAME_SIZE

log = logging.getLogger(__name__)

MAX_FRAMES = 16
MIN_SPACING_S = 0.5
SAMPLE_TIMEOUT_S = 120.0
_FRAME_BYTES = FRAME_SIZE * FRAME_SIZE * 3

# Square pixels, center square, 224x224 (area averaging: the input is always larger).
GEOMETRY_FILTERS = (
    "scale=trunc(iw*sar/2)*2:ih",
    "setsar=1",
    "crop=min(iw\\,ih):min(iw\\,ih)",
    f"scale={FRAME_SIZE}:{FRAME_SIZE}:flags=area",
    "format=rgb24",
)


def frame_times(
    duration_s: float, *, max_frames: int = MAX_FRAMES, min_spacing_s: float = MIN_SPACING_S
) -> list[float]:
    """Seconds from the start at which to take frames: the middles of n equal slices,
    n = clamp(floor(duration / min_spacing), 1, max_frames)."""
    duration_s = max(0.0, float(duration_s))
    n = max(1, min(max_frames, int(duration_s / min_spacing_s)))
    step = duration_s / n
    return [round((i + 0.5) * step, 3) for i in range(n)]


def _select_expression(times: list[float]) -> str:
    # For each target T: the first frame with t >= T (the previous one was before T,
    # or there was none). Quoted, so the commas need no escaping inside the graph.
    terms = [f"gte(t,{t:.3f})*(isnan(prev_t)+lt(prev_t,{t:.3f}))" for t in times]
    return "select='" + "+".join(terms) + "'"


def sample_command(src: Path, times: list[float]) -> list[str]:
    """The ffmpeg command that writes the frames at ``times`` as raw RGB24 to stdout."""
    return [
        "ffmpeg", "-nostdin", "-v", "error", "-threads", "2",
        "-i", str(src),
        "-map", "0:v:0",
        "-vf", ",".join([_select_expression(times), *GEOMETRY_FILTERS]),
        "-fps_mode", "passthrough",
        "-frames:v", str(len(times)),
        "-f", "rawvideo", "pipe:1",
    ]  # fmt: skip


async def _decode(argv: list[str], what: str) -> np.ndarray:
    try:
        done = await run(argv, capture_stdout=True, timeout_s=SAMPLE_TIMEOUT_S)
    except OSError as exc:
        raise TranscodeError(f"could not start ffmpeg for {what}: {exc}") from exc
    except TimeoutError as exc:
        raise TranscodeError(f"{what}: ffmpeg took over {SAMPLE_TIMEOUT_S:.0f}s") from exc
    if done.returncode != 0:
        raise TranscodeError(
            f"{what}: ffmpeg exited with {done.returncode}: {done.stderr_tail[-500:]}",
            stderr_tail=done.stderr_tail,
        )
    count = len(done.stdout) // _FRAME_BYTES
    return np.frombuffer(done.stdout[: count * _FRAME_BYTES], dtype=np.uint8).reshape(
        count, FRAME_SIZE, FRAME_SIZE, 3
    )


async def sample_frames(src: Path, duration_s: float) -> np.ndarray:
    """Frames of ``src`` (any file or playlist ffmpeg reads) for the visual model.

    Returns uint8 RGB, shape [n, 224, 224, 3] (height, width, channel), 1 <= n <= 16,
    in time order (see the module docstring for which frames and how they are cut).
    A video shorter than its container says may give fewer frames than planned.

    Raises ``TranscodeError`` (transient: our own decode of our own output failed,
    a machine fault) when ffmpeg fails or no frame at all could be decoded.
    """
    times = frame_times(duration_s)
    frames = await _decode(sample_command(src, times), "sampling frames")
    if len(frames) == 0:
        # Timestamps that start late (or a duration that overstates the video): take
        # the first frame rather than none.
        first = sample_command(src, [0.0])
        first[first.index("-vf") + 1] = ",".join(GEOMETRY_FILTERS)
        frames = await _decode(first, "sampling the first frame")
    if len(frames) == 0:
        raise TranscodeError(f"sampling frames: no frame could be decoded from {src.name}")
    if len(frames) < len(times):
        log.info("sampled %d of %d planned frames from %s", len(frames), len(times), src)
    return frames


def pack_frames(frames: np.ndarray) -> bytes:
    """Frames as compact bytes (zlib-compressed .npy) to keep with a job whose
    embeddings are pending; ``unpack_frames`` restores them bit for bit."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(frames, dtype=np.uint8), allow_pickle=False)
    return zlib.compress(buf.getvalue(), 6)


def unpack_frames(data: bytes) -> np.ndarray:
    """uint8 [n, 224, 224, 3] from ``pack_frames``' bytes; ValueError if they are not that."""
    try:
        frames = np.load(io.BytesIO(zlib.decompress(data)), allow_pickle=False)
    except (zlib.error, OSError, EOFError) as exc:
        raise ValueError(f"stored frames are unreadable: {exc}") from exc
    if (
        frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3)
    ):
        raise ValueError(f"stored frames have shape {frames.shape} {frames.dtype}")
    return frames
