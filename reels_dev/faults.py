"""Faults on demand, from the command line (issue 14; flags: :mod:`reels.faults`).

::

    python -m reels_dev.faults list
    python -m reels_dev.faults set triton --error-rate 1          # Triton "down"
    python -m reels_dev.faults set stream --delay-ms 400 --for 60  # svc_stream slow, 1 min
    python -m reels_dev.faults set disk --error-rate 1             # object store: ENOSPC
    python -m reels_dev.faults clear [TARGET]
    python -m reels_dev.faults kill rank        # SIGKILL; supervisor starts it again
    python -m reels_dev.faults pause kafka      # SIGSTOP (a hung process), until:
    python -m reels_dev.faults resume kafka     # SIGCONT

Flags go to ``<var>/run/faults.json`` (``REELS_VAR_DIR``), which every process of
``make up`` reads within half a second. ``kill``/``pause``/``resume`` signal a Procfile
process through supervisord (``var/run/supervisor.sock``, or ``--run-dir``), so its
restart shows in ``make status``.
"""

from __future__ import annotations

import argparse
import time
import xmlrpc.client
from pathlib import Path

from reels import faults
from reels.config import var_dir
from reels_dev.infra.procfile import _rpc, processes

SIGNALS = {"kill": "KILL", "pause": "STOP", "resume": "CONT"}


def signal_process(name: str, signal: str, run_dir: Path | None = None) -> int:
    """Send ``signal`` (KILL, STOP, CONT...) to Procfile process ``name`` ("rank",
    "kafka") under supervisord; returns the pid signalled. Raises SystemExit with the
    reason when supervisord is not running or knows no such process."""
    run_dir = run_dir or var_dir() / "run"
    procs = processes(run_dir, run_dir.parent / "log") or []
    match = [p for p in procs if name in (p.name, f"{p.group}:{p.name}")]
    if not match:
        known = ", ".join(p.name for p in procs) or "none: is the mesh up (make up)?"
        raise SystemExit(f"faults: no process {name!r} under supervisord ({known})")
    proc = match[0]
    if proc.pid == 0:
        raise SystemExit(f"faults: {proc.name} is not running ({proc.state})")
    try:
        _rpc(run_dir).supervisor.signalProcess(f"{proc.group}:{proc.name}", signal)
    except xmlrpc.client.Fault as exc:
        raise SystemExit(f"faults: supervisord refused: {exc.faultString}") from exc
    return proc.pid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reels_dev.faults", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the flags in force")
    put = sub.add_parser("set", help="add latency or errors to a dependency")
    put.add_argument("target", choices=faults.TARGETS)
    put.add_argument("--delay-ms", type=int, default=0, help="added before each call")
    put.add_argument("--error-rate", type=float, default=0.0, help="share of calls failing, 0..1")
    put.add_argument("--for", dest="seconds", type=float, default=0.0, help="expire after (s)")
    rm = sub.add_parser("clear", help="remove one flag, or all")
    rm.add_argument("target", nargs="?", choices=faults.TARGETS)
    for cmd in SIGNALS:
        p = sub.add_parser(cmd, help=f"{SIGNALS[cmd]} a process of make up")
        p.add_argument("name")
        p.add_argument("--run-dir", type=Path)
    args = parser.parse_args(argv)

    if args.cmd == "set":
        expires = time.time() + args.seconds if args.seconds else 0.0
        try:
            faults.set_fault(faults.Fault(args.target, args.delay_ms, args.error_rate, expires))
        except ValueError as exc:
            raise SystemExit(f"faults: {exc}") from exc
    elif args.cmd == "clear":
        faults.clear(args.target)
    elif args.cmd in SIGNALS:
        pid = signal_process(args.name, SIGNALS[args.cmd], args.run_dir)
        print(f"{args.name}: SIG{SIGNALS[args.cmd]} sent to pid {pid}")
        return
    now = time.time()
    flags = faults.read()
    if not flags:
        print(f"no faults ({faults.faults_path()})")
    for f in flags.values():
        left = "" if not f.expires_at else f" for {max(0.0, f.expires_at - now):.0f} s more"
        state = "" if f.live(now) else " (expired)"
        print(f"{f.target:8s} delay {f.delay_ms} ms, error rate {f.error_rate:g}{left}{state}")


if __name__ == "__main__":
    main()
