"""The one ffmpeg command that turns a publisher's FLV (on stdin) into a live HLS ladder.
Pure: argv in, nothing run.

Owncast's shape (STYLE.md): one ffmpeg, the decoded picture ``split`` to every rung,
``var_stream_map`` naming the variants; keyframe interval = fps x segment length with
``-keyint_min`` equal and scene-cut keyframes off (``-sc_threshold 0``), plus keyframes
forced on the segment clock, so every segment of every rung starts with a keyframe at
the same time; maxrate 1.06x / bufsize 1.2x the bitrate (svc_chat.ingest.ladder). Those
pieces are shared with the VOD ladder's command (reels/media/hls_args.py).

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
  Only for a publisher back on another instance or after a restart: ffmpeg 5.1 numbers
  those discontinuities against RFC 8216 section 6.2.2 (no DISCONTINUITY-SEQUENCE), so a
  publisher back on the same instance continues its running ffmpeg instead
  (svc_chat.ingest.broadcast).

Segments are MPEG-TS like the VOD ladder's (svc_transcode/hls.py explains why). ffmpeg
5.1 cannot write LL-HLS partial segments (DESIGN.md), so 1 s segments are the lever
on latency: first segment about 1.6 s after publish (DESIGN.md's measurement).
"""

from __future__ import annotations

from pathlib import Path

from reels.media import hls_args
from reels.media.hls_args import gop_frames  # re-exported: tests import it from here
from svc_chat.ingest.ladder import LiveRung

MASTER_NAME = "master.m3u8"
PLAYLIST_NAME = "index.m3u8"
SEGMENT_PATTERN = "seg_%06d.ts"
PROBE_BYTES = 32768
ANALYZE_US = 500_000  # 0.5 s of input to find both streams' parameters


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
    gop = gop_frames(fps, segment_s)
    pre = []
    if source_fps > 0 and abs(fps - source_fps) > 0.01:
        pre.append(f"fps={fps:.6g}")
    pre.append("format=yuv420p")
    argv = [
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
        "-fflags", "nobuffer", "-probesize", str(PROBE_BYTES),
        "-analyzeduration", str(ANALYZE_US),
        "-f", "flv", "-i", "pipe:0",
        "-filter_complex", hls_args.split_scale_graph("0:v:0", pre, rungs),
    ]  # fmt: skip
    argv += hls_args.rung_maps(len(rungs), "0:a:0" if has_audio else None)
    argv += [
        "-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-profile:v", "high",
        *hls_args.keyframe_args(gop, segment_s),
    ]  # fmt: skip
    argv += hls_args.rung_rate_args(rungs, has_audio)
    flags = "delete_segments+independent_segments+temp_file+omit_endlist"
    if resume:
        flags += "+append_list+discont_start"
    argv += [
        "-f", "hls",
        "-hls_time", f"{segment_s:g}",
        "-hls_list_size", str(list_size),
        "-hls_flags", flags,
        "-hls_segment_type", "mpegts",
        "-hls_segment_filename", str(out_dir / "%v" / SEGMENT_PATTERN),
        "-master_pl_name", MASTER_NAME,
        "-var_stream_map", hls_args.var_stream_map(rungs, has_audio),
        str(out_dir / "%v" / PLAYLIST_NAME),
    ]  # fmt: skip
    if recording is not None:
        argv += ["-map", "0:v:0"] + (["-map", "0:a:0"] if has_audio else [])
        argv += ["-c", "copy", "-f", "mpegts", str(recording)]
    return argv
