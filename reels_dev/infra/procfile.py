"""`python -m reels_dev.infra.procfile start -f Procfile NAME...`: honcho, with a stop
timeout that fits the services.

honcho SIGKILLs whatever still runs 5 s after the first process stopped. A service
drains in-flight work for up to its grace period (``REELS_SHUTDOWN_GRACE_SECONDS``,
10 s) and then flushes its telemetry (about 2 s at most, reels.telemetry), so with 5 s
a service that is still finishing a job would be killed mid-way. Here honcho waits
for the grace period plus that flush and a margin before it kills anything.
"""

from __future__ import annotations

import sys

import honcho.manager
from honcho.command import main as honcho_main

from reels.config import server_settings

TELEMETRY_FLUSH_S = 2.0  # reels.telemetry.shutdown_telemetry's bound
MARGIN_S = 3.0


def kill_wait_seconds() -> float:
    return server_settings("upload").grace_seconds + TELEMETRY_FLUSH_S + MARGIN_S


def main() -> None:
    honcho.manager.KILL_WAIT = kill_wait_seconds()  # type: ignore[attr-defined]
    sys.argv[0] = "honcho"
    sys.exit(honcho_main())


if __name__ == "__main__":
    main()
