"""Upload throughput of svc_upload (gRPC chunks, gRPC stream, tus) vs a plain file copy.

Quality bar (DESIGN.md / issue 3): a 500 MB upload at >= 0.8x the throughput of a
plain copy of the same file, and svc_upload's peak RSS under 200 MB during it.

What is measured, all on loopback in one run:

* the file: a real 4 s H.264 clip followed by an mp4 ``free`` box of random bytes up
  to the size (500 MB by default). It is a valid video, so every upload runs the
  *whole* path — staging with fsync, incremental sha256 checked against the declared
  one, ffprobe + decode check, the move into the object store and the Postgres
  transaction with the outbox row — and the clock stops at the completion answer;
* baselines: ``shutil.copyfile`` of the file into the same filesystem, without and
  with a final fsync (svc_upload fsyncs what it acknowledges, so the fsync copy is
  the like-for-like baseline; both are printed, ratios against both);
* svc_upload runs as its own process (``python -m svc_upload``); its peak RSS is
  VmHWM from /proc/<pid>/status after all uploads (the whole life of the process).

Run: .venv/bin/python bench/bench_upload.py [--mb 500] [--chunk-mb 4]
Needs PostgreSQL and Redis (``make setup``); starts its own Tansu broker.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

import grpc  # noqa: E402
from reels.v1 import common_pb2, upload_pb2, upload_pb2_grpc  # noqa: E402
from tusclient.client import TusClient  # noqa: E402

from reels.db.engine import create_database, database_url, drop_database  # noqa: E402
from reels.db.migrate import migrate  # noqa: E402
from reels_dev.infra.clamd import clamd_process  # noqa: E402
from reels_dev.infra.process import ManagedProcess, free_port, port_open  # noqa: E402
from reels_dev.infra.tansu import tansu_process  # noqa: E402
from reels_dev.keys import mint_token  # noqa: E402
from tests.media import make_clip  # noqa: E402

MB = 1024 * 1024
GOAL_RATIO = 0.8
GOAL_RSS_MB = 200


async def make_file(path: Path, size: int) -> str:
    """A valid clip padded with a ``free`` box of random bytes to ``size``; returns sha256."""
    clip = await make_clip(path.with_suffix(".clip.mp4"), width=640, height=360, seconds=4)
    head = clip.read_bytes()
    clip.unlink()
    pad = size - len(head)
    block = os.urandom(8 * MB)
    digest = hashlib.sha256(head)
    with path.open("wb") as fh:
        fh.write(head)
        box = struct.pack(">I", pad) + b"free"
        fh.write(box)
        digest.update(box)
        left = pad - len(box)
        while left > 0:
            piece = block[: min(left, len(block))]
            fh.write(piece)
            digest.update(piece)
            left -= len(piece)
    return digest.hexdigest()


def copy_baseline(src: Path, dst: Path, fsync: bool) -> float:
    """Seconds for a plain copy (page cache dropped of dst first by deleting it)."""
    dst.unlink(missing_ok=True)
    start = time.perf_counter()
    shutil.copyfile(src, dst)
    if fsync:
        with dst.open("rb+") as fh:
            os.fsync(fh.fileno())
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


def size_of(path: Path) -> int:
    return path.stat().st_size


def auth(user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint_token(user)}"),)


async def grpc_chunks(addr: str, path: Path, sha: str, chunk: int) -> float:
    """CreateUpload, sequential UploadChunk calls, CompleteUpload."""
    md = auth("bench-user")
    size = size_of(path)
    start = time.perf_counter()
    async with grpc.aio.insecure_channel(
        addr, options=[("grpc.max_send_message_length", 32 * MB)]
    ) as ch:
        api = upload_pb2_grpc.UploadServiceStub(ch)
        created = await api.CreateUpload(
            upload_pb2.CreateUploadRequest(
                title="bench", declared_size_bytes=size,
                sha256_hex=sha, filename="bench.mp4", mime_type="video/mp4",
            ),
            metadata=md,
        )  # fmt: skip
        offset = 0
        with path.open("rb") as fh:
            while data := fh.read(chunk):
                reply = await api.UploadChunk(
                    upload_pb2.UploadChunkRequest(
                        upload_id=created.upload_id, offset=offset, data=data
                    ),
                    metadata=md,
                )
                offset = reply.offset
        done = await api.CompleteUpload(
            upload_pb2.CompleteUploadRequest(upload_id=created.upload_id), metadata=md
        )
    assert done.status == common_pb2.VIDEO_STATUS_PROCESSING, done
    return time.perf_counter() - start


async def grpc_stream(addr: str, path: Path, sha: str, chunk: int) -> float:
    """UploadVideo: one client stream, metadata then chunks."""
    md = auth("bench-user")
    size = size_of(path)

    async def messages():  # type: ignore[no-untyped-def]
        yield upload_pb2.UploadVideoRequest(
            metadata=upload_pb2.UploadMetadata(
                title="bench", declared_size_bytes=size,
                sha256_hex=sha, filename="bench.mp4", mime_type="video/mp4",
            )
        )  # fmt: skip
        with path.open("rb") as fh:
            while data := fh.read(chunk):
                yield upload_pb2.UploadVideoRequest(chunk=data)

    start = time.perf_counter()
    async with grpc.aio.insecure_channel(addr) as ch:
        done = await upload_pb2_grpc.UploadServiceStub(ch).UploadVideo(messages(), metadata=md)
    assert done.status == common_pb2.VIDEO_STATUS_PROCESSING, done
    return time.perf_counter() - start


def tus_upload(url: str, path: Path, sha: str, chunk: int) -> float:
    """tuspy, the reference Python client, ``chunk`` bytes per PATCH."""
    client = TusClient(url, headers={"Authorization": f"Bearer {mint_token('bench-user')}"})
    start = time.perf_counter()
    uploader = client.uploader(
        str(path), chunk_size=chunk, metadata={"title": "bench", "filename": "bench.mp4",
                                               "sha256": sha},
    )  # fmt: skip
    uploader.upload()
    assert uploader.offset == path.stat().st_size
    return time.perf_counter() - start


def reset_peak(pid: int) -> None:
    """Reset VmHWM (``echo 5 > clear_refs``) so each path's peak is its own."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass  # not permitted here: the printed peaks are then cumulative


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=500, help="file size in MiB (default 500)")
    parser.add_argument("--chunk-mb", type=int, default=4, help="gRPC chunk (default 4 MiB)")
    parser.add_argument("--tus-chunk-mb", type=int, default=16, help="tus PATCH size")
    parser.add_argument(
        "--only", action="append", default=[], help="run only these paths (repeatable)"
    )
    args = parser.parse_args()
    size = args.mb * MB

    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    db = database_url().rsplit("/", 1)[0] + f"/reels_bench_{uuid.uuid4().hex[:8]}"
    broker = tansu_process(free_port(), log_dir=work)
    clamd_port = free_port()
    scanner = clamd_process(clamd_port, run_dir=work / "clamd", log_dir=work)
    svc: ManagedProcess | None = None
    try:
        print(f"generating {args.mb} MiB file ...", flush=True)
        src = work / "source.mp4"
        sha = await make_file(src, size)
        await create_database(db)
        await migrate(db)
        await asyncio.to_thread(broker.start)
        await asyncio.to_thread(scanner.start)  # every complete is scanned (svc_upload.scan)
        grpc_port, http_port = free_port(), free_port()
        svc = ManagedProcess(
            "svc_upload",
            [sys.executable, "-m", "svc_upload"],
            env={
                "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
                "REELS_UPLOAD_PORT": str(grpc_port),
                "REELS_UPLOAD_HTTP_PORT": str(http_port),
                "REELS_DATABASE_URL": db,
                "REELS_KAFKA_BOOTSTRAP": broker.argv[-1].removeprefix("tcp://"),
                "REELS_STORAGE_URL": (work / "objects").as_uri(),
                "REELS_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:6]}:",
                "REELS_UPLOAD_MAX_BYTES": str(max(size, 500 * MB)),
                "REELS_CLAMD_ADDRESS": f"127.0.0.1:{clamd_port}",
                "OTEL_TRACES_EXPORTER": "none",
                "REELS_OTEL_FILE": str(work / "spans.jsonl"),
            },
            log_dir=work,
            ready=lambda: port_open("127.0.0.1", grpc_port) and port_open("127.0.0.1", http_port),
        )
        await asyncio.to_thread(svc.start)
        assert svc.proc is not None
        pid = svc.proc.pid
        idle_rss = vm_kb(pid, "VmRSS") / 1024

        results: dict[str, float] = {}
        results["copy"] = await asyncio.to_thread(copy_baseline, src, work / "copy.bin", False)
        results["copy+fsync"] = await asyncio.to_thread(copy_baseline, src, work / "copy.bin", True)
        addr = f"127.0.0.1:{grpc_port}"
        tus_url = f"http://127.0.0.1:{http_port}/api/v1/uploads/tus/"
        peaks: dict[str, float] = {}
        cpu: dict[str, tuple[float, float]] = {}
        runs = {
            "grpc chunks": lambda: grpc_chunks(addr, src, sha, args.chunk_mb * MB),
            "grpc stream": lambda: grpc_stream(addr, src, sha, args.chunk_mb * MB),
            "tus": lambda: asyncio.to_thread(tus_upload, tus_url, src, sha, args.tus_chunk_mb * MB),
        }
        for name, run in runs.items():
            if args.only and name not in args.only:
                continue
            reset_peak(pid)
            svc0, me0 = cpu_s(pid), cpu_s(os.getpid())
            results[name] = await run()
            peaks[name] = vm_kb(pid, "VmHWM") / 1024
            cpu[name] = (cpu_s(pid) - svc0, cpu_s(os.getpid()) - me0)
            shutil.rmtree(work / "objects" / "originals", ignore_errors=True)
        peak_rss = max(peaks.values())

        mb = size / MB
        print(f"\nupload of {mb:.0f} MiB over loopback (svc_upload pid {pid}; each upload "
              "includes sha256 check, ffprobe, move to store, outbox row)")  # fmt: skip
        print(
            f"{'path':<14}{'seconds':>9}{'MiB/s':>9}{'vs copy':>9}{'vs copy+fsync':>15}"
            f"{'svc peak RSS MiB':>18}{'svc CPU s':>11}{'client CPU s':>14}"
        )
        for name, seconds in results.items():
            rate = mb / seconds
            peak = f"{peaks[name]:.0f}" if name in peaks else "-"
            svc_cpu, client_cpu = (f"{c:.2f}" for c in cpu.get(name, (0.0, 0.0)))
            print(
                f"{name:<14}{seconds:>9.2f}{rate:>9.0f}"
                f"{results['copy'] / seconds:>9.2f}{results['copy+fsync'] / seconds:>15.2f}"
                f"{peak:>18}{svc_cpu if name in cpu else '-':>11}"
                f"{client_cpu if name in cpu else '-':>14}"
            )
        verdict = "ok" if peak_rss < GOAL_RSS_MB else "OVER"
        print(f"\nsvc_upload RSS idle {idle_rss:.0f} MiB, peak (VmHWM) {peak_rss:.0f} MiB "
              f"(goal < {GOAL_RSS_MB} MiB): {verdict}")  # fmt: skip
        print(f"goal: each upload path >= {GOAL_RATIO}x the copy's throughput")
    finally:
        if svc is not None:
            svc.stop(grace=5)
        broker.stop(5.0)
        scanner.stop(5.0)
        await drop_database(db)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
