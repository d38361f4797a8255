"""`make up`'s process manager brings a crashed process back and leaves the rest alone.

Real processes from the real Procfile (the OTLP sink and the journaled Kafka broker) run
under supervisord with the config scripts/up.sh uses (reels_dev.infra.procfile), on free
ports. The broker is SIGKILLed; it must come back by itself (RUNNING, a new pid, one
restart, answering Kafka Metadata) while the sink keeps its pid. The time to recover is
printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reels_dev.infra.process import REPO_ROOT, free_port, port_open
from reels_dev.infra.procfile import Proc, processes, write_config
from reels_dev.infra.tansu import kafka_metadata_ok
from tests.fixtures.infra import _test_database_url

HOST = "127.0.0.1"


class Mesh:
    def __init__(self, run_dir: Path, log_dir: Path, env: dict[str, str]) -> None:
        self.run_dir, self.log_dir, self.env = run_dir, log_dir, env
        self.conf = write_config(REPO_ROOT / "Procfile", ["otlp", "kafka"], run_dir, log_dir)

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO_ROOT,
        )
        return out.stdout + out.stderr

    def procs(self) -> dict[str, Proc]:
        return {p.name: p for p in processes(self.run_dir, self.log_dir) or []}

    def wait(self, check: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return
            time.sleep(0.05)
        log = (self.log_dir / "supervisord.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"{what} after {timeout:.0f} s; supervisord.log:\n{log}")


@pytest.fixture
def mesh() -> Iterator[Mesh]:
    import asyncio

    from reels.db.engine import create_database, drop_database

    base = Path(tempfile.mkdtemp(prefix="sv-"))  # short: unix socket paths are limited
    journal = _test_database_url()
    asyncio.run(create_database(journal))
    env = {
        **os.environ,
        "REELS_KAFKA_PORT": str(free_port()),
        "REELS_OTLP_PORT": str(free_port()),
        "REELS_OTLP_FILE": str(base / "otlp.jsonl"),
        "REELS_KAFKA_JOURNAL_URL": journal,
    }
    m = Mesh(base / "run", base / "log", env)
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(m.conf)],
        env=env,
        cwd=REPO_ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        m.wait(lambda: processes(m.run_dir, m.log_dir) is not None, 20, "supervisord not up")
        yield m
    finally:
        m.ctl("stop", "all")
        supervisord.send_signal(signal.SIGTERM)
        try:
            supervisord.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(supervisord.pid, signal.SIGKILL)
            supervisord.wait(5)
        asyncio.run(drop_database(journal))
        shutil.rmtree(base, ignore_errors=True)


def test_killed_process_comes_back_and_the_others_keep_running(mesh: Mesh) -> None:
    kafka_port = int(mesh.env["REELS_KAFKA_PORT"])
    otlp_port = int(mesh.env["REELS_OTLP_PORT"])
    print(mesh.ctl("start", "infra:*"))
    mesh.wait(
        lambda: (
            all(p.state == "RUNNING" for p in mesh.procs().values())
            and port_open(HOST, otlp_port)
            and kafka_metadata_ok(HOST, kafka_port)
        ),
        60,
        "otlp and kafka not running",
    )
    before = mesh.procs()
    assert {n: p.restarts for n, p in before.items()} == {"otlp": 0, "kafka": 0}

    os.kill(before["kafka"].pid, signal.SIGKILL)
    killed = time.monotonic()
    mesh.wait(
        lambda: (
            mesh.procs()["kafka"].pid != before["kafka"].pid and kafka_metadata_ok(HOST, kafka_port)
        ),
        60,
        "kafka did not come back",
    )
    answering = time.monotonic() - killed
    mesh.wait(lambda: mesh.procs()["kafka"].state == "RUNNING", 30, "kafka not RUNNING")
    running = time.monotonic() - killed
    print(
        f"\nkafka after kill -9: answering Metadata in {answering:.2f} s, "
        f"RUNNING (past startsecs) in {running:.2f} s"
    )

    after = mesh.procs()
    assert after["kafka"].restarts == 1
    assert after["otlp"].pid == before["otlp"].pid
    assert after["otlp"].state == "RUNNING" and after["otlp"].restarts == 0
    assert port_open(HOST, otlp_port)
