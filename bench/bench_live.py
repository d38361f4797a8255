"""Live ingest: glass-to-glass latency, time to the first segment and CPU per live ladder,
each beside plain ffmpeg writing HLS to disk from the same input, in the same run.

Goals (DESIGN.md "Quality bars", issue 11): glass-to-glass p50 <= 4 s and p95 <= 5 s with
1 s segments; the first segment <= 2 s after the publish is accepted. CPU per ladder and
the streams one machine holds in real time are figures for the record (no goal).

What runs (loopback only, everything of its own, removed at the end): a throwaway
migrated Postgres database and Redis key prefix; svc_chat's App built by
``svc_chat.app.build`` and served in this process by ``reels.server.run_app`` (as
tests/integration/test_live_ingest.py does), its RTMP ingest on a free port, its object
store a temporary ``file://`` directory; no Kafka (the outbox relay idles, which no figure
here touches); a 1 s grace period, so streams end (and their recordings are joined)
during the run instead of piling up at the end. Playlists and segments reach the player
from a plain aiohttp static server on the store's directory with ``Cache-Control:
no-cache``, for the system and the baseline alike: the signed origin is measured
elsewhere (bench_playback) and is not in these figures.

1. first segment: ``--ttfs-runs`` publishes of a pre-encoded ``--size`` clip (``ffmpeg
   -re -c copy`` to RTMP): time from the publish accepted (the ingest's own
   ``accepted_at``) to the first segment file on disk. Baseline: the same clip through the
   very same ladder command (``svc_chat.ingest.command.live_hls_command``) run by ffmpeg
   alone, reading the file with ``-re``, from its start. Runs alternate.
2. glass-to-glass: this process draws ``--size`` frames at 30 fps, paced to the wall
   clock, whose top band is the wall-clock time in ms as 32 black/white blocks plus an
   8-bit check, and pipes them (rawvideo) into a publisher ffmpeg (x264 ultrafast,
   zerolatency, 1 s GOP; AAC of a tone, or of silence with ``--audio silence``) that
   publishes to the ingest. Once every variant playlist lists 4 segments (viewers join a
   running stream), ``--joins`` viewers one after another: headless Chromium (Debian's,
   driven by Playwright; hls.js from tests/browser/node_modules with its default live
   settings unless ``--sync-count``; a 320 px player with ``capLevelToPlayerSize``, so it
   plays the cheapest rung: every rung is cut on the same segment clock) plays the
   master; on every presented frame (``requestVideoFrameCallback``) the page reads the
   blocks back from a canvas, and latency = ``Date.now()`` - the burned time (one
   machine, one clock); ``--seconds`` sampled per viewer after ``--settle`` s of
   playback; the viewers' p50s one by one show latency that grows with time on air.
   Baseline: the same frames into the same publisher encode, written by that ffmpeg
   straight to disk as HLS (1 s segments, the same window and flags, one variant, no
   ladder), played by the same page.
3. capacity: 1..``--max-streams`` concurrent publishers of a 720p30 clip (``-re -c
   copy``: the creator's encode costs this machine nothing): CPU of each live ladder's
   ffmpeg and of this process (the ingest's Python: pyrtmp, the pipe) per wall second,
   and whether every rung of every stream keeps making 1 s segments at >= 0.95 per second
   (real time); it stops at the first count the system does not hold. Baseline: as many
   ladder ffmpegs reading the clip with ``-re`` directly.

``--size`` is 640x360 by default (the size the ingest tests publish): a 720p ladder needs
about one core (phase 3), and on a 2-core machine that also runs the publisher, the
viewer and other people's work it falls behind real time, after which latency grows
without bound and the figure measures the machine, not the pipeline. Run
``--size 1280x720`` where there are spare cores. Every phase prints where the CPU went
(the ladder, publisher, viewer, this process, other work on the machine), and whether
the ladder kept real time while the viewers watched.

Run: .venv/bin/python bench/bench_live.py (about 3 minutes on 2 cores;
``--joins 1 --ttfs-runs 1 --max-streams 1`` is about 1.5). It stops by itself after
``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gen"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402
from reels.v1 import chat_pb2, chat_pb2_grpc  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from reels.cache import delete_prefix, redis_client  # noqa: E402
from reels.db.engine import create_database, database_url, drop_database  # noqa: E402
from reels.db.migrate import migrate  # noqa: E402
from reels.server import run_app  # noqa: E402
from reels_dev.infra.process import REPO_ROOT, free_port  # noqa: E402
from reels_dev.keys import ensure_dev_keys, mint_token  # noqa: E402
from svc_chat.app import App, build  # noqa: E402
from svc_chat.ingest.command import live_hls_command  # noqa: E402
from svc_chat.ingest.ladder import live_ladder, output_fps  # noqa: E402
from svc_chat.settings import Settings  # noqa: E402

GOAL_P50_S = 4.0
GOAL_P95_S = 5.0
GOAL_FIRST_SEGMENT_S = 2.0
REALTIME_SEG_PER_S = 0.95  # a rung making fewer 1 s segments per second is falling behind
FPS = 30
CHROMIUM = Path(os.environ.get("REELS_CHROMIUM", "/usr/bin/chromium"))
HLS_JS = REPO_ROOT / "tests" / "browser" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
JOIN_SEGMENTS = 4  # the viewer joins once every variant playlist lists this many
GRACE_S = 1.0

# The burned time: COLS x ROWS square blocks across the top of the picture, MSB first:
# 32 bits of (wall-clock ms - the run's epoch), then 8 check bits (byte sum ^ 0xA5).
COLS, ROWS = 20, 2
CHECK_XOR = 0xA5
BLACK, WHITE = 16, 235  # limited-range luma

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>reels live glass-to-glass</title></head>
<body><video id="v" muted playsinline autoplay width="320"></video>
<script src="/hls.js"></script>
<script>
window.report = {errors: [], frames: 0, decoded: 0, rejected: 0, stalls: 0, rvfc: false};
window.samples = [];  // [Date.now() at the frame, its burned time (ms), hls.latency, height]
window.start = function (src, epoch, cols, rows, band, config) {
  const video = document.getElementById("v");
  const cell = 8;
  const canvas = document.createElement("canvas");
  canvas.width = cols * cell;
  canvas.height = rows * cell;
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  const hls = new Hls(config);
  window.hls = hls;
  hls.on(Hls.Events.ERROR, (_, d) => {
    window.report.errors.push({type: d.type, details: d.details, fatal: d.fatal});
  });
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => {
    window.report.errors.push({type: "play", details: String(e), fatal: true});
  }));
  video.addEventListener("waiting", () => { window.report.stalls += 1; });
  hls.loadSource(src);
  hls.attachMedia(video);
  let last = -1;
  function sample() {
    const vw = video.videoWidth, vh = video.videoHeight;
    if (!vw || !vh) return;
    const now = Date.now();
    ctx.drawImage(video, 0, 0, vw, vh * band, 0, 0, canvas.width, canvas.height);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    window.report.frames += 1;
    let value = 0, check = 0;
    for (let i = 0; i < cols * rows; i++) {
      const r = Math.floor(i / cols), c = i % cols;
      let sum = 0;
      for (let y = 2; y < cell - 2; y++) {
        for (let x = 2; x < cell - 2; x++) {
          sum += px[((r * cell + y) * canvas.width + c * cell + x) * 4];
        }
      }
      const bit = sum / ((cell - 4) * (cell - 4)) > 128 ? 1 : 0;
      if (i < 32) value = value * 2 + bit; else check = check * 2 + bit;
    }
    const bytes = ((value >>> 24) & 255) + ((value >>> 16) & 255)
      + ((value >>> 8) & 255) + (value & 255);
    if (((bytes ^ CHECK_XOR) & 255) !== check) { window.report.rejected += 1; return; }
    if (value === last) return;
    last = value;
    window.report.decoded += 1;
    window.samples.push([now, epoch + value, hls.latency || 0, vh]);
  }
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const onFrame = () => {
      window.report.rvfc = true;
      sample();
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }
  setInterval(() => { if (!window.report.rvfc) sample(); }, 15);  // fallback: poll
};
</script></body></html>
""".replace("CHECK_XOR", str(CHECK_XOR))


