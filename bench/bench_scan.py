"""Malware scan speed: svc_upload's path (clamd SCAN through aioclamd) on one large upload,
beside ``clamscan`` on the same file with the same database, in the same run.

Issue 13: "the malware scan's MB/s on a 500 MB upload, against clamscan on the same
file". The file is a real MP4 clip followed by pseudo-random bytes up to the size (what
clamd reads of an upload is its bytes; their entropy is what makes pattern matching
work hard, and random bytes are the worst case for our patterns' prefilter).

* ``clamd``: ``svc_upload.scan.MalwareScanner.scan`` (SCAN <path>), 3 runs, best and
  median, after one warm-up (the page cache holds the file for both sides).
* ``clamscan``: ``clamscan --no-summary -d safety/signatures <file>`` 3 runs; it loads
  the database each run (ours loads in ~0.1 s, so that is most of its fixed cost).

Usage: ``make bench B=scan`` (``--mb 500`` default; ``--mb 50`` for a quick look).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from reels_dev.infra.clamd import SIGNATURES, clamd_process  # noqa: E402
from reels_dev.infra.process import free_port  # noqa: E402
from svc_upload.scan import MalwareScanner  # noqa: E402

MB = 1024 * 1024
RUNS = 3


def make_file(path: Path, size: int) -> None:
    clip = path.with_suffix(".clip.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
         "-t", "2", "-c:v", "libx264", str(clip)],
        check=True,
    )  # fmt: skip
    with path.open("wb") as out:
        out.write(clip.read_bytes())
        left = size - out.tell()
        block = os.urandom(8 * MB)
        while left > 0:
            n = min(left, len(block))
            out.write(block[:n])
            left -= n
    clip.unlink()


def clamscan(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        ["clamscan", "--no-summary", "-d", str(SIGNATURES),
         "--max-filesize=4000M", "--max-scansize=4000M", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return time.perf_counter() - start, done.stdout.strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="upload size (MiB)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-scan-"))
    port = free_port()
    proc = clamd_process(port, run_dir=work / "clamd", log_dir=work)
    try:
        path = work / "upload.mp4"
        print(f"generating a {args.mb} MiB upload ...", flush=True)
        await asyncio.to_thread(make_file, path, args.mb * MB)
        await asyncio.to_thread(proc.start)
        scanner = MalwareScanner(f"127.0.0.1:{port}", timeout_s=600)
        warm = await scanner.scan(path)
        assert warm.clean, warm
        ours: list[float] = []
        for _ in range(RUNS):
            start = time.perf_counter()
            verdict = await scanner.scan(path)
            ours.append(time.perf_counter() - start)
            assert verdict.clean, verdict
        theirs = []
        for _ in range(RUNS):
            seconds, out = await asyncio.to_thread(clamscan, path)
            assert out.endswith("OK"), out
            theirs.append(seconds)
        size_mb = args.mb
        print(f"\nmalware scan of a {size_mb} MiB upload (best / median of {RUNS}):")
        for name, runs in (("clamd SCAN (svc_upload)", ours), ("clamscan (baseline)", theirs)):
            best, median = min(runs), statistics.median(runs)
            print(
                f"  {name:26s} {size_mb / best:7.1f} MiB/s best, "
                f"{size_mb / median:7.1f} MiB/s median ({median:.2f} s)"
            )
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(f"  clamd / clamscan speed: {ratio:.2f}x")
    finally:
        proc.stop(5.0)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
