"""Run ClamAV's clamd (Debian ``clamav-daemon``) offline on the project's signatures.

The official signature database needs the internet (freshclam); clamd here loads only
``safety/signatures/`` (hash ``.hdb``, pattern ``.ndb``, logical ``.ldb`` and YARA
``.yar`` rules; safety/signatures/README.md), so it starts in about a second.

ClamAV reports a file over its scan limits as CLEAN unless told otherwise: every
limit is set above the largest upload (``REELS_UPLOAD_MAX_BYTES``) and
``AlertExceedsMax yes`` turns "too big / too deep / too many files" into a
``Heuristics.Limits.Exceeded.*`` detection, so such a file is never clean.

clamd listens on TCP ``127.0.0.1:REELS_CLAMD_PORT`` (default 3310) and scans paths it
is sent (svc_upload.scan uses ``SCAN <path>``), so it runs as the same user as
svc_upload. ``python -m reels_dev.infra.clamd`` writes the config under
``var/clamd/`` and replaces itself with clamd (for the Procfile).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from reels.config import var_dir
from reels_dev.infra.process import REPO_ROOT, ManagedProcess, port_open
from reels_dev.settings import InfraSettings

HOST = "127.0.0.1"
SIGNATURES = REPO_ROOT / "safety" / "signatures"
LIMIT_MB = 4000
"""Every size limit (MB): above any REELS_UPLOAD_MAX_BYTES we ship (500 MB default);
clamd's own ceiling for these is 4 GB."""


def clamd_bin() -> str:
    found = shutil.which("clamd") or ("/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else "")
    if not found:
        raise FileNotFoundError(
            "clamd not found: run `make setup` (apt-get install clamav clamav-daemon)"
        )
    return found


def render_config(run_dir: Path, port: int, signatures: Path = SIGNATURES) -> Path:
    """Write ``clamd.conf`` for a foreground clamd on ``HOST:port``; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    lines = [
        "Foreground yes",
        f"TCPSocket {port}",
        f"TCPAddr {HOST}",
        f"DatabaseDirectory {signatures}",
        f"TemporaryDirectory {tmp}",
        f"PidFile {run_dir / 'clamd.pid'}",
        "LogTime yes",
        "LogVerbose no",
        # Limits above any upload, and over-limit files reported, never "clean".
        f"MaxScanSize {LIMIT_MB}M",
        f"MaxFileSize {LIMIT_MB}M",
        f"StreamMaxLength {LIMIT_MB}M",
        "MaxRecursion 17",
        "MaxFiles 10000",
        "MaxScanTime 300000",
        "AlertExceedsMax yes",
        "AlertEncrypted yes",
        "AlertBrokenExecutables yes",
        # No official bytecode database here (offline).
        "Bytecode no",
        "SelfCheck 600",
        "MaxThreads 4",
        "MaxQueue 200",
        "ReadTimeout 300",
        "CommandReadTimeout 30",
    ]
    conf = run_dir / "clamd.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def clamd_process(
    port: int, *, run_dir: Path | None = None, log_dir: Path | None = None
) -> ManagedProcess:
    """A clamd on ``HOST:port`` (not started): ``.start()`` waits until it listens."""
    conf = render_config(run_dir or var_dir() / "clamd" / str(port), port)
    return ManagedProcess(
        f"clamd-{port}",
        [clamd_bin(), f"--config-file={conf}"],
        log_dir=log_dir,
        ready=lambda: port_open(HOST, port),
        ready_timeout=60.0,
    )


def main() -> None:
    port = InfraSettings.from_env().clamd_port
    conf = render_config(var_dir() / "clamd", port)
    binary = clamd_bin()
    sys.stdout.flush()
    os.execv(binary, [binary, f"--config-file={conf}"])


if __name__ == "__main__":
    main()
