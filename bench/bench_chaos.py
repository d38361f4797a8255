"""Chaos under load, full size (issue 14 §4; the bounded form is tests/e2e/test_chaos_e2e.py).

The chaos mesh of tests/fixtures/chaos.py (private PostgreSQL and Redis, the broker and
the services under a private supervisord, its own Envoy, clamd). For each fault: tus
uploads through Envoy (one every ``BENCH_CHAOS_UPLOAD_S`` s, 0.5) and player events
(batches of 50 every 0.1 s) for 5 s, the fault, 10 s more load, then the invariants
(every accepted upload published, every accepted event counted once in Redis and in
the analytics store). Prints one row per fault: load, lost (must be 0), the seconds
until the part was back, until the mesh served again, until everything caught up.
The baseline is the same load with no fault, in the same run.

Faults: kafka kill -9, svc_transcode kill -9 mid-job, svc_stream (the analytics sink)
kill -9, redis kill -9, postgres restart (pg_ctl immediate stop + start), and the
flag faults (reels.faults: Triton and svc_rank's svc_stream client failing).
Loopback only; bounded (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reels import faults  # noqa: E402
from reels_dev.infra.clamd import clamd_process  # noqa: E402
from reels_dev.infra.otlp_sink import start_sink  # noqa: E402
from reels_dev.infra.process import free_port  # noqa: E402
from reels_dev.keys import ensure_dev_keys  # noqa: E402
from tests.chaos.load import run_fault  # noqa: E402
from tests.fixtures.chaos import ChaosMesh, FaultReport, chaos_mesh  # noqa: E402
from tests.media import make_clip  # noqa: E402

UPLOAD_S = float(os.environ.get("BENCH_CHAOS_UPLOAD_S", "0.5"))
LOAD = {
    "upload_interval_s": UPLOAD_S,
    "events_per_batch": 50,
    "before_s": 5.0,
    "after_s": 10.0,
    "catch_up_s": 600.0,
}


def killer(chaos: ChaosMesh, name: str):  # type: ignore[no-untyped-def]
    async def fault() -> float:
        pid = chaos.kill(name)
        return await asyncio.to_thread(chaos.wait_restarted, name, pid)

    return fault


async def main(chaos: ChaosMesh, clip: bytes) -> list[FaultReport]:
    async def none() -> float:
        return 0.0

    async def pg_restart() -> float:
        started = time.monotonic()
        await asyncio.to_thread(chaos.postgres.stop, immediate=True)
        await asyncio.sleep(2)
        await asyncio.to_thread(chaos.postgres.start)
        return time.monotonic() - started

    async def flags() -> float:
        chaos.set_fault(faults.Fault("stream", error_rate=1.0))
        chaos.set_fault(faults.Fault("triton", error_rate=1.0))
        await asyncio.sleep(5)
        chaos.clear_faults()
        return 5.0

    plan = [
        ("baseline (no fault)", none),
        ("kafka kill -9", killer(chaos, "kafka")),
        ("svc_transcode kill -9", killer(chaos, "transcode")),
        ("svc_stream (sink) kill -9", killer(chaos, "stream")),
        ("redis kill -9", killer(chaos, "redis")),
        ("postgres restart", pg_restart),
        ("triton+trending flags 5s", flags),
    ]
    return [await run_fault(chaos, name, clip, fault, **LOAD) for name, fault in plan]


async def run() -> None:
    ensure_dev_keys()
    root = Path(tempfile.mkdtemp(prefix="bench_chaos-"))
    clip = await make_clip(root / "clip.mp4", width=144, height=256, seconds=1, fps=15, audio=False)
    otlp_port = free_port()
    sink = await start_sink(otlp_port, root / "spans.jsonl")
    clamd_port = free_port()
    clamd = clamd_process(clamd_port, run_dir=root / "clamd", log_dir=root)
    await asyncio.to_thread(clamd.start)
    try:

        def with_mesh() -> list[FaultReport]:
            with chaos_mesh(root / "mesh", f"127.0.0.1:{clamd_port}", (otlp_port, root)) as c:
                return asyncio.run(main(c, clip.read_bytes()))

        reports = await asyncio.to_thread(with_mesh)
    finally:
        await asyncio.to_thread(clamd.stop, 5.0)
        await sink.stop(0.5)
    print()
    print("| fault | load during it | lost | back (s) | serving (s) | caught up (s) |")
    print("|---|---|---|---|---|---|")
    for r in reports:
        print(
            f"| {r.fault} | {r.uploads_accepted} uploads, {r.events_accepted} events | {r.lost} |"
            f" {r.restart_s:.1f} | {r.recover_s:.1f} | {r.caught_up_s:.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(run())