# --------------------------------------------------------------------------- figures


T0 = time.monotonic()


def at() -> str:
    """Seconds since the bench started, for the phase headers."""
    return f"[{time.monotonic() - T0:3.0f} s]"


def pct(samples: Sequence[float], p: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def our_processes() -> dict[int, str]:
    """Every process descended from this one: pid -> command name (/proc)."""
    parents: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
        names[int(entry)] = name
    found: dict[int, str] = {}
    todo = list(parents.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        found[pid] = names.get(pid, "?")
        todo += parents.get(pid, [])
    return found


class Busy:
    """Where the machine's CPU went during a phase, in cores: the roles this bench knows
    (by pid), the viewer (Chromium), this process, and other work on the machine (not
    ours: machines are shared). Read ``line`` before the phase's processes end."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.own0 = time.process_time()
        self.m0 = machine_busy_s()
        self.cpu0 = {pid: cpu_s(pid) for pid in our_processes()}

    def own_cores(self) -> float:
        return (time.process_time() - self.own0) / max(1e-9, time.perf_counter() - self.t0)

    def line(self, roles: dict[str, Sequence[int]] | None = None) -> str:
        wall = max(1e-9, time.perf_counter() - self.t0)
        busy, total = machine_busy_s()
        machine = (busy - self.m0[0]) / max(1e-9, total - self.m0[1]) * (os.cpu_count() or 1)
        role_of = {pid: name for name, pids in (roles or {}).items() for pid in pids}
        spent: dict[str, float] = {name: 0.0 for name in roles or {}}
        for pid, comm in our_processes().items():
            name = role_of.get(pid) or ("viewer" if comm.startswith("chrom") else "other ours")
            spent[name] = spent.get(name, 0.0) + (cpu_s(pid) - self.cpu0.get(pid, 0.0)) / wall
        spent["this process"] = self.own_cores()
        others = max(0.0, machine - sum(spent.values()))
        parts = ", ".join(f"{name} {cores:.2f}" for name, cores in spent.items() if cores >= 0.005)
        return (
            f"CPU (cores of {os.cpu_count()}): machine {machine:.2f} = {parts}, "
            f"other work on the machine {others:.2f}"
        )


# --------------------------------------------------------------------------- the camera


def code_bits(value: int) -> list[int]:
    """40 bits: ``value`` (32, MSB first) then its check byte."""
    raw = (value & 0xFFFFFFFF).to_bytes(4, "big")
    check = (sum(raw) ^ CHECK_XOR) & 0xFF
    word = int.from_bytes(raw, "big") << 8 | check
    return [(word >> (39 - i)) & 1 for i in range(40)]


class Pattern:
    """yuv420p frames: a panning texture (so the encoders have motion to work on) under
    a band of blocks at the top that carries the time the frame was made. Everything but
    the band is drawn once (a one-second cycle), so a frame costs this process little."""

    def __init__(self, width: int, height: int) -> None:
        if width % COLS or (width // COLS) * ROWS > height:
            raise ValueError(f"--size {width}x{height}: width must be a multiple of {COLS}")
        self.w, self.h = width, height
        self.cell = width // COLS
        rows = self.cell * ROWS
        rng = np.random.default_rng(7)
        small = rng.integers(40, 200, size=(height // 16 + 1, 2 * width // 16 + 1), dtype=np.uint8)
        tex = np.repeat(np.repeat(small, 16, 0), 16, 1)[:height, : 2 * width]
        chroma = bytes([128]) * (width * height // 2)
        step = max(2, width // FPS)
        self.rest = [
            np.ascontiguousarray(tex[rows:, i * step : i * step + width]).tobytes() + chroma
            for i in range(FPS)
        ]

    @property
    def band(self) -> float:
        """The band's share of the picture height (the page reads that much)."""
        return self.cell * ROWS / self.h

    def code(self, value: int) -> bytes:
        """The band's luma rows for ``value``."""
        bits = np.array(code_bits(value), dtype=np.uint8).reshape(ROWS, COLS)
        luma = np.where(bits == 1, WHITE, BLACK).astype(np.uint8)
        return np.repeat(np.repeat(luma, self.cell, 0), self.cell, 1).tobytes()

    def frame(self, index: int, value: int) -> tuple[bytes, bytes]:
        """The frame in two pieces: the band, then the rest of the picture."""
        return self.code(value), self.rest[index % len(self.rest)]


AUDIO_SOURCES = {
    "tone": "sine=frequency=440:sample_rate=48000",
    "silence": "anullsrc=r=48000:cl=stereo",  # a muted microphone: constant-size AAC frames
}


def publisher_argv(width: int, height: int, output: list[str], audio: str = "tone") -> list[str]:
    """The creator's encoder: raw frames on stdin and ``audio``, encoded as OBS-like H.264
    (1 s GOP, no lookahead) + AAC, to ``output``. ultrafast: the encoder shares this
    machine with the system under test, and its output quality is not measured. Frames
    are timed by the wall clock as they arrive and made constant-rate (a late frame is
    repeated, as a camera's encoder does), so the stream's clock keeps the wall's even
    when this busy machine delays a frame."""
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
        "-framerate", str(FPS), "-use_wallclock_as_timestamps", "1", "-i", "pipe:0",
        "-re", "-f", "lavfi", "-i", AUDIO_SOURCES[audio],
        "-map", "0:v", "-map", "1:a", "-fps_mode:v", "cfr", "-r:v", str(FPS),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0",
        "-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "2500k", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-ar", "48000",
        *output,
    ]  # fmt: skip


def direct_hls_output(out_dir: Path, list_size: int, segment_s: float) -> list[str]:
    """The baseline's output: the publisher's encode straight to disk as HLS, the same
    segment length, window and flags as the live ladder's, one variant."""
    return [
        "-f", "hls", "-hls_time", f"{segment_s:g}", "-hls_list_size", str(list_size),
        "-hls_flags", "delete_segments+independent_segments+temp_file+omit_endlist",
        "-hls_segment_type", "mpegts",
        "-hls_segment_filename", str(out_dir / "%v" / "seg_%06d.ts"),
        "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,a:0,name:src",
        str(out_dir / "%v" / "index.m3u8"),
    ]  # fmt: skip


class Camera:
    """Timestamped frames paced to the wall clock, written (in a thread: the writes block)
    into a publisher ffmpeg; the time is taken just before each frame is handed over."""

    def __init__(self, argv: list[str], pattern: Pattern, epoch_ms: int, log: Path) -> None:
        self.pattern, self.epoch_ms = pattern, epoch_ms
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.log
        )
        self.started_at = time.monotonic()
        self.first_frame_at = 0.0
        self.frames = 0
        self.late_max_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None
        t0 = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = t0 + i / FPS
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            self.late_max_s = max(self.late_max_s, time.monotonic() - due)
            value = int(time.time() * 1000) - self.epoch_ms
            try:
                for piece in self.pattern.frame(i, value):
                    self.proc.stdin.write(piece)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                break
            if i == 0:
                self.first_frame_at = time.monotonic()
            i += 1
            self.frames = i
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.close()

    def fps(self) -> float:
        return self.frames / max(1e-9, time.monotonic() - self.started_at)

    def stop(self, wait_s: float = 8.0) -> None:
        """End of the frames, then SIGTERM (the tone never ends by itself: ffmpeg
        finishes its outputs and leaves), SIGKILL after ``wait_s``; by its pid."""
        self._stop.set()
        self._thread.join(wait_s)
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# --------------------------------------------------------------------------- processes


