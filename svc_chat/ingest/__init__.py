"""svc_chat's ingest part (see svc_chat.parts): RTMP in, a live HLS ladder out.

* :mod:`svc_chat.ingest.rtmp` — the RTMP listener (pyrtmp) on ``REELS_RTMP_HOST``:
  ``REELS_RTMP_PORT`` (loopback by default); encoders publish to
  ``rtmp://host:port/live/<stream key>``;
* :mod:`svc_chat.ingest.broadcast` — one accepted publisher piped into one ffmpeg
  (:mod:`svc_chat.ingest.command`, :mod:`svc_chat.ingest.ladder`), writing
  ``live/{stream_id}/master.m3u8`` and ``live/{stream_id}/<rung>/`` in the platform's
  object store (a ``file://`` store: ffmpeg writes the files in place).

The stream key is checked at publish time: a wrong or rotated-away key, an ENDED
stream, or a second publisher on a stream this instance is already ingesting is
refused before anything is written. An accepted publish moves a CREATED stream to
LIVE at once (``stream.started`` through the outbox, via the streams part). When the
publisher leaves, or sends no media for ``REELS_LIVE_PUBLISHER_TIMEOUT_S``, a timer of
``REELS_LIVE_GRACE_S`` starts: a publisher back on the same key within it continues
the same stream (same playlists, a discontinuity at the join); otherwise the stream
ends (``stream.ended``), its duration counted to the moment the publisher left.

Not here (yet): the second-publisher check is per instance (two instances behind one
RTMP address would need a Redis lease); the concurrent-streams-per-creator limit;
an ``s3://`` store (ffmpeg writes to a local directory); SRT. On ``stop()`` the
publishers are dropped and their streams stay LIVE: an encoder that reconnects to the
restarted service continues them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reels import errors
from reels.storage import LocalObjectStore, open_object_store
from svc_chat.ingest import flv
from svc_chat.ingest.broadcast import Broadcast
from svc_chat.ingest.rtmp import Refused, serve
from svc_chat.parts import Context

if TYPE_CHECKING:
    from pyrtmp.session_manager import SessionManager

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.25
ENDLIST = "#EXT-X-ENDLIST\n"


def stream_key_of(publishing_name: str) -> str:
    """The key in a publishing name: encoders may append ``?query`` to it."""
    return publishing_name.split("?", 1)[0].strip()


class IngestPart:
    """See the module docstring."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.ingest
        platform = ctx.settings.platform
        self.ffmpeg = platform.ffmpeg
        store = open_object_store(platform.storage_url)
        if not isinstance(store, LocalObjectStore):
            raise RuntimeError("the live ingest needs a file:// object store (REELS_STORAGE_URL)")
        self.store = store
        self.server: asyncio.Server | None = None
        self.port = 0
        """The RTMP port actually bound (``REELS_RTMP_PORT`` may be 0)."""
        self.broadcasts: dict[str, Broadcast] = {}
        """Streams being ingested on this instance, by stream id."""
        self.grace: dict[str, asyncio.Task[None]] = {}
        """Streams whose publisher left, by stream id: the task that ends them."""
        self._watchdogs: dict[str, asyncio.Task[None]] = {}
        self._sessions: set[Any] = set()
        self._stopping = False

    def out_dir(self, stream_id: str) -> Path:
        return self.store.path(f"live/{stream_id}")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        s = self.settings
        self.server = await serve(self, s.host, s.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("RTMP ingest", extra={"fields": {"host": s.host, "port": self.port}})

    async def stop(self) -> None:
        self._stopping = True
        if self.server is not None:
            self.server.close()
        for task in self.grace.values():
            task.cancel()
        for session in list(self._sessions):
            session.writer.transport.abort()
        for _ in range(40):  # each connection's cleanup closes its ffmpeg
            if not self._sessions:
                break
            await asyncio.sleep(0.05)
        if self.server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            self.server = None

    # ------------------------------------------------------------------ controller API

    async def publish(self, session: SessionManager, name: str) -> None:
        self._sessions.add(session)
        info = await self.ctx.streams.verify_key(stream_key_of(name))
        if info is None:
            log.warning("RTMP publish refused: wrong stream key")
            raise Refused("wrong stream key")
        stream_id = info.stream_id
        if info.ended:
            raise Refused(f"stream {stream_id} has ended; create a new stream")
        if stream_id in self.broadcasts:
            raise Refused(f"stream {stream_id} already has a publisher")
        if stream_id not in self.grace:  # a returning publisher is already counted
            others = await self.ctx.streams.live_count(info.creator_id, excluding=stream_id)
            limit = self.settings.max_live_per_creator
            if others >= limit:
                raise Refused(
                    f"creator {info.creator_id} already has {others} live stream(s) on air; "
                    f"the limit is {limit}: end one first"
                )
        broadcast = Broadcast(stream_id, self.out_dir(stream_id), self.settings, self.ffmpeg)
        self.broadcasts[stream_id] = broadcast  # claimed before the next await
        returning = self.grace.pop(stream_id, None)
        if returning is not None:
            returning.cancel()
        try:
            await self.ctx.streams.ingest_started(stream_id)
        except errors.FailedPrecondition as exc:  # ended meanwhile
            del self.broadcasts[stream_id]
            raise Refused(str(exc)) from None
        except BaseException:
            del self.broadcasts[stream_id]
            raise
        session.state["broadcast"] = broadcast
        self._watchdogs[stream_id] = asyncio.create_task(self._watch(session, broadcast))
        log.info(
            "RTMP publish accepted",
            extra={"fields": {"stream_id": stream_id, "returning": returning is not None}},
        )

    async def metadata(self, session: SessionManager, meta: Any) -> None:
        broadcast = session.state.get("broadcast")
        if broadcast is not None:
            broadcast.on_meta(meta)

    async def media(self, session: SessionManager, kind: int, ts_ms: int, body: bytes) -> None:
        broadcast: Broadcast | None = session.state.get("broadcast")
        if broadcast is None:
            return  # media before (or without) an accepted publish: dropped
        await broadcast.on_media(kind, ts_ms, body)

    async def closed(self, session: SessionManager) -> None:
        try:
            broadcast: Broadcast | None = session.state.pop("broadcast", None)
            if broadcast is None:
                return
            left_at = time.monotonic()
            stream_id = broadcast.stream_id
            if time.monotonic() - broadcast.last_media_at >= self.settings.publisher_timeout_s:
                left_at = broadcast.last_media_at  # stalled: it left with its last media
            watchdog = self._watchdogs.pop(stream_id, None)
            if watchdog is not None:
                watchdog.cancel()
            if self.broadcasts.get(stream_id) is broadcast:
                del self.broadcasts[stream_id]
            await broadcast.close()
            log.info(
                "RTMP publisher left",
                extra={"fields": {"stream_id": stream_id, "grace_s": self.settings.grace_s}},
            )
            if not self._stopping:
                self.grace[stream_id] = asyncio.create_task(
                    self._end_after_grace(stream_id, left_at)
                )
        finally:
            self._sessions.discard(session)

    # ------------------------------------------------------------------ timers

    async def _watch(self, session: SessionManager, broadcast: Broadcast) -> None:
        """Drop a publisher that sends no media for the publisher timeout (its closed()
        then starts the grace period)."""
        timeout = self.settings.publisher_timeout_s
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if time.monotonic() - broadcast.last_media_at >= timeout:
                log.warning(
                    "RTMP publisher stalled", extra={"fields": {"stream_id": broadcast.stream_id}}
                )
                session.writer.transport.abort()
                return

    async def _end_after_grace(self, stream_id: str, left_at: float) -> None:
        try:
            await asyncio.sleep(max(0.0, self.settings.grace_s - (time.monotonic() - left_at)))
            if self.grace.get(stream_id) is not asyncio.current_task():
                return
            del self.grace[stream_id]
            ago = time.monotonic() - left_at
            await self.ctx.streams.ingest_ended(stream_id, ended_ago_s=ago)
            await self._close_playlists(stream_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not end stream %s after its publisher left", stream_id)

    async def _close_playlists(self, stream_id: str) -> None:
        """``#EXT-X-ENDLIST`` on every variant playlist: players stop waiting for more."""
        for key in await self.store.list(f"live/{stream_id}"):
            if not key.endswith("/index.m3u8"):
                continue
            text = (await self.store.get_bytes(key)).decode()
            if ENDLIST.strip() not in text:
                await self.store.put_bytes(key, (text.rstrip("\n") + "\n" + ENDLIST).encode())


__all__ = ["IngestPart", "build", "flv"]


def build(ctx: Context) -> IngestPart:
    return IngestPart(ctx)
