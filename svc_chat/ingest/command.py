"""The one ffmpeg command that turns a publisher's FLV (on stdin) into a live HLS ladder.
Pure: argv in, nothing run.

Owncast's shape (STYLE.md): one ffmpeg, the decoded picture ``split`` to every rung,
``var_stream_map`` naming the variants; keyframe interval = fps x segment length with
``-keyint_min`` equal and scene-cut keyframes off (``-sc_threshold 0``), plus keyframes
forced on the segment clock, so every segment of every rung starts with a keyframe at
the same time; maxrate 1.06x / bufsize 1.2x the bitrate (svc_chat.ingest.ladder).

Live specifics:

* ``-tune zerolatency``: no x264 lookahead and no B-frames, so a frame leaves the
  encoder as it arrives instead of a lookahead's worth later;
* ``-fflags nobuffer`` and a small probe on the input, so ffmpeg starts on the first
  frames rather than buffering seconds of input to guess the streams (the FLV header
  says which streams there are);
* a sliding window: ``-hls_list_size`` segments listed, older ones deleted
  (``delete_segments``); ``temp_file`` writes each segment and playlist under a
  temporary name and renames it, so the origin never serves a partial object;
  ``omit_endlist``: a publisher that drops may come back within the grace period, and
  players must not stop on a drop (the ingest appends ``#EXT-X-ENDLIST`` when the
  stream really ends);
* ``resume=True`` (a publisher back within the grace period) continues the same
  playlists (``append_list``) with a discontinuity at the join (``discont_start``).

Segments are MPEG-TS like the VOD ladder's (svc_transcode/hls.py explains why). ffmpeg
5.1 cannot write LL-HLS partial segments (DESIGN.md), so 1 s segments are the lever
on latency: first segment about 1.6 s after publish (DESIGN.md's measurement).
"""

from __future__ import annotations

from pathlib import Path

from svc_chat.ingest.ladder import LiveRung

MASTER_NAME = "master.m3u8"
PLAYLIST_NAME = "index.m3u8"
SEGMENT_PATTERN = "seg_%06d.ts"
PROBE_BYTES = 32768
ANALYZE_US = 500_000  # 0.5 s of input to find both streams' parameters


def gop_frames(fps: float, segment_s: float) -> int:
    """Frames between keyframes: one keyframe per segment (fps x segment length)."""
    return max(1, round(fps * segment_s))


def live_hls_command(
    ffmpeg: str,
    out_dir: Path,
    rungs: list[LiveRung],
    *,
    fps: float,
    source_fps: float,
    has_audio: bool,
    segment_s: float,
    list_size: int,
    preset: str = "veryfast",
    resume: bool = False,
    recording: Path | None = None,
) -> list[str]:
    """ffmpeg argv reading FLV from stdin and writing ``out_dir/master.m3u8`` and
    ``out_dir/<rung>/index.m3u8`` + segments (``fps``: the output rate; a lower
    ``source_fps`` is kept, a higher one is reduced by an ``fps`` filter).

    ``recording``: a second output, the publisher's own streams copied untouched
    (``-c copy``) into that MPEG-TS file (svc_chat.ingest.recording)."""
    if not rungs:
        raise ValueError("a live ladder needs at least one rung")
    n = len(rungs)
    gop = gop_frames(fps, segment_s)
    pre = []
    if source_fps > 0 and abs(fps - source_fps) > 0.01:
        pre.append(f"fps={fps:.6g}")
    pre.append("format=yuv420p")
    labels = "".join(f"[s{i}]" for i in range(n))
    graph = [f"[0:v:0]{','.join(pre)},split={n}{labels}"]
    for i, r in enumerate(rungs):
        graph.append(f"[s{i}]scale={r.width}:{r.height}:flags=bicubic,setsar=1[v{i}]")
    seg = f"{segment_s:g}"
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
        "-fflags", "nobuffer", "-probesize", str(PROBE_BYTES),
        "-analyzeduration", str(ANALYZE_US),
        "-f", "flv", "-i", "pipe:0",
        "-filter_complex", ";".join(graph),
    ]  # fmt: skip
    for i in range(n):
        argv += ["-map", f"[v{i}]"]
        if has_audio:
            argv += ["-map", "0:a:0"]
    argv += [
        "-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-profile:v", "high",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{seg})",
    ]  # fmt: skip
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
    flags = "delete_segments+independent_segments+temp_file+omit_endlist"
    if resume:
        flags += "+append_list+discont_start"
    stream_map = " ".join(
        f"v:{i},a:{i},name:{r.name}" if has_audio else f"v:{i},name:{r.name}"
        for i, r in enumerate(rungs)
    )
    argv += [
        "-f", "hls",
        "-hls_time", seg,
        "-hls_list_size", str(list_size),
        "-hls_flags", flags,
        "-hls_segment_type", "mpegts",
        "-hls_segment_filename", str(out_dir / "%v" / SEGMENT_PATTERN),
        "-master_pl_name", MASTER_NAME,
        "-var_stream_map", stream_map,
        str(out_dir / "%v" / PLAYLIST_NAME),
    ]  # fmt: skip
    if recording is not None:
        argv += ["-map", "0:v:0"] + (["-map", "0:a:0"] if has_audio else [])
        argv += ["-c", "copy", "-f", "mpegts", str(recording)]
    return argv