class Procs:
    """Every subprocess this bench starts, so each is ended (by its pid) on the way out."""

    def __init__(self) -> None:
        self.running: list[asyncio.subprocess.Process] = []

    async def spawn(self, argv: list[str], log: Path) -> asyncio.subprocess.Process:
        with log.open("ab") as fh:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=fh,
            )
        self.running.append(proc)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, wait_s: float = 8.0) -> None:
        """SIGTERM (ffmpeg finishes its output and leaves), SIGKILL after ``wait_s``."""
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), wait_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc in self.running:
            self.running.remove(proc)

    async def stop_all(self) -> None:
        for proc in list(self.running):
            await self.stop(proc, 3.0)


class NotInTime(Exception):
    """Something the bench waits for did not happen in time."""


async def wait_for(
    check: Callable[[], bool], within_s: float, what: str, step: float = 0.01
) -> float:
    """Poll ``check`` until true; the monotonic time it first was."""
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise NotInTime(f"{what}: not within {within_s:g} s")
        await asyncio.sleep(step)
    return time.monotonic()


def has_segment(out_dir: Path) -> bool:
    return any(out_dir.glob("*/seg_*.ts"))


def listed_segments(playlist: Path) -> int:
    try:
        text = playlist.read_text()
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def joinable(out_dir: Path) -> bool:
    """A master and every variant playlist listing ``JOIN_SEGMENTS`` segments."""
    if not (out_dir / "master.m3u8").exists():
        return False
    playlists = list(out_dir.glob("*/index.m3u8"))
    return bool(playlists) and all(listed_segments(p) >= JOIN_SEGMENTS for p in playlists)


_SEG = re.compile(r"^seg_(\d+)\.ts$")


def newest_segment(rung_dir: Path) -> int:
    best = -1
    with contextlib.suppress(FileNotFoundError), os.scandir(rung_dir) as it:
        for entry in it:
            m = _SEG.match(entry.name)
            if m:
                best = max(best, int(m.group(1)))
    return best


# --------------------------------------------------------------------------- the system


@dataclasses.dataclass
class Reels:
    """svc_chat served in this process, and what the bench needs of it."""

    app: App
    server: Any
    channel: grpc.aio.Channel
    objects: Path

    @property
    def ingest(self) -> Any:  # svc_chat.ingest.IngestPart
        assert self.app.ctx is not None
        return self.app.ctx.ingest

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.ingest.port}/live/{key}"

    def out_dir(self, stream_id: str) -> Path:
        return self.objects / "live" / stream_id

    async def new_stream(self, creator: str) -> tuple[str, str]:
        """A CREATED stream of its own creator (one live stream per creator by default)."""
        reply = await chat_pb2_grpc.ChatServiceStub(self.channel).CreateStream(
            chat_pb2.CreateStreamRequest(title=f"bench {creator}"),
            metadata=(("authorization", f"Bearer {mint_token(creator)}"),),
            timeout=10,
        )
        return reply.stream.stream_id, reply.stream.stream_key

    def broadcast(self, stream_id: str) -> Any:
        return self.ingest.broadcasts.get(stream_id)

    async def ladder_pid(self, stream_id: str, within_s: float = 15.0) -> tuple[float, int]:
        """(accepted_at, pid of the stream's ladder ffmpeg) once it runs."""

        def started() -> bool:
            b = self.broadcast(stream_id)
            return b is not None and b.proc is not None

        await wait_for(started, within_s, f"the live ladder of {stream_id}")
        b = self.broadcast(stream_id)
        return b.accepted_at, b.proc.pid

    async def gone(self, stream_id: str, within_s: float = 10.0) -> None:
        """The publisher gone and its ladder ffmpeg exited (so phases never overlap)."""
        b = self.broadcast(stream_id)
        await wait_for(lambda: self.broadcast(stream_id) is None, within_s, "publisher gone", 0.05)
        if b is not None and b.proc is not None:
            await wait_for(lambda: b.proc.returncode is not None, within_s, "ladder exit", 0.05)


