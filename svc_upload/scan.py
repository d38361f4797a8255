"""Malware scanning of uploads with ClamAV (clamd), before anything is published.

Where it sits: :meth:`svc_upload.uploads.UploadCore.complete` scans the staged file
after the size and sha256 checks and before the probe, so nothing reaches the object
store's ``originals/``, the transcoder or a viewer unscanned:

* **clean** — the upload goes on as before (probe, ``video.uploaded``);
* **infected** — the bytes are moved to ``quarantine/<video_id>/original<ext>`` (a
  prefix nothing signs or serves), the video is ``failed`` with the reason
  ``rejected by the malware scan (<signature>)``, and a ``video.rejected`` event goes
  out through the outbox in the same transaction. The client's complete call answers
  INVALID_ARGUMENT with that reason;
* **scanner unavailable** (clamd down, timed out, or answering ERROR) — the upload is
  completed (probe, original stored) but held: the video stays ``processing`` at stage
  ``malware_scan`` and a ``scan_jobs`` row keeps its ``video.uploaded`` event, which
  only a clean scan releases to the outbox. :class:`ScanRetrier` retries with
  exponential backoff (1 s doubling to ``REELS_MALWARE_SCAN_MAX_BACKOFF_S``); the
  row's ``attempts``, ``last_error`` and ``next_attempt_at`` are the job state an SRE
  reads (``make status`` does not show it yet; SQL does). A video is never published
  unscanned.

The scan is ``SCAN <path>`` (clamd reads the file itself, so it must see the staging
directory and the object store: same host or a shared volume) through ``aioclamd``
(PyPI, MIT). INSTREAM would work across hosts, but aioclamd streams 1 KiB per thread
hop, about 100x slower on a 500 MB file.

ClamAV answers CLEAN for a file over its size limits unless told otherwise; the
project's ``clamd.conf`` (reels_dev/infra/clamd.py) sets every limit above
``REELS_UPLOAD_MAX_BYTES`` and ``AlertExceedsMax yes``, so an oversized or too deeply
nested file is ``Heuristics.Limits.Exceeded.*`` (infected), never clean. The
signatures are the project's own (``safety/signatures/``, README there): the official
database needs the internet.

After clamd says clean, the container's structure is checked too
(reels.media.container): a media file with *anything* but zero padding after the end
of its MP4/MOV, WebM/Matroska or AVI structure is infected as
``Reels.Polyglot.AppendedData.<Kind>``, with a message saying how many bytes, where,
and what they look like.

Live-stream recordings (svc_upload.recordings) are our own encoder's output and are
not scanned.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from aioclamd import ClamdAsyncClient, ClamdError

from reels.media.container import appended_data

log = logging.getLogger(__name__)

STAGE = "malware_scan"
QUARANTINE_PREFIX = "quarantine/"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One scan's answer: ``infected`` with ``signature``; or ``error`` (unavailable)."""

    infected: bool = False
    signature: str = ""
    error: str = ""
    detail: str = ""  # for a person: what was found where (appended-data checks)

    @property
    def clean(self) -> bool:
        return not self.infected and not self.error

    @property
    def reason(self) -> str:
        """What the creator is told for an infected file."""
        if self.detail:
            return f"rejected by the malware scan ({self.signature}): {self.detail}"
        return f"rejected by the malware scan ({self.signature})"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` of clamd's TCP socket; ValueError says what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"malware scanner address {address!r} is not host:port")
    return host, int(port)


class MalwareScanner:
    """clamd over TCP (``REELS_CLAMD_ADDRESS``): :meth:`scan` never raises for the
    scanner's own faults; they are a Verdict with ``error`` (the caller holds the
    upload and retries)."""

    def __init__(self, address: str, timeout_s: float) -> None:
        host, port = parse_address(address)
        self.address = address
        self.client = ClamdAsyncClient(host, port, timeout=timeout_s)

    async def scan(self, path: Path) -> Verdict:
        """Scan the file at ``path`` (absolute, readable by clamd)."""
        if not path.is_absolute():
            raise ValueError(f"clamd needs an absolute path, not {path}")
        target = str(path)
        try:
            answer = await self.client.scan(target)
        except (ClamdError, OSError, TimeoutError) as exc:
            return self._unavailable(f"{type(exc).__name__}: {exc}")
        status, name = answer.get(target, (None, None))
        if status == "FOUND":
            return Verdict(infected=True, signature=str(name or "unknown"))
        if status == "OK":
            return await self._structure(path)
        # "ERROR" (e.g. clamd could not read the file) or an answer for another path.
        return self._unavailable(f"clamd answered {answer!r}")

    async def _structure(self, path: Path) -> Verdict:
        """After clamd's OK: data appended after the end of the media container
        (reels.media.container) is infected, whatever it is; ClamAV only knows the
        payloads it has signatures for."""
        try:
            found = await asyncio.to_thread(appended_data, path)
        except OSError as exc:
            return self._unavailable(f"reading {path.name} for appended data: {exc}")
        if found is None:
            return Verdict()
        return Verdict(infected=True, signature=found.signature, detail=found.message)

    def _unavailable(self, why: str) -> Verdict:
        log.warning("malware scan unavailable", extra={"fields": {"why": why}})
        return Verdict(error=why)

    async def ping(self) -> bool:
        try:
            return (await self.client.ping()) == "PONG"
        except (ClamdError, OSError, TimeoutError):
            return False


def backoff_s(attempts: int, cap_s: float) -> float:
    """Seconds before retry number ``attempts`` + 1: 1, 2, 4... capped at ``cap_s``."""
    return float(min(cap_s, 2 ** max(0, attempts - 1)))


async def wait_ready(scanner: MalwareScanner, within_s: float) -> bool:
    """Poll clamd's PING until it answers or ``within_s`` passes (tests, start-up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if await scanner.ping():
            return True
        await asyncio.sleep(0.2)
    return False
