"""Running ffmpeg/ffprobe as asyncio subprocesses, and the two ways a run can fail.

Every media step shells out to ffmpeg. Doing that through one helper guarantees three
things the worker depends on: the event loop is never blocked (the worker also serves
gRPC health and consumes Kafka), a cancelled job never leaves an orphan ffmpeg burning
the two cores, and a failure always carries the tail of ffmpeg's stderr so an operator
can see *why* without re-running the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from reels.config import platform

FFMPEG = platform().ffmpeg
FFPROBE = platform().ffprobe

STDERR_TAIL_LINES = 40


class UnusableMedia(Exception):
    """The input itself is the problem: retrying will never help (dead-letter the job).

    `reason` is written for the person who uploaded the file, e.g. "no video stream".
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TranscodeError(Exception):
    """ffmpeg failed for a reason outside the input (crash, kill, full disk).

    `transient=True` tells the job runner to retry with backoff; `stderr_tail` is the
    evidence kept for the failed-job view.
    """

    def __init__(self, message: str, *, transient: bool = True, stderr_tail: str = "") -> None:
        full = f"{message}\n--- ffmpeg stderr (tail) ---\n{stderr_tail}" if stderr_tail else message
        super().__init__(full)
        self.transient = transient
        self.stderr_tail = stderr_tail


# stderr lines that blame the input rather than the machine.
_INPUT_ERROR = re.compile(
    r"corrupt input packet|error while decoding|invalid data found|partial file|"
    r"invalid nal unit|missing picture|moov atom not found|decode_slice|"
    r"concealing \d+ .* errors|no frame!|corrupt decoded frame",
    re.IGNORECASE,
)
# ... and lines that blame the machine: these come and go, so a retry may succeed.
_MACHINE_ERROR = re.compile(
    r"no space left|cannot allocate memory|out of memory|read-only file system|"
    r"permission denied|input/output error|too many open files|resource temporarily|"
    r"received signal|stale file handle|connection (?:reset|refused)|timed out",
    re.IGNORECASE,
)
# ffmpeg traps SIGINT/SIGTERM and exits 255 ("Exiting normally, received signal 15"):
# someone stopped it, the input is not to blame.
_SIGNALLED_EXIT = 255


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"


def ffmpeg_failure(returncode: int, stderr_tail: str, what: str) -> Exception:
    """What a failed ffmpeg run means, as the exception the job runner routes on.

    * a failed run whose stderr blames the input (decode errors) → `UnusableMedia`
      "corrupt" (a run that finished is judged by :func:`damage_verdict` instead);
    * killed by a signal (OOM killer, node drain), exit 255 (ffmpeg trapped SIGTERM), or a
      machine error in stderr (disk full, out of memory, I/O) → transient `TranscodeError`:
      another attempt, maybe on another machine, can succeed;
    * any other non-zero exit → **permanent** `TranscodeError`: ffmpeg refused this input
      with this command (an undecodable stream it was told to map, a filter that cannot
      configure for this source, ...). Running the same command on the same bytes fails
      the same way, so retrying only delays the verdict by the whole backoff. If the cause
      is a bug on our side, an operator fixes it and re-queues the job (RetryJob).
    """
    if returncode > 0 and not _MACHINE_ERROR.search(stderr_tail):
        if _INPUT_ERROR.search(stderr_tail):
            detail = _last_line(stderr_tail)
            return UnusableMedia(
                f"the video is corrupt: decoding failed part-way through ({detail})"
            )
        if returncode != _SIGNALLED_EXIT:
            return TranscodeError(
                f"the video cannot be processed: ffmpeg stopped while {what} "
                f"({_last_line(stderr_tail)})",
                transient=False,
                stderr_tail=stderr_tail,
            )
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    return TranscodeError(f"ffmpeg {how} while {what}", transient=True, stderr_tail=stderr_tail)


# A decode that finished is corrupt only when the damage is more than concealment: more
# than this share of the frames (or this many, at least) produced decoder errors.
DAMAGE_SHARE = 0.05
DAMAGE_MIN_ERRORS = 10


def damage_verdict(input_errors: int, expected_frames: float) -> UnusableMedia | None:
    """Whether a decode that ran to the end produced a usable video (issue 8: judge
    decodability by whether frames come out).

    Decoders conceal a damaged macroblock or a broken reference and keep going (a bit
    flip, an open GOP cut mid-way); those frames come out and the video is usable. A
    file whose damage spans many frames (a tenth of it overwritten) yields mostly
    concealment garbage: corrupt. ``input_errors`` counts ffmpeg's stderr lines that
    blame the input (about one per damaged frame); ``expected_frames`` is duration x fps.
    """
    limit = max(DAMAGE_MIN_ERRORS, DAMAGE_SHARE * max(expected_frames, 0.0))
    if input_errors > limit:
        return UnusableMedia(
            f"the video is corrupt: {input_errors} decoder errors over about "
            f"{expected_frames:.0f} frames"
        )
    return None


@dataclass(frozen=True)
class Completed:
    """What a finished subprocess left behind (stdout only when it was captured).

    ``input_errors`` counts stderr lines that blame the input (decoder errors), all of
    them, not only those in the tail.
    """

    returncode: int
    stdout: bytes
    stderr_tail: str
    input_errors: int = 0


async def _drain_lines(stream: asyncio.StreamReader, keep: deque[str], counts: list[int]) -> None:
    while line := await stream.readline():
        text = line.decode("utf-8", "replace").rstrip()
        if _INPUT_ERROR.search(text):
            counts[0] += 1
        keep.append(text)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process group and reap it, so nothing is left running or zombied."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.wait()


async def run(
    argv: Sequence[str],
    *,
    stdout_handler: Callable[[asyncio.StreamReader], Awaitable[None]] | None = None,
    capture_stdout: bool = False,
    timeout_s: float | None = None,
) -> Completed:
    """Run a command; stdout goes to `stdout_handler`, to memory, or nowhere.

    stderr is always read concurrently (a full pipe would otherwise stall ffmpeg) and
    only its last lines are kept. On cancellation or timeout the whole process group is
    killed before the exception propagates.
    """
    want_stdout = stdout_handler is not None or capture_stdout
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if want_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # own process group: killpg reaches any helper it spawns
    )
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    input_errors = [0]
    chunks: list[bytes] = []

    async def read_stdout() -> None:
        assert proc.stdout is not None
        if stdout_handler is not None:
            await stdout_handler(proc.stdout)
            await proc.stdout.read()  # drain whatever the handler left
        else:
            chunks.append(await proc.stdout.read())

    async def body() -> None:
        assert proc.stderr is not None
        readers = [_drain_lines(proc.stderr, tail, input_errors)]
        if want_stdout:
            readers.append(read_stdout())
        await asyncio.gather(*readers)
        await proc.wait()

    try:
        await asyncio.wait_for(body(), timeout_s)
    except BaseException:
        await asyncio.shield(_kill(proc))
        raise
    return Completed(proc.returncode or 0, b"".join(chunks), "\n".join(tail), input_errors[0])
