"""ffmpeg argv pieces for encoding a whole bitrate ladder in one run to HLS, shared by
the VOD ladder (svc_transcode/hls.py) and the live ladder (svc_chat/ingest/command.py).
Pure: strings in, strings out.

Owncast's shape: the picture is decoded once and ``split`` to every rung, each scaled to
its size; rung ``i`` is video output ``v:i`` (and audio ``a:i``), named in
``-var_stream_map`` so ``%v`` in the output paths is the rung's name. Keyframes come every
segment length on every rung (``-g`` = ``-keyint_min`` = fps x segment length, no
scene-cut keyframes, and forced on the segment clock) so segment boundaries line up
across renditions and a player can switch rungs at any segment.

Units: bitrates in bits per second (``-bufsize`` in bits), sizes in pixels, segment
lengths in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from reels.media.ladder import Rendition


def gop_frames(fps: float, segment_s: float) -> int:
    """Frames between keyframes: one keyframe per segment (fps x segment length)."""
    return max(1, round(fps * segment_s))


def split_scale_graph(video_in: str, filters: Sequence[str], rungs: Sequence[Rendition]) -> str:
    """``-filter_complex``: stream ``video_in`` ("0:v:0") through ``filters``, split to
    every rung and scaled to its size with square pixels; rung ``i`` comes out as
    ``[v{i}]``."""
    n = len(rungs)
    labels = "".join(f"[s{i}]" for i in range(n))
    graph = [f"[{video_in}]{','.join(filters)},split={n}{labels}"]
    for i, r in enumerate(rungs):
        graph.append(f"[s{i}]scale={r.width}:{r.height}:flags=bicubic,setsar=1[v{i}]")
    return ";".join(graph)


def rung_maps(n: int, audio_map: str | None) -> list[str]:
    """``-map`` for each of ``n`` rungs: its ``[v{i}]`` picture, and ``audio_map``
    ("0:a:0") again for every rung unless None."""
    argv: list[str] = []
    for i in range(n):
        argv += ["-map", f"[v{i}]"]
        if audio_map is not None:
            argv += ["-map", audio_map]
    return argv


def keyframe_args(gop: int, segment_s: float) -> list[str]:
    """A keyframe every ``gop`` frames and no other (no scene cuts), forced at every
    multiple of ``segment_s`` seconds as well."""
    return [
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{segment_s:g})",
    ]  # fmt: skip


def rung_rate_args(rungs: Sequence[Rendition], has_audio: bool) -> list[str]:
    """Each rung's video bitrate, maxrate and bufsize, and with audio the AAC stereo
    48 kHz encoder and each rung's audio bitrate."""
    argv: list[str] = []
    for i, r in enumerate(rungs):
        argv += [
            f"-b:v:{i}", str(r.video_bitrate),
            f"-maxrate:v:{i}", str(r.maxrate),
            f"-bufsize:v:{i}", str(r.bufsize),
        ]  # fmt: skip
    if has_audio:
        argv += ["-c:a", "aac", "-ac", "2", "-ar", "48000"]
        for i, r in enumerate(rungs):
            argv += [f"-b:a:{i}", str(r.audio_bitrate)]
    return argv


def var_stream_map(rungs: Sequence[Rendition], has_audio: bool) -> str:
    """``-var_stream_map``: rung ``i`` is ``v:i`` (with ``a:i``), named by its name."""
    return " ".join(
        f"v:{i},a:{i},name:{r.name}" if has_audio else f"v:{i},name:{r.name}"
        for i, r in enumerate(rungs)
    )
