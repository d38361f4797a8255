"""Transcode pipeline vs bare ffmpeg on the same ladder, measured in the same run.

Quality bar (DESIGN.md): the whole pipeline (probe, ladder encode with progress parsing,
measured master playlist, thumbnail, preview, storyboard) within 1.15x the wall time of
bare ffmpeg encoding the same ladder; the goal set for this module is 1.10x.

Also prints "time to playable lowest rung": when the lowest rung's first segment is
complete (the encoder has moved on to the second), as a fraction of the clip's duration.

Run: .venv/bin/python bench/bench_transcode.py [--seconds 30] [--preset veryfast]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reels.media.probe import probe  # noqa: E402
from svc_transcode import hls  # noqa: E402
from svc_transcode.ladder import build_ladder  # noqa: E402
from svc_transcode.pipeline import transcode  # noqa: E402
from tests.media import make_clip  # noqa: E402

GOAL = 1.10


async def bare_ffmpeg(src: Path, out: Path, preset: str) -> float:
    """The baseline: the same ladder command, no progress pipe, no probe, no artifacts."""
    source = await probe(src, decode_check=False)
    rungs = build_ladder(source.width, source.height, source.fps)
    for rung in rungs:
        (out / rung.name).mkdir(parents=True, exist_ok=True)
    command = hls.build_ladder_command(
        src,
        out,
        rungs,
        has_audio=source.has_audio,
        source_fps=source.fps,
        preset=preset,
        progress=False,
    )
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *command.argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    if await proc.wait() != 0:
        raise SystemExit(f"bare ffmpeg failed: {' '.join(command.argv)}")
    return time.perf_counter() - start


async def watch_first_segment(rung_dir: Path, started: float) -> float | None:
    """Seconds until the lowest rung's second segment file appears (the first is complete)."""
    while True:
        if (rung_dir / "seg_0001.ts").exists():
            return time.perf_counter() - started
        await asyncio.sleep(0.05)


async def run_pipeline(
    src: Path, out: Path, preset: str, concurrent: bool
) -> tuple[float, float | None, dict[str, float]]:
    source = await probe(src, decode_check=False)
    lowest = build_ladder(source.width, source.height, source.fps)[-1].name
    start = time.perf_counter()
    watcher = asyncio.create_task(watch_first_segment(out / lowest, start))
    result = await transcode(src, out, preset=preset, artifacts_concurrently=concurrent)
    elapsed = time.perf_counter() - start
    first_segment = watcher.result() if watcher.done() else None
    watcher.cancel()
    return elapsed, first_segment, result.timings_s


def clear_outputs(root: Path) -> None:
    for d in root.glob("*[0-9]"):
        shutil.rmtree(d, ignore_errors=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--preset", default=hls.DEFAULT_PRESET)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds to run")
    parser.add_argument(
        "--concurrent-artifacts",
        action="store_true",
        help="also time the pipeline with the thumbnail overlapping the encode",
    )
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-transcode-"))
    try:
        src = root / "src.mp4"
        t = time.perf_counter()
        await make_clip(src, width=1080, height=1920, seconds=args.seconds)
        print(
            f"source: 1080x1920 {args.seconds:g} s testsrc2+sine "
            f"(generated in {time.perf_counter() - t:.1f} s); preset {args.preset}"
        )
        bare_times, pipe_times, conc_times, first_segments = [], [], [], []
        for i in range(args.rounds):
            bare_times.append(await bare_ffmpeg(src, root / f"bare{i}", args.preset))
            elapsed, first, timings = await run_pipeline(src, root / f"pipe{i}", args.preset, False)
            pipe_times.append(elapsed)
            if first is not None:
                first_segments.append(first)
            stages = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
            print(
                f"round {i + 1}: bare ffmpeg {bare_times[-1]:.2f} s | pipeline "
                f"{elapsed:.2f} s ({stages})"
            )
            if args.concurrent_artifacts:
                elapsed_c, _, _ = await run_pipeline(src, root / f"conc{i}", args.preset, True)
                conc_times.append(elapsed_c)
                print(f"round {i + 1}: pipeline, concurrent thumbnail {elapsed_c:.2f} s")
            clear_outputs(root)

        bare, pipe = min(bare_times), min(pipe_times)
        ratio = pipe / bare
        print(f"bare ffmpeg ladder (baseline): {bare:.2f} s")
        print(f"whole pipeline:                {pipe:.2f} s")
        print(f"ratio pipeline/bare:           {ratio:.3f} (goal <= {GOAL:.2f}, bar 1.15)")
        if conc_times:
            print(
                f"pipeline, concurrent thumbnail: {min(conc_times):.2f} s "
                f"(ratio {min(conc_times) / bare:.3f})"
            )
        if first_segments:
            first = min(first_segments)
            print(
                f"time to playable lowest rung (first segment complete): {first:.2f} s "
                f"= {first / args.seconds:.3f} x clip duration"
            )
        print(f"encode speed: {args.seconds / bare:.2f}x realtime for the whole ladder")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