def baseline_ladder_argv(
    settings: Settings, clip: Path, size: tuple[int, int], out_dir: Path, recording: Path
) -> list[str]:
    """The ingest's own ladder command for a ``size`` 30 fps source with audio, reading
    ``clip`` at its native rate instead of the ingest's pipe."""
    s = settings.ingest
    rungs = live_ladder(*size, max_height=s.max_height, max_rungs=s.max_rungs)
    argv = live_hls_command(
        settings.platform.ffmpeg,
        out_dir,
        rungs,
        fps=output_fps(FPS),
        source_fps=FPS,
        has_audio=True,
        segment_s=s.segment_s,
        list_size=s.playlist_size,
        preset=s.x264_preset,
        recording=recording,
    )
    i = argv.index("pipe:0")
    if argv[i - 3 : i] != ["-f", "flv", "-i"]:
        raise RuntimeError(f"the ladder command's input changed: {argv[i - 3 : i + 1]}")
    argv[i] = str(clip)
    argv[i - 3 : i - 3] = ["-re"]
    for rung in rungs:
        (out_dir / rung.name).mkdir(parents=True, exist_ok=True)
    return argv


async def make_clip(
    procs: Procs, path: Path, size: tuple[int, int], seconds: float, log: Path
) -> None:
    """The creator's pre-encoded stream (testsrc2 + tone, x264 with a 2 s GOP and
    B-frames as OBS sends, 3 Mb/s at most; ultrafast, so it is made in seconds on a busy
    machine) for the phases that need no burned time."""
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size[0]}x{size[1]}:rate={FPS}",
        "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000", "-t", f"{seconds:g}",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", str(2 * FPS), "-bf", "2",
        "-b:v", "3000k", "-maxrate", "3000k", "-bufsize", "6000k", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(path),
    ]  # fmt: skip
    proc = await procs.spawn(argv, log)
    if await proc.wait() != 0:
        raise RuntimeError(f"could not make the test clip (see {log})")


def clip_publisher(clip: Path, url: str) -> list[str]:
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-i", str(clip), "-c", "copy", "-f", "flv", url,
    ]  # fmt: skip


# --------------------------------------------------------------------------- 1. first segment


async def first_segments(
    args: argparse.Namespace, reels: Reels, settings: Settings, procs: Procs, clip: Path, tmp: Path
) -> tuple[list[float], list[float], list[float]]:
    """(reels accepted -> first segment, reels publisher start -> first segment, baseline
    ffmpeg start -> first segment), seconds, one per run."""
    w, h = args.size
    print(
        f"\n{at()} 1. first segment: {args.ttfs_runs} publishes of a {w}x{h} {FPS} fps clip "
        "(-re, -c copy) each, alternating"
    )
    accepted, from_start, base = [], [], []
    for run in range(args.ttfs_runs):
        # the system
        stream_id, key = await reels.new_stream(f"bench-ttfs-{run}-{uuid.uuid4().hex[:6]}")
        out = reels.out_dir(stream_id)
        t_spawn = time.monotonic()
        pub = await procs.spawn(clip_publisher(clip, reels.url(key)), tmp / "publisher.log")
        acc, _pid = await reels.ladder_pid(stream_id)
        t_first = await wait_for(lambda o=out: has_segment(o), 10, "the first live segment")
        accepted.append(t_first - acc)
        from_start.append(t_first - t_spawn)
        await procs.stop(pub)
        await reels.gone(stream_id)
        # the baseline
        out = tmp / f"base-ttfs-{run}"
        argv = baseline_ladder_argv(settings, clip, args.size, out, out / "recording.ts")
        t_spawn = time.monotonic()
        proc = await procs.spawn(argv, tmp / "baseline.log")
        t_first = await wait_for(lambda o=out: has_segment(o), 10, "the first baseline segment")
        base.append(t_first - t_spawn)
        await procs.stop(proc)
        print(
            f"  run {run + 1}: reels {accepted[-1]:.2f} s after the publish was accepted "
            f"({from_start[-1]:.2f} s after the publisher started); "
            f"baseline {base[-1]:.2f} s after ffmpeg started"
        )
    return accepted, from_start, base


# --------------------------------------------------------------------------- 2. glass-to-glass


@dataclasses.dataclass
class Played:
    latencies_s: list[float]
    hls_latency_s: list[float]
    join_p50_s: list[float]
    """The p50 seen by each viewer (hls.js picks its distance from the edge at join)."""
    join_upstream_p50_s: list[float]
    heights: dict[int, int]
    report: dict[str, Any]
    window_s: float
    first_segment_s: float
    """From the first frame handed to the publisher to the first segment on disk."""
    camera_fps: float
    camera_late_max_s: float
    segment_rate: float
    """Segments per second of the slowest rung while the player ran (1: real time)."""
    busy: str

    @property
    def upstream_s(self) -> list[float]:
        """Glass-to-glass minus hls.js' distance from the live edge (``hls.latency``,
        which counts the playlist's age): camera -> encoder -> ingest -> segment listed."""
        return [g - h for g, h in zip(self.latencies_s, self.hls_latency_s, strict=True)]


