"""The fault CLI as a user runs it (``python -m reels_dev.faults``, a subprocess: real argv
parsing, exit status, stderr): out-of-range flags are refused with the allowed range and
nothing is written; kill/pause/resume take a service's Procfile name or the ``svc_`` name
``make status`` shows, against a real supervisord with the config ``make up`` uses."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from reels import faults
from reels_dev.faults import main
from reels_dev.infra.process import REPO_ROOT
from reels_dev.infra.procfile import Proc, _rpc, processes, render_config


def cli(var: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reels_dev.faults", *argv],
        env={**os.environ, "REELS_VAR_DIR": str(var)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--delay-ms", "99999999999999999999"], "--delay-ms: 99999999999999999999 ms"),
        (["--delay-ms", "-5"], "--delay-ms: -5 ms is out of range (allowed: 0..60000 ms"),
        (["--error-rate", "nan"], "--error-rate: 'nan' is not a share of calls (allowed: 0..1)"),
        (["--for", "-10"], "--for: '-10' is not a duration: must be > 0 and <= 604800 seconds"),
    ],
)
def test_out_of_range_flag_is_refused_with_the_range_and_nothing_written(
    tmp_path: Path, argv: list[str], says: str
) -> None:
    done = cli(tmp_path, "set", "redis", *argv)
    assert done.returncode == 2, done
    assert says in done.stderr
    assert not (tmp_path / "run" / "faults.json").exists()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--delay-ms", str(faults.MAX_DELAY_MS + 1)], "allowed: 0..60000 ms"),
        (["--delay-ms", "nan"], "allowed: 0..60000 ms"),
        (["--delay-ms", "inf"], "allowed: 0..60000 ms"),
        (["--delay-ms", "1.5"], "allowed: 0..60000 ms"),
        (["--error-rate", "1.5"], "allowed: 0..1"),
        (["--error-rate", "-0.1"], "allowed: 0..1"),
        (["--error-rate", "inf"], "allowed: 0..1"),
        (["--for", "0"], "must be > 0 and <="),
        (["--for", "nan"], "must be > 0 and <="),
        (["--for", "inf"], "must be > 0 and <="),
        (["--for", "1e300", "--error-rate", "1"], "must be > 0 and <="),
        (["--for", "604801", "--error-rate", "1"], "must be > 0 and <="),
        ([], "does nothing"),
        (["--delay-ms", "0", "--error-rate", "0"], "does nothing"),
    ],
)
def test_every_bound_is_checked_by_the_parser(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    """The same parser in-process (a subprocess per case would cost ~0.15 s each)."""
    monkeypatch.setenv("REELS_VAR_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as refused:
        main(["set", "redis", *argv])
    assert refused.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "run" / "faults.json").exists()


def test_largest_delay_with_expiry_is_accepted_and_listed(tmp_path: Path) -> None:
    done = cli(tmp_path, "set", "redis", "--delay-ms", "60000", "--for", "30")
    assert done.returncode == 0, done
    assert "redis    delay 60000 ms, error rate 0 for 30 s more" in done.stdout
    assert "expired" not in done.stdout


def test_hand_edited_flags_are_listed_clamped(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "faults.json").write_text(
        '{"redis": {"delay_ms": 1e20, "error_rate": 7, "expires_at": 0},'
        ' "triton": {"delay_ms": -3, "error_rate": NaN, "expires_at": 0},'
        ' "stream": "slow"}'
    )
    out = cli(tmp_path, "list").stdout
    assert "redis    delay 60000 ms, error rate 1" in out
    assert "triton   delay 0 ms, error rate 0" in out
    assert "stream" not in out


# ------------------------------------------------------------------ kill/pause/resume


@pytest.fixture(scope="module")
def supervised() -> Iterator[Path]:
    """A real supervisord (``make up``'s config, reels_dev.infra.procfile) running one
    program named like a service, ``rank`` (a ``sleep``: only its name and pid matter
    here). Yields the run dir the CLI's ``--run-dir`` takes."""
    base = Path(tempfile.mkdtemp(prefix="sv-"))  # short: unix socket paths are limited
    run_dir, log_dir = base / "run", base / "log"
    run_dir.mkdir()
    log_dir.mkdir()
    conf = run_dir / "supervisord.conf"
    conf.write_text(render_config([("apps", "rank", "exec sleep 600")], run_dir, log_dir))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(conf)],
        cwd=REPO_ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while processes(run_dir, log_dir) is None:
            assert time.monotonic() < deadline, "supervisord did not come up"
            time.sleep(0.05)
        _rpc(run_dir).supervisor.startProcess("apps:rank", False)  # no wait for STARTSECS
        while not _rank(run_dir).pid:
            assert time.monotonic() < deadline, "rank did not start"
            time.sleep(0.02)
        yield run_dir
    finally:
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            _rpc(run_dir).supervisor.stopAllProcesses(True)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(5)
        shutil.rmtree(base, ignore_errors=True)


def _rank(run_dir: Path) -> Proc:
    return {p.name: p for p in processes(run_dir, run_dir.parent / "log") or []}["rank"]


def _state(pid: int) -> str:
    """The kernel's process state letter: T stopped, S sleeping, "" gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return ""
    return next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))


def _wait_state(pid: int, states: tuple[str, ...]) -> str:
    deadline = time.monotonic() + 5
    while (state := _state(pid)) not in states and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


def test_unknown_process_is_refused_listing_the_known_names(
    tmp_path: Path, supervised: Path
) -> None:
    pid = _rank(supervised).pid
    done = cli(tmp_path, "kill", "svc_ranker", "--run-dir", str(supervised))
    assert done.returncode == 2, done
    assert "no process 'svc_ranker'; known: rank or svc_rank" in done.stderr
    assert _rank(supervised).pid == pid and _state(pid) in ("S", "R")  # nothing signalled


def test_processes_answer_to_both_the_procfile_and_the_status_name(
    tmp_path: Path, supervised: Path
) -> None:
    pid = _rank(supervised).pid
    assert pid

    done = cli(tmp_path, "pause", "svc_rank", "--run-dir", str(supervised))
    assert done.returncode == 0, done
    assert done.stdout.strip() == f"svc_rank: SIGSTOP sent to pid {pid}"
    assert _wait_state(pid, ("T",)) == "T"

    done = cli(tmp_path, "resume", "rank", "--run-dir", str(supervised))
    assert done.returncode == 0, done
    assert _wait_state(pid, ("S", "R")) in ("S", "R")

    done = cli(tmp_path, "kill", "svc_rank", "--run-dir", str(supervised))
    assert done.returncode == 0, done
    assert done.stdout.strip() == f"svc_rank: SIGKILL sent to pid {pid}"
    assert _wait_state(pid, ("", "Z")) in ("", "Z")  # gone (supervisord reaps it, then restarts)


def test_without_supervisord_names_are_checked_against_the_procfile(tmp_path: Path) -> None:
    done = cli(tmp_path, "kill", "mongodb", "--run-dir", str(tmp_path))
    assert done.returncode == 2, done
    assert "no process 'mongodb'; known: " in done.stderr
    assert "rank or svc_rank" in done.stderr and "kafka" in done.stderr

    done = cli(tmp_path, "kill", "svc_rank", "--run-dir", str(tmp_path))
    assert done.returncode == 1, done
    assert "supervisord is not running" in done.stderr
