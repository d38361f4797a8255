"""Faults on demand, from the command line (issue 14; flags: :mod:`reels.faults`).

::

    python -m reels_dev.faults list
    python -m reels_dev.faults set triton --error-rate 1          # Triton "down"
    python -m reels_dev.faults set stream --delay-ms 400 --for 60  # svc_stream slow, 1 min
    python -m reels_dev.faults set disk --error-rate 1             # object store: ENOSPC
    python -m reels_dev.faults clear [TARGET]
    python -m reels_dev.faults kill svc_rank    # SIGKILL (or "rank"); supervisor restarts it
    python -m reels_dev.faults pause kafka      # SIGSTOP (a hung process), until:
    python -m reels_dev.faults resume kafka     # SIGCONT

Flags go to ``<var>/run/faults.json`` (``REELS_VAR_DIR``), which every process of
``make up`` reads within half a second. Refused with exit status 2 and the allowed range:
``--delay-ms`` outside 0..60000 (:data:`reels.faults.MAX_DELAY_MS`), ``--error-rate``
outside 0..1, NaN or inf anywhere, ``--for`` not > 0 (leave it out: no expiry).

``kill``/``pause``/``resume`` signal a Procfile process through supervisord
(``var/run/supervisor.sock``, or ``--run-dir``), so its restart shows in ``make status``.
A service goes by its Procfile name (``rank``) or the name ``make status`` shows
(``svc_rank``). Exit status 2 for a name supervisord (or, when it is not running, the
Procfile) does not know, listing the known ones; 1 when supervisord is not running or
refuses the signal.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import xmlrpc.client
from pathlib import Path

from reels import faults
from reels.config import REPO_ROOT, SERVICE_NAMES, var_dir
from reels_dev.infra.procfile import _rpc, parse_procfile, processes

SIGNALS = {"kill": "KILL", "pause": "STOP", "resume": "CONT"}
USAGE_EXIT = 2  # argparse's status for bad arguments; 1 for a mesh that is not there


class UnknownProcess(ValueError):
    """A kill/pause/resume name that is no process of the mesh (exit status 2)."""


def _aliases(program: str) -> tuple[str, ...]:
    """The names a program answers to: its Procfile name, and for a service the name
    ``make status`` shows (``rank`` and ``svc_rank``)."""
    return (program, f"svc_{program}") if program in SERVICE_NAMES else (program,)


def _known(programs: list[str]) -> str:
    return ", ".join(" or ".join(_aliases(p)) for p in programs) or "none"


def resolve(name: str, programs: list[str]) -> str:
    """The program of ``programs`` that ``name`` means: its Procfile name, ``svc_<name>``
    for a service, or ``group:name``. Raises :class:`UnknownProcess` listing the known."""
    for program in programs:
        if name in _aliases(program):
            return program
    program = name.partition(":")[2]
    if program in programs:
        return program
    raise UnknownProcess(f"no process {name!r}; known: {_known(programs)}")


def signal_process(name: str, signal: str, run_dir: Path | None = None) -> int:
    """Send ``signal`` (KILL, STOP, CONT...) to the process ``name`` ("rank" or
    "svc_rank", "kafka") under supervisord; returns the pid signalled. Raises
    :class:`UnknownProcess` for a name neither supervisord nor (when it is not running)
    the Procfile knows, SystemExit with the reason when supervisord is not running, the
    process is stopped, or supervisord refuses."""
    run_dir = run_dir or var_dir() / "run"
    procs = processes(run_dir, run_dir.parent / "log")
    if procs is None:
        try:
            resolve(name, [n for _, n, _ in parse_procfile(REPO_ROOT / "Procfile")])
        except UnknownProcess as exc:
            raise UnknownProcess(f"{exc} (the Procfile's: supervisord is not running)") from None
        raise SystemExit(
            f"faults: supervisord is not running ({run_dir / 'supervisor.sock'}): make up"
        )
    proc = {p.name: p for p in procs}[resolve(name, [p.name for p in procs])]
    if proc.pid == 0:
        raise SystemExit(f"faults: {proc.name} is not running ({proc.state})")
    try:
        _rpc(run_dir).supervisor.signalProcess(f"{proc.group}:{proc.name}", signal)
    except xmlrpc.client.Fault as exc:
        raise SystemExit(f"faults: supervisord refused: {exc.faultString}") from exc
    return proc.pid


def _delay_ms(text: str) -> int:
    """argparse type of --delay-ms: a whole number of ms in 0..MAX_DELAY_MS."""
    allowed = f"allowed: 0..{faults.MAX_DELAY_MS} ms"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of ms ({allowed})"
        ) from None
    if not 0 <= value <= faults.MAX_DELAY_MS:
        hint = "; longer is a hang: use pause" if value > 0 else ""
        raise argparse.ArgumentTypeError(f"{text} ms is out of range ({allowed}{hint})")
    return value


def _error_rate(text: str) -> float:
    """argparse type of --error-rate: the share of calls failing, 0..1."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text!r} is not a share of calls (allowed: 0..1)")
    return value


MAX_FOR_S = 7 * 86400
"""The longest ``--for`` (s): a week; a flag meant to stay is set without ``--for``."""


def _seconds(text: str) -> float:
    """argparse type of --for: seconds until the flag expires, finite and > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_FOR_S):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: must be > 0 and <= {MAX_FOR_S} seconds (a week; "
            "leave --for out: no expiry)"
        )
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reels_dev.faults", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the flags in force")
    put = sub.add_parser("set", help="add latency or errors to a dependency")
    put.add_argument("target", choices=faults.TARGETS)
    put.add_argument(
        "--delay-ms",
        type=_delay_ms,
        default=0,
        help=f"added before each call, 0..{faults.MAX_DELAY_MS} ms",
    )
    put.add_argument(
        "--error-rate", type=_error_rate, default=0.0, help="share of calls failing, 0..1"
    )
    put.add_argument(
        "--for", dest="seconds", type=_seconds, default=None, help="expire after (s, > 0)"
    )
    rm = sub.add_parser("clear", help="remove one flag, or all")
    rm.add_argument("target", nargs="?", choices=faults.TARGETS)
    for cmd in SIGNALS:
        p = sub.add_parser(cmd, help=f"{SIGNALS[cmd]} a process of make up")
        p.add_argument("name", help="Procfile name (rank, kafka) or svc_NAME (svc_rank)")
        p.add_argument("--run-dir", type=Path)
    args = parser.parse_args(argv)

    if args.cmd == "set":
        if args.delay_ms == 0 and args.error_rate == 0.0:
            parser.error("set with neither --delay-ms nor --error-rate does nothing; give one")
        expires = time.time() + args.seconds if args.seconds is not None else 0.0
        try:
            faults.set_fault(faults.Fault(args.target, args.delay_ms, args.error_rate, expires))
        except ValueError as exc:
            parser.error(str(exc))
    elif args.cmd == "clear":
        faults.clear(args.target)
    elif args.cmd in SIGNALS:
        try:
            pid = signal_process(args.name, SIGNALS[args.cmd], args.run_dir)
        except UnknownProcess as exc:
            print(f"faults: {exc}", file=sys.stderr)
            raise SystemExit(USAGE_EXIT) from exc
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