async def play(
    browser: Any, origin: str, src: str, epoch_ms: int, band: float, args: argparse.Namespace
) -> tuple[list[list[float]], dict[str, Any], float]:
    """Play ``src`` in a fresh page; the samples of ``--seconds`` after ``--settle``."""
    context = await browser.new_context()
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    try:
        await page.goto(f"{origin}/")
        # A small player capped to its size: hls.js plays the lowest rung, the cheapest
        # to decode on a machine the viewer shares with the system under test.
        config: dict[str, Any] = {"capLevelToPlayerSize": True}
        if args.sync_count is not None:
            config["liveSyncDurationCount"] = args.sync_count
        await page.evaluate(
            "([src, epoch, cols, rows, band, config]) => "
            "window.start(src, epoch, cols, rows, band, config)",
            [src, epoch_ms, COLS, ROWS, band, config],
        )
        try:
            await page.wait_for_function("window.report.decoded > 0", timeout=30_000)
        except Exception as exc:
            report = await page.evaluate("window.report")
            raise RuntimeError(f"no readable frame played: {exc}\n{report}\n{console}") from None
        await asyncio.sleep(args.settle)
        start_ms = time.time() * 1000
        await asyncio.sleep(args.seconds)
        end_ms = time.time() * 1000
        samples = await page.evaluate("window.samples")
        report = await page.evaluate("window.report")
    finally:
        await context.close()
    # A misread that passes the check byte (1 in 256) lands anywhere: keep 0-120 s.
    window = [s for s in samples if start_ms <= s[0] <= end_ms and 0 <= s[0] - s[1] <= 120_000]
    return window, report, (end_ms - start_ms) / 1000


async def glass_to_glass(
    args: argparse.Namespace,
    browser: Any,
    origin: str,
    out_dir: Path,
    src: str,
    argv: list[str],
    tmp: Path,
    started: Callable[[], Awaitable[list[int]]] | None = None,
) -> Played:
    """One camera into ``argv``; once ``out_dir`` is joinable, play ``src`` and sample.
    ``started``: waits for the system's ladder and returns its pid(s)."""
    width, height = args.size
    pattern = Pattern(width, height)
    epoch_ms = int(time.time() * 1000) - 1000
    camera = Camera(argv, pattern, epoch_ms, tmp / "camera.log")
    try:
        ladders = [] if started is None else await started()
        t_first = await wait_for(lambda: has_segment(out_dir), 15, "the first segment")
        await wait_for(lambda: joinable(out_dir), 30, f"{JOIN_SEGMENTS} segments listed", 0.05)
        busy = Busy()
        watch = SegmentWatch([out_dir])
        window: list[list[float]] = []
        joins: list[float] = []
        joins_up: list[float] = []
        report: dict[str, Any] = {"errors": [], "stalls": 0, "rejected": 0, "rvfc": True}
        seconds = 0.0
        for _ in range(args.joins):  # viewers join one after another: each lands anew
            got, one, took = await play(browser, origin, src, epoch_ms, pattern.band, args)
            window += got
            joins.append(pct([(s[0] - s[1]) / 1000 for s in got], 50))
            joins_up.append(pct([(s[0] - s[1]) / 1000 - s[2] for s in got], 50))
            report["errors"] += one["errors"]
            report["stalls"] += one["stalls"]
            report["rejected"] += one["rejected"]
            report["rvfc"] = report["rvfc"] and one["rvfc"]
            seconds += took
        rate = min(await watch.stop(), default=0.0)
        where = busy.line({"ladder": ladders, "publisher": [camera.proc.pid]})
    finally:
        await asyncio.to_thread(camera.stop)
    if camera.proc.returncode not in (0, 255, -15):
        print(f"  the publisher ffmpeg exited {camera.proc.returncode} (see {tmp / 'camera.log'})")
    heights: dict[int, int] = {}
    for s in window:
        heights[int(s[3])] = heights.get(int(s[3]), 0) + 1
    return Played(
        latencies_s=[(s[0] - s[1]) / 1000 for s in window],
        hls_latency_s=[s[2] for s in window],
        join_p50_s=joins,
        join_upstream_p50_s=joins_up,
        heights=heights,
        report=report,
        window_s=seconds,
        first_segment_s=t_first - camera.first_frame_at,
        camera_fps=camera.fps(),
        camera_late_max_s=camera.late_max_s,
        segment_rate=rate,
        busy=where,
    )


def print_played(name: str, played: Played) -> None:
    lat = played.latencies_s
    r = played.report
    errors = [e for e in r["errors"] if e.get("fatal") or e.get("type") != "mediaError"]
    print(
        f"  {name:<9} glass-to-glass p50 {pct(lat, 50):5.2f} s  p95 {pct(lat, 95):5.2f} s  "
        f"min {min(lat, default=float('nan')):5.2f}  max {max(lat, default=float('nan')):5.2f} s "
        f"(n={len(lat)} frames over {played.window_s:.0f} s)"
    )
    print(
        f"            per viewer p50 {', '.join(f'{v:.2f}' for v in played.join_p50_s)} s "
        f"(upstream {', '.join(f'{v:.2f}' for v in played.join_upstream_p50_s)}); "
        f"hls.js behind the live edge p50 {pct(played.hls_latency_s, 50):.2f} s; "
        f"upstream of it (camera -> listed) p50 {pct(played.upstream_s, 50):.2f} s"
    )
    print(
        f"            played {sorted(played.heights.items(), reverse=True)} (height: frames); "
        f"stalls {r['stalls']}; frames unreadable {r['rejected']}; "
        f"{'requestVideoFrameCallback' if r['rvfc'] else 'polling (no rVFC)'}; "
        f"hls.js errors {errors or 'none'}"
    )
    print(
        f"            first frame to the publisher -> first segment on disk "
        f"{played.first_segment_s:.2f} s; camera {played.camera_fps:.1f} fps "
        f"(asked {FPS}, worst lateness {played.camera_late_max_s * 1000:.0f} ms); "
        f"slowest rung {played.segment_rate:.2f} segments/s while playing"
        + ("" if played.segment_rate >= REALTIME_SEG_PER_S else " -> FELL BEHIND real time")
    )
    print(f"            {played.busy}")


# --------------------------------------------------------------------------- 3. capacity


