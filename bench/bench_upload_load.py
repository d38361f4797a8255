"""Many resumable uploads at once through Envoy (issue 14), beside a bare file sink.

Goal (the seed, issue 14): 1,000 concurrent uploads of small valid clips through
Envoy, 0 refused with a 5xx, every accepted upload published, svc_upload's memory
bounded.

What runs, all on loopback in one run: a throwaway database, Tansu, clamd,
svc_upload and svc_transcode (ultrafast preset, no Triton) as processes, and two
Envoys rendered from the same config (reels_dev/infra/envoy.py, default rate limits
and circuit breakers): one routes the tus path to svc_upload, the other to a bare
sink started here (POST answers 201 with a Location; PATCH writes the body to a file
and fdatasyncs it, as svc_upload does with what it acknowledges, then 204).

For each level (100, 500, 1,000 concurrent clients; each client its own user, JWT and
connection): every client sends tus creation, then one PATCH with the whole clip; the
clock runs from the POST to the PATCH's answer. Printed per level and target: uploads
per second (clients / wall time of the level), p50/p95 latency, the answers by status
(5xx and 429 named), and svc_upload's peak RSS (VmHWM, reset per level). After the
levels, every accepted upload is checked published (``videos.status``), bounded by
``--publish-timeout``; the time until the last one published is printed.

Where svc_upload's time goes, per level: its CPU seconds, its checks' (ffprobe/ffmpeg,
reaped children) and svc_transcode's, and database transactions per upload
(``pg_stat_database``). ``--profile`` also runs ``py-spy record`` on svc_upload (``pip
install py-spy``) and prints the frames with the most samples; the raw profile is kept.
``--env NAME=VALUE`` passes a setting to the services (compare a pool size or wait);
``--skip-publish`` leaves out the wait for every upload to publish (svc_transcode runs
one job at a time, ~2 s a clip here, so 1,600 uploads take most of an hour).

Run: .venv/bin/python bench/bench_upload_load.py [--levels 100,500,1000] [--profile]
Needs PostgreSQL and Redis (``make setup``); starts everything else itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "gen")]

from aiohttp import web  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench.bench_upload import cpu_s, reset_peak, vm_kb  # noqa: E402
from reels.config import DEFAULT_PORTS  # noqa: E402
from reels.db.engine import create_database, database_url, drop_database  # noqa: E402
from reels.db.migrate import migrate  # noqa: E402
from reels_dev.infra.clamd import clamd_process  # noqa: E402
from reels_dev.infra.envoy import EnvoySettings, envoy_process  # noqa: E402
from reels_dev.infra.process import ManagedProcess, free_port, port_open  # noqa: E402
from reels_dev.infra.tansu import tansu_process  # noqa: E402
from reels_dev.keys import ensure_dev_keys, mint_token  # noqa: E402
from svc_upload.models import Video, VideoStatus  # noqa: E402
from tests.media import make_clip  # noqa: E402
from tests.tus import UploadOutcome, tus_upload_many  # noqa: E402

TUS_PATH = "/api/v1/uploads/tus/"


async def start_sink(port: int, root: Path) -> web.AppRunner:
    """The baseline: a bare tus-shaped file sink (no database, no checks)."""
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)

    async def create(request: web.Request) -> web.Response:
        name = uuid.uuid4().hex
        return web.Response(
            status=201, headers={"Location": f"{TUS_PATH}{name}", "Upload-Offset": "0"}
        )

    async def patch(request: web.Request) -> web.Response:
        body = await request.read()
        path = root / request.match_info["name"]

        def write() -> None:
            with path.open("wb") as fh:
                fh.write(body)
                fh.flush()
                os.fdatasync(fh.fileno())

        await asyncio.to_thread(write)
        return web.Response(status=204, headers={"Upload-Offset": str(len(body))})

    app = web.Application()
    app.router.add_post(TUS_PATH, create)
    app.router.add_patch(TUS_PATH + "{name}", patch)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    return runner


def children_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``'s reaped children (ffprobe/ffmpeg runs, transcodes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


async def xacts(engine: object, name: str) -> int:
    """Transactions committed + rolled back in database ``name`` so far (pg_stat_database)."""
    from sqlalchemy import text

    async with engine.connect() as conn:  # type: ignore[attr-defined]
        row = (
            await conn.execute(
                text(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :name"
                ),
                {"name": name},
            )
        ).one()
    return int(row[0])


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of ``pid`` (collapsed stacks, GIL-holding samples only) until
    stopped; None when py-spy is not installed (``pip install py-spy``)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("  (py-spy not installed: no profile)", flush=True)
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
         "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarize_profile(path: Path, top: int = 25) -> None:
    """Print the frames with the most samples (self and inclusive) from a raw profile."""
    if not path.exists():
        return
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"  profile {path}: {total} samples; most self time:", flush=True)
    for frame, n in own.most_common(top):
        print(f"    {100 * n / max(1, total):5.1f}%  {frame[:150]}")
    print("  most inclusive time (project code):")
    ours = [
        (f, n)
        for f, n in inclusive.most_common()
        if "svc_upload/" in f or "(reels/" in f or "/reels/" in f
    ]
    for frame, n in ours[:top]:
        print(f"    {100 * n / max(1, total):5.1f}%  {frame[:150]}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def describe(outcomes: list[UploadOutcome]) -> str:
    counts = Counter(o.status for o in outcomes)
    return " ".join(f"{status or 'none'}:{n}" for status, n in sorted(counts.items()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="100,500,1000", help="concurrent clients per level")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record svc_upload during its levels; print where its CPU went",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra setting for the services (repeatable), e.g. REELS_UPLOAD_VERIFY_WAIT_S=0",
    )
    parser.add_argument(
        "--skip-publish", action="store_true", help="do not wait for the uploads to publish"
    )
    parser.add_argument(
        "--publish-timeout", type=float, default=0.0, help="s (0: 3 s per upload + 120 s)"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x]

    ensure_dev_keys()
    work = Path(tempfile.mkdtemp(prefix="bench-upload-load-"))
    db = database_url().rsplit("/", 1)[0] + f"/reels_bench_{uuid.uuid4().hex[:8]}"
    kafka_port, clamd_port = free_port(), free_port()
    broker = tansu_process(kafka_port, log_dir=work)
    scanner = clamd_process(clamd_port, run_dir=work / "clamd", log_dir=work)
    procs: list[ManagedProcess] = []
    sink: web.AppRunner | None = None
    engine = None
    try:
        clip = await make_clip(
            work / "clip.mp4", width=144, height=256, seconds=1, fps=15, audio=False
        )
        body = clip.read_bytes()
        await create_database(db)
        await migrate(db)
        await asyncio.gather(asyncio.to_thread(broker.start), asyncio.to_thread(scanner.start))
        ports = {name: free_port() for name in DEFAULT_PORTS}
        upload_http, sink_port = free_port(), free_port()
        env = {
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
            "REELS_DATABASE_URL": db,
            "REELS_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
            "REELS_STORAGE_URL": (work / "objects").as_uri(),
            "REELS_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:6]}:",
            "REELS_CLAMD_ADDRESS": f"127.0.0.1:{clamd_port}",
            "REELS_UPLOAD_HTTP_PORT": str(upload_http),
            "REELS_TRANSCODE_PRESET": "ultrafast",
            "REELS_EMBEDDINGS": "off",
            "REELS_NSFW_MODERATION": "off",
            "OTEL_TRACES_EXPORTER": "none",
            "REELS_OTEL_FILE": str(work / "spans.jsonl"),
            **{f"REELS_{n.upper()}_PORT": str(p) for n, p in ports.items()},
            **{f"REELS_{n.upper()}_ADDR": f"127.0.0.1:{p}" for n, p in ports.items()},
            **dict(item.split("=", 1) for item in args.env),
        }
        for name in ("upload", "transcode"):
            port = ports[name]
            procs.append(
                ManagedProcess(
                    f"svc_{name}",
                    [sys.executable, "-m", f"svc_{name}"],
                    env=env,
                    log_dir=work,
                    ready=lambda p=port: port_open("127.0.0.1", p),  # type: ignore[misc]
                )
            )
        for proc in procs:
            await asyncio.to_thread(proc.start)
        sink = await start_sink(sink_port, work / "sink")
        fronts: dict[str, int] = {}
        for target, port in (("svc_upload", upload_http), ("bare sink", sink_port)):
            settings = EnvoySettings(
                listen_port=free_port(),
                admin_port=free_port(),
                service_ports=ports,
                upload_http_port=port,
                media_port=free_port(),
                chat_ws_port=free_port(),
                otlp_port=free_port(),
            )
            envoy = envoy_process(
                settings,
                name=f"envoy-{len(fronts)}",
                log_dir=work,
                config_path=work / f"envoy-{len(fronts)}.yaml",
            )
            await asyncio.to_thread(envoy.start)
            procs.append(envoy)
            fronts[target] = settings.listen_port
        upload_pid = procs[0].proc.pid  # type: ignore[union-attr]
        # Kept after the run (speedscope / flamegraph input): printed where.
        profiles = Path(tempfile.mkdtemp(prefix="bench-upload-load-profiles-"))
        transcode_pid = procs[1].proc.pid  # type: ignore[union-attr]
        db_name = db.rsplit("/", 1)[1]
        engine = create_async_engine(db, poolclass=NullPool)

        print(
            f"clip {len(body)} B (144x256, 1 s); each client its own user, JWT and connection; "
            "tus POST + one PATCH through Envoy",
            flush=True,
        )
        header = (
            f"{'clients':>8} {'target':<11}{'uploads/s':>10}{'p50 s':>8}{'p95 s':>8}"
            f"{'max s':>8}{'5xx':>5}{'429':>5}  {'svc RSS MiB':>11}  answers"
        )
        rows: list[str] = []
        accepted: list[uuid.UUID] = []
        total_5xx = 0
        for level in levels:
            for target, port in (
                ("bare sink", fronts["bare sink"]),
                ("svc_upload", fronts["svc_upload"]),
            ):
                url = f"http://127.0.0.1:{port}{TUS_PATH}"
                tokens = [mint_token(f"load-{level}-{target[:4]}-{i}") for i in range(level)]
                spy = None
                if target == "svc_upload":
                    reset_peak(upload_pid)
                    before = (
                        cpu_s(upload_pid),
                        children_cpu_s(upload_pid),
                        cpu_s(transcode_pid) + children_cpu_s(transcode_pid),
                        await xacts(engine, db_name),
                    )
                    if args.profile:
                        spy = start_profile(upload_pid, profiles / f"profile-{level}.txt")
                started = time.perf_counter()
                outcomes = await tus_upload_many(url, tokens, body, timeout_s=900)
                wall = time.perf_counter() - started
                if target == "svc_upload":
                    after = (
                        cpu_s(upload_pid),
                        children_cpu_s(upload_pid),
                        cpu_s(transcode_pid) + children_cpu_s(transcode_pid),
                        await xacts(engine, db_name),
                    )
                    used = [b - a for a, b in zip(before, after, strict=True)]
                    print(
                        f"  during the level ({wall:.1f} s): svc_upload {used[0]:.1f} CPU s, "
                        f"its checks (ffprobe/ffmpeg) {used[1]:.1f} CPU s, svc_transcode "
                        f"{used[2]:.1f} CPU s; {used[3]:.0f} database transactions "
                        f"({used[3] / level:.1f} per upload)",
                        flush=True,
                    )
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        await asyncio.to_thread(spy.wait, 30)
                        summarize_profile(profiles / f"profile-{level}.txt")
                ok = [o for o in outcomes if o.status == 204]
                lat = sorted(o.seconds for o in ok)
                n5xx = sum(1 for o in outcomes if o.status >= 500 or o.status == 0)
                n429 = sum(1 for o in outcomes if o.status == 429)
                rss = "-"
                if target == "svc_upload":
                    total_5xx += n5xx
                    rss = f"{vm_kb(upload_pid, 'VmHWM') / 1024:.0f}"
                    accepted += [uuid.UUID(o.video_id) for o in ok if o.video_id]
                    for o in outcomes:
                        if o.status != 204:
                            print(f"  refused: {o.status} {o.error[:200]}", flush=True)
                row = (
                    f"{level:>8} {target:<11}{len(ok) / wall:>10.1f}{percentile(lat, 50):>8.2f}"
                    f"{percentile(lat, 95):>8.2f}{(lat[-1] if lat else float('nan')):>8.2f}"
                    f"{n5xx:>5}{n429:>5}  {rss:>11}  {describe(outcomes)}"
                )
                rows.append(row)
                print(row, flush=True)

        budget = 0.0 if args.skip_publish else args.publish_timeout or 3.0 * len(accepted) + 120
        print(f"\nwaiting for {len(accepted)} accepted uploads to publish (<= {budget:.0f} s) ...")
        started = time.perf_counter()
        counts: Counter[str] = Counter()
        while True:
            async with engine.connect() as conn:
                result = await conn.execute(
                    select(Video.status, func.count())
                    .where(Video.id.in_(accepted))
                    .group_by(Video.status)
                )
                counts = Counter({status: n for status, n in result.all()})
            done = counts[VideoStatus.PUBLISHED.value] + counts[VideoStatus.FAILED.value]
            if done >= len(accepted) or time.perf_counter() - started > budget:
                break
            await asyncio.sleep(2)
        waited = time.perf_counter() - started
        published = counts[VideoStatus.PUBLISHED.value]

        print(f"\n{header}")
        for row in rows:
            print(row)
        print(
            f"\npublished {published} of {len(accepted)} accepted "
            f"({dict(counts)}), last one {waited:.0f} s after the last level"
        )
        goal = total_5xx == 0 and published == len(accepted)
        verdict = "ok" if goal else "MISSED"
        print(f"goal (0 refused with 5xx, every accepted upload published): {verdict}")
    finally:
        if engine is not None:
            await engine.dispose()
        if sink is not None:
            await sink.cleanup()
        for proc in reversed(procs):
            proc.stop(grace=5)
        broker.stop(5.0)
        scanner.stop(5.0)
        await drop_database(db)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