@dataclasses.dataclass
class Step:
    streams: int
    ladder_cores: list[float]  # per stream
    own_cores: float  # this process (the ingest's Python, for the system)
    rates: list[float]  # segments/s, the slowest rung of each stream
    busy: str

    @property
    def realtime(self) -> bool:
        return len(self.rates) == self.streams and min(self.rates) >= REALTIME_SEG_PER_S

    def cost(self, with_own: bool) -> float:
        """Cores one stream needs to keep real time: what it used per second of video it
        made (a starved ladder makes less than a second per second), the mean over the
        streams; ``with_own`` adds this process' share (the ingest's Python)."""
        own = self.own_cores / self.streams if with_own else 0.0
        per = [
            (cores + own) / rate
            for cores, rate in zip(self.ladder_cores, self.rates, strict=True)
            if rate > 0
        ]
        return statistics.fmean(per) if per else float("nan")


class SegmentWatch:
    """Notes when each rung's newest segment changes (a poll every 50 ms, in the
    background) to tell how many segments per second every rung makes."""

    def __init__(self, out_dirs: Sequence[Path]) -> None:
        self.rungs = [sorted(d for d in out.iterdir() if d.is_dir()) for out in out_dirs]
        self.marks: list[list[list[tuple[float, int]]]] = [[[] for _ in rs] for rs in self.rungs]
        self.t0 = time.perf_counter()
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            now = time.perf_counter()
            for i, rs in enumerate(self.rungs):
                for j, rung in enumerate(rs):
                    n = newest_segment(rung)
                    marks = self.marks[i][j]
                    if n >= 0 and (not marks or marks[-1][1] != n):
                        marks.append((now, n))
            await asyncio.sleep(0.05)

    async def stop(self) -> list[float]:
        """Segments per second of the slowest rung of each stream: from the first new
        segment seen to the last; a rung that made fewer than two in the window, its new
        segments over the whole window."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        window = time.perf_counter() - self.t0
        rates = []
        for stream in self.marks:
            per_rung = []
            for marks in stream:
                if len(marks) >= 3:
                    (ta, na), (tb, nb) = marks[1], marks[-1]
                    per_rung.append((nb - na) / max(1e-9, tb - ta))
                elif marks:
                    per_rung.append((marks[-1][1] - marks[0][1]) / window)
                else:
                    per_rung.append(0.0)
            rates.append(min(per_rung, default=0.0))
        return rates


async def measure_ladders(
    pids: list[int],
    out_dirs: list[Path],
    warmup_s: float,
    window_s: float,
    publishers: Sequence[int] = (),
) -> tuple[list[float], float, list[float], str]:
    await asyncio.sleep(warmup_s)
    busy = Busy()
    cpu0 = [cpu_s(pid) for pid in pids]
    t0 = time.perf_counter()
    watch = SegmentWatch(out_dirs)
    await asyncio.sleep(window_s)
    rates = await watch.stop()
    wall = time.perf_counter() - t0
    cores = [(cpu_s(pid) - c0) / wall for pid, c0 in zip(pids, cpu0, strict=True)]
    where = busy.line({"ladders": pids, "publishers": publishers})
    return cores, busy.own_cores(), rates, where


async def capacity_reels(
    args: argparse.Namespace, reels: Reels, procs: Procs, clip: Path, tmp: Path, n: int
) -> Step:
    pubs, pids, dirs, ids = [], [], [], []
    try:
        for i in range(n):
            stream_id, key = await reels.new_stream(f"bench-cap-{n}-{i}-{uuid.uuid4().hex[:6]}")
            pubs.append(await procs.spawn(clip_publisher(clip, reels.url(key)), tmp / "pub.log"))
            ids.append(stream_id)
        for stream_id in ids:
            pids.append((await reels.ladder_pid(stream_id))[1])
            dirs.append(reels.out_dir(stream_id))
        await wait_for(lambda: all(has_segment(d) for d in dirs), 15, "segments", 0.05)
        cores, own, rates, busy = await measure_ladders(
            pids, dirs, args.warmup, args.window, [p.pid for p in pubs]
        )
    finally:
        await asyncio.gather(*(procs.stop(p) for p in pubs))
        for stream_id in ids:
            with contextlib.suppress(NotInTime):
                await reels.gone(stream_id)
    return Step(n, cores, own, rates, busy)


async def capacity_baseline(
    args: argparse.Namespace, settings: Settings, procs: Procs, clip: Path, tmp: Path, n: int
) -> Step:
    running, dirs = [], []
    try:
        for i in range(n):
            out = tmp / f"base-cap-{n}-{i}"
            argv = baseline_ladder_argv(settings, clip, (1280, 720), out, out / "recording.ts")
            running.append(await procs.spawn(argv, tmp / "baseline.log"))
            dirs.append(out)
        await wait_for(lambda: all(has_segment(d) for d in dirs), 15, "segments", 0.05)
        pids = [p.pid for p in running]
        cores, own, rates, busy = await measure_ladders(pids, dirs, args.warmup, args.window)
    finally:
        await asyncio.gather(*(procs.stop(p) for p in running))
    return Step(n, cores, own, rates, busy)


def print_step(name: str, step: Step) -> None:
    mean = statistics.fmean(step.ladder_cores) if step.ladder_cores else float("nan")
    print(
        f"  {name:<9} {step.streams} stream(s): ladder ffmpeg {mean:.2f} cores each "
        f"({', '.join(f'{c:.2f}' for c in step.ladder_cores)}); this process "
        f"{step.own_cores:.2f} cores; slowest rung of each stream "
        f"{', '.join(f'{r:.2f}' for r in step.rates)} segments/s -> "
        f"{'real time' if step.realtime else 'FALLING BEHIND'}; "
        f"{step.cost(name == 'reels'):.2f} cores per second of video"
    )
    print(f"            {step.busy}")


# --------------------------------------------------------------------------- setup


async def static_server(root: Path) -> tuple[web.AppRunner, str]:
    """The page, hls.js, and ``root`` under /media/, every response ``no-cache``."""
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def hls_js(_: web.Request) -> web.FileResponse:
        return web.FileResponse(HLS_JS)

    async def no_cache(_: web.Request, response: web.StreamResponse) -> None:
        response.headers["Cache-Control"] = "no-cache"

    app.router.add_get("/", page)
    app.router.add_get("/hls.js", hls_js)
    app.router.add_static("/media/", root)
    app.on_response_prepare.append(no_cache)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def bench_settings(db_url: str, prefix: str, objects: Path, tmp: Path) -> Settings:
    base = Settings.from_env()
    platform = dataclasses.replace(
        base.platform,
        database_url=db_url,
        kafka_bootstrap=f"127.0.0.1:{free_port()}",  # nothing there: the relay idles
        redis_prefix=prefix,
        metrics_port=0,
        storage_url=objects.as_uri(),
        otel_file=tmp / "spans.jsonl",
        otlp_endpoint="",
    )
    return dataclasses.replace(
        base,
        platform=platform,
        ws=dataclasses.replace(base.ws, port=0),
        ingest=dataclasses.replace(base.ingest, port=0, grace_s=GRACE_S),
    )


async def main(args: argparse.Namespace) -> int:
    ensure_dev_keys()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    objects = tmp / "objects"
    objects.mkdir()
    logging.basicConfig(
        filename=tmp / "svc_chat.log",
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    base = make_url(os.environ.get("REELS_TEST_DATABASE_URL", database_url()))
    db_url = base.set(database=f"reels_bench_{uuid.uuid4().hex[:10]}").render_as_string(
        hide_password=False
    )
    prefix = f"reels-bench-live-{uuid.uuid4().hex[:8]}:"
    procs = Procs()
    stack: list[Callable[[], Awaitable[Any]]] = []
    try:
        await create_database(db_url)
        stack.append(lambda: drop_database(db_url))
        await migrate(db_url)
        settings = bench_settings(db_url, prefix, objects, tmp)
        app = build(settings)
        server = await run_app(app, port=0)
        stack.append(lambda: server.stop(1.0))
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stack.append(channel.close)
        reels = Reels(app, server, channel, objects)
        runner, origin = await static_server(tmp)
        stack.append(runner.cleanup)
        clips = {"source": tmp / "clip-source.flv", "720p": tmp / "clip-720p.flv"}
        clip_s = args.warmup + args.window + 10
        t = time.perf_counter()
        await asyncio.gather(
            make_clip(procs, clips["source"], args.size, 6, tmp / "clip.log"),
            make_clip(procs, clips["720p"], (1280, 720), clip_s, tmp / "clip.log"),
        )
        s = settings.ingest
        print(
            f"svc_chat in this process (RTMP ingest on 127.0.0.1:{reels.ingest.port}, "
            f"{s.segment_s:g} s segments, {s.playlist_size}-segment window, x264 "
            f"{s.x264_preset}, ladder up to {s.max_height}p x {s.max_rungs}); playlists and "
            f"segments served by a plain aiohttp static server (Cache-Control: no-cache), "
            f"not the signed origin; {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f}; clips made in {time.perf_counter() - t:.1f} s"
        )
        code = await run(args, reels, settings, procs, clips, tmp, origin, stack)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        return code
    finally:
        await procs.stop_all()
        for undo in reversed(stack):
            try:
                await undo()
            except Exception as exc:  # noqa: BLE001 - clean up the rest regardless
                print(f"cleanup: {exc!r}", file=sys.stderr)
        client = redis_client()
        await delete_prefix(client, prefix)
        await client.aclose()
        logging.shutdown()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def run(
    args: argparse.Namespace,
    reels: Reels,
    settings: Settings,
    procs: Procs,
    clips: dict[str, Path],
    tmp: Path,
    origin: str,
    stack: list[Callable[[], Awaitable[Any]]],
) -> int:
    from playwright.async_api import async_playwright

    # ---------------------------------------------------------------- 1. first segment
    ttfs, ttfs_start, ttfs_base = await first_segments(
        args, reels, settings, procs, clips["source"], tmp
    )

    # ---------------------------------------------------------------- 2. glass-to-glass
    width, height = args.size
    s = settings.ingest
    hls_config = (
        "defaults" if args.sync_count is None else f"liveSyncDurationCount {args.sync_count}"
    )
    print(
        f"\n{at()} 2. glass-to-glass: {width}x{height} {FPS} fps camera with the time burned in "
        f"and {'a tone' if args.audio == 'tone' else 'silence'}, "
        f"hls.js ({hls_config}, capLevelToPlayerSize, 320 px player) in headless Chromium, "
        f"{args.joins} viewers one after another once {JOIN_SEGMENTS} segments are listed, "
        f"each sampled {args.seconds:g} s after {args.settle:g} s of playback"
    )
    pw = await async_playwright().start()
    stack.append(pw.stop)
    browser = await pw.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--autoplay-policy=no-user-gesture-required",
            "--mute-audio",
        ],
    )
    stack.append(browser.close)
    stream_id, key = await reels.new_stream(f"bench-g2g-{uuid.uuid4().hex[:6]}")
    live_dir = reels.out_dir(stream_id)
    accepted: list[float] = []

    async def note_accepted() -> list[int]:
        acc, pid = await reels.ladder_pid(stream_id)
        accepted.append(acc)
        return [pid]

    system = await glass_to_glass(
        args,
        browser,
        origin,
        live_dir,
        f"{origin}/media/objects/live/{stream_id}/master.m3u8",
        publisher_argv(width, height, ["-f", "flv", reels.url(key)], args.audio),
        tmp,
        note_accepted,
    )
    with contextlib.suppress(NotInTime):
        await reels.gone(stream_id)
    print_played("reels", system)
    base_dir = tmp / "base-g2g"
    (base_dir / "src").mkdir(parents=True)
    baseline = await glass_to_glass(
        args,
        browser,
        origin,
        base_dir,
        f"{origin}/media/base-g2g/master.m3u8",
        publisher_argv(
            width, height, direct_hls_output(base_dir, s.playlist_size, s.segment_s), args.audio
        ),
        tmp,
    )
    print_played("baseline", baseline)
    await browser.close()
    await pw.stop()
    stack.remove(browser.close)
    stack.remove(pw.stop)

    # ---------------------------------------------------------------- 3. capacity
    print(
        f"\n{at()} 3. capacity: 1..{args.max_streams} concurrent 720p30 publishers (-re, -c copy), "
        f"{args.warmup:g} s warm-up, {args.window:g} s measured; real time = every rung "
        f">= {REALTIME_SEG_PER_S} segments/s"
    )
    steps: list[tuple[Step, Step]] = []
    for n in range(1, args.max_streams + 1):
        ours = await capacity_reels(args, reels, procs, clips["720p"], tmp, n)
        print_step("reels", ours)
        theirs = await capacity_baseline(args, settings, procs, clips["720p"], tmp, n)
        print_step("baseline", theirs)
        steps.append((ours, theirs))
        if not ours.realtime:
            break

    # ---------------------------------------------------------------- the table
    def held(which: int) -> str:
        ok = [pair[which].streams for pair in steps if pair[which].realtime]
        tried = max(pair[which].streams for pair in steps)
        return f"{max(ok, default=0)} of {tried} tried"

    one_ours, one_theirs = steps[0]
    cost_ours, cost_theirs = one_ours.cost(True), one_theirs.cost(False)

    lat, blat = system.latencies_s, baseline.latencies_s
    rows = [
        ("glass-to-glass p50", f"{pct(lat, 50):.2f} s", f"{pct(blat, 50):.2f} s", "<= 4 s"),
        ("glass-to-glass p95", f"{pct(lat, 95):.2f} s", f"{pct(blat, 95):.2f} s", "<= 5 s"),
        (
            "camera -> segment listed, p50",
            f"{pct(system.upstream_s, 50):.2f} s",
            f"{pct(baseline.upstream_s, 50):.2f} s",
            "-",
        ),
        (
            "first segment, median (max)",
            f"{statistics.median(ttfs):.2f} s ({max(ttfs):.2f})",
            f"{statistics.median(ttfs_base):.2f} s ({max(ttfs_base):.2f})",
            "<= 2 s",
        ),
        (
            "CPU per 720p30 ladder in real time",
            f"{cost_ours:.2f} cores",
            f"{cost_theirs:.2f} cores",
            "-",
        ),
        (
            "slowest rung while playing",
            f"{system.segment_rate:.2f} segments/s",
            f"{baseline.segment_rate:.2f} segments/s",
            ">= 0.95",
        ),
        ("streams held in real time here", held(0), held(1), "-"),
    ]
    print(
        f"\n{at()} reels live: the ingest (RTMP -> pyrtmp -> one ffmpeg ladder); baseline: plain "
        "ffmpeg writing HLS to disk from the same input"
    )
    print(
        "(first segment: reels from the publish accepted, baseline from ffmpeg's start; CPU: "
        "per second of video made, reels = ladder ffmpeg + this process' share, i.e. the "
        "ingest's Python)"
    )
    header = ("metric", "reels live", "baseline", "goal")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))

    ok50 = pct(lat, 50) <= GOAL_P50_S
    ok95 = pct(lat, 95) <= GOAL_P95_S
    okfirst = statistics.median(ttfs) <= GOAL_FIRST_SEGMENT_S
    print(
        f"\ngoal glass-to-glass p50 <= {GOAL_P50_S:g} s: {'MET' if ok50 else 'NOT MET'} "
        f"({pct(lat, 50):.2f} s; baseline {pct(blat, 50):.2f} s, "
        f"+{pct(lat, 50) - pct(blat, 50):.2f} s)"
    )
    print(
        f"goal glass-to-glass p95 <= {GOAL_P95_S:g} s: {'MET' if ok95 else 'NOT MET'} "
        f"({pct(lat, 95):.2f} s; baseline {pct(blat, 95):.2f} s)"
    )
    print(
        f"goal first segment <= {GOAL_FIRST_SEGMENT_S:g} s after the publish is accepted: "
        f"{'MET' if okfirst else 'NOT MET'} (median {statistics.median(ttfs):.2f} s, max "
        f"{max(ttfs):.2f} s; baseline {statistics.median(ttfs_base):.2f} s; from the "
        f"publisher's start {statistics.median(ttfs_start):.2f} s)"
    )
    warnings = warning_lines(tmp / "svc_chat.log")
    print(
        f"svc_chat ingest/streams warnings and errors in this run: {len(warnings)} "
        "(the outbox relay's 'broker not reachable' left out: no Kafka here)"
    )
    for line in warnings[:5]:
        print(f"  {line[:300]}")
    if args.json:
        figures = {
            "glass_to_glass_s": {
                "reels": {"p50": pct(lat, 50), "p95": pct(lat, 95), "n": len(lat)},
                "baseline": {"p50": pct(blat, 50), "p95": pct(blat, 95), "n": len(blat)},
            },
            "first_segment_s": {"reels": ttfs, "baseline": ttfs_base},
            "capacity": [
                {
                    "streams": ours.streams,
                    "reels": {**dataclasses.asdict(ours), "cores_per_stream": ours.cost(True)},
                    "baseline": {
                        **dataclasses.asdict(theirs),
                        "cores_per_stream": theirs.cost(False),
                    },
                }
                for ours, theirs in steps
            ],
        }
        write_json(Path(args.json), figures)
        print(f"figures written to {args.json}")
    return 0 if ok50 and ok95 and okfirst else 1


def write_json(path: Path, figures: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2))


def warning_lines(log: Path) -> list[str]:
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return []
    return [
        line
        for line in text.splitlines()
        if (" WARNING svc_chat" in line or " ERROR svc_chat" in line)
    ]


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joins", type=int, default=4, help="viewers, one after another")
    parser.add_argument("--seconds", type=float, default=4, help="sampled per viewer (s)")
    parser.add_argument("--settle", type=float, default=2, help="playback before sampling (s)")
    parser.add_argument(
        "--size", type=_size, default=(640, 360), help="source of phases 1-2: WxH (30 fps)"
    )
    parser.add_argument(
        "--sync-count", type=int, default=None, help="hls.js liveSyncDurationCount (default: 3)"
    )
    parser.add_argument(
        "--audio", choices=sorted(AUDIO_SOURCES), default="tone", help="the camera's sound"
    )
    parser.add_argument("--ttfs-runs", type=int, default=3)
    parser.add_argument("--max-streams", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2, help="capacity: before measuring (s)")
    parser.add_argument("--window", type=float, default=5, help="capacity: measured (s)")
    parser.add_argument("--json", default="", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--timeout", type=float, default=300, help="stop after this (s)")
    a = parser.parse_args()
    for needed, why in ((CHROMIUM, "chromium"), (HLS_JS, "hls.js")):
        if not needed.exists():
            print(f"bench_live: no {why} at {needed}: run make setup", file=sys.stderr)
            sys.exit(2)
    try:
        sys.exit(asyncio.run(asyncio.wait_for(main(a), a.timeout)))
    except TimeoutError:
        print(f"bench_live: stopped after {a.timeout:g} s", file=sys.stderr)
        sys.exit(2)
