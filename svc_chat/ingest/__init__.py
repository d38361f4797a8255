"""svc_chat's ingest part (see svc_chat.parts): RTMP in, a live HLS ladder out.

* :mod:`svc_chat.ingest.rtmp` — the RTMP listener (pyrtmp) on ``REELS_RTMP_HOST``:
  ``REELS_RTMP_PORT`` (loopback by default); encoders publish to
  ``rtmp://host:port/live/<stream key>``;
* :mod:`svc_chat.ingest.broadcast` — one accepted publisher piped into one ffmpeg
  (:mod:`svc_chat.ingest.command`, :mod:`svc_chat.ingest.ladder`), writing
  ``live/{stream_id}/master.m3u8`` and ``live/{stream_id}/<rung>/`` in the platform's
  object store (a ``file://`` store: ffmpeg writes the files in place).

The stream key is checked at publish time: a wrong or rotated-away key, an ENDED
stream, a second publisher on a stream (on any instance: a Redis lease,
:mod:`svc_chat.ingest.lease`), or a creator already at ``REELS_LIVE_MAX_PER_CREATOR``
live streams is refused before anything is written. An accepted publish moves a CREATED
stream to LIVE at once (``stream.started`` through the outbox, via the streams part).
When the publisher leaves, or sends no media for ``REELS_LIVE_PUBLISHER_TIMEOUT_S``, a
timer of ``REELS_LIVE_GRACE_S`` starts: a publisher back on the same key within it
continues the same stream (on this instance into the same ffmpeg, with no
discontinuity, svc_chat.ingest.broadcast; on another with ffmpeg's ``append_list``).
Otherwise the stream ends (``stream.ended``), its duration counted to the moment the
publisher left (its last media when it stalled). A stream ended by EndStream (on any
instance) drops its publisher within about a second.

Once a stream has ended, its recording (the publisher's own encode, copied) goes to
the VOD pipeline (:mod:`svc_chat.ingest.recording`, ``REELS_LIVE_RECORD``).

Not here: an ``s3://`` store (ffmpeg writes to a local directory); SRT (DECISIONS.md).
On ``stop()`` the publishers are dropped and their streams stay LIVE: an encoder that
reconnects to the restarted service continues them. A stream whose instance died
during its grace period stays LIVE until its creator ends it (EndStream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from reels import errors
from reels.storage import LocalObjectStore, open_object_store
from svc_chat.ingest import flv
from svc_chat.ingest.broadcast import Broadcast
from svc_chat.ingest.lease import RENEW_INTERVAL_S, PublisherLeases
from svc_chat.ingest.recording import Recorder
from svc_chat.ingest.rtmp import Refused, serve
from svc_chat.parts import Context

if TYPE_CHECKING:
    from pyrtmp.session_manager import SessionManager

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.25
WATCHDOG_STOP_S = 2.0
"""How long a leaving publisher's close waits for its watchdog to stop (s)."""
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
        self.ffprobe = platform.ffprobe
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
        self._left_at: dict[str, float] = {}
        """When the publisher of a stream in its grace period left (monotonic s)."""
        self.paused: dict[str, Broadcast] = {}
        """Their ladders, still running, for a publisher that comes back (by stream id)."""
        self._watchdogs: dict[str, asyncio.Task[None]] = {}
        self._sessions: set[Any] = set()
        self._stopping = False
        self.leases = PublisherLeases(ctx.redis)
        self.recorder = Recorder(ctx, store, self.ffmpeg)
        self._tasks: set[asyncio.Task[Any]] = set()
        """Background work (recordings being finished, the start-up sweep)."""

    def out_dir(self, stream_id: str) -> Path:
        return self.store.path(f"live/{stream_id}")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        s = self.settings
        self.server = await serve(self, s.host, s.port)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("RTMP ingest", extra={"fields": {"host": s.host, "port": self.port}})
        if s.record:
            self._background(self.recorder.sweep())

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self._stopping = True
        if self.server is not None:
            self.server.close()
        for task in self.grace.values():
            task.cancel()
        for paused in list(self.paused.values()):
            await paused.close()
        self.paused.clear()
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
        for task in list(self._tasks):  # an unfinished recording is swept at next start
            task.cancel()

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
        broadcast = self.paused.get(stream_id)
        if broadcast is None:
            recording = self.recorder.next_part(stream_id) if self.settings.record else None
            broadcast = Broadcast(
                stream_id,
                self.out_dir(stream_id),
                self.settings,
                self.ffmpeg,
                recording,
                ffprobe=self.ffprobe,
                on_started=lambda: self._went_live(stream_id),
                next_recording=lambda: self.recorder.next_part(stream_id),
            )
        self.broadcasts[stream_id] = broadcast  # claimed before the next await
        token = broadcast.lease_token = self.leases.new_token()
        try:
            if not await self.leases.acquire(stream_id, token):
                raise Refused(f"stream {stream_id} already has a publisher")
        except BaseException:
            del self.broadcasts[stream_id]
            raise
        returning = self.grace.pop(stream_id, None)
        if returning is not None:
            returning.cancel()
        if self.paused.pop(stream_id, None) is broadcast:
            broadcast.resume()
        session.state["broadcast"] = broadcast
        self._watchdogs[stream_id] = asyncio.create_task(self._watch(session, broadcast))
        log.info(
            "RTMP publish accepted",
            extra={"fields": {"stream_id": stream_id, "returning": returning is not None}},
        )

    async def _went_live(self, stream_id: str) -> None:
        """The ladder runs: CREATED -> LIVE (``stream.started``), the creator's
        concurrent-stream limit checked atomically (two publishes at the same moment
        cannot both pass the check in :meth:`publish`). The stream goes LIVE with its
        first video, not at the publish command: a publisher that never sends a
        playable picture (audio only, too small, no size) never makes it LIVE."""
        try:
            await self.ctx.streams.ingest_started(
                stream_id, live_limit=self.settings.max_live_per_creator
            )
        except errors.FailedPrecondition as exc:  # ended meanwhile, or over the limit
            raise Refused(str(exc)) from None

    def left_ago_s(self, stream_id: str) -> float:
        """How long ago the publisher of a stream in its grace period left (s; 0 when
        the stream is not in a grace period on this instance). EndStream during the
        grace counts the stream's time on air to then."""
        left_at = self._left_at.get(stream_id)
        if left_at is None or stream_id not in self.grace:
            return 0.0
        return max(0.0, time.monotonic() - left_at)

    async def metadata(self, session: SessionManager, meta: Any) -> None:
        broadcast = session.state.get("broadcast")
        if broadcast is not None:
            broadcast.on_meta(meta)

    async def media(self, session: SessionManager, kind: int, ts_ms: int, body: bytes) -> None:
        broadcast: Broadcast | None = session.state.get("broadcast")
        if broadcast is None:
            return  # media before (or without) an accepted publish: dropped
        try:
            await broadcast.on_media(kind, ts_ms, body)
        except Refused as why:
            log.warning(
                "RTMP publisher refused after publish",
                extra={"fields": {"stream_id": broadcast.stream_id, "why": str(why)}},
            )
            raise

    async def closed(self, session: SessionManager) -> None:
        try:
            broadcast: Broadcast | None = session.state.pop("broadcast", None)
            if broadcast is None:
                return
            dropped_at = left_at = time.monotonic()
            stream_id = broadcast.stream_id
            if time.monotonic() - broadcast.last_media_at >= self.settings.publisher_timeout_s:
                left_at = broadcast.last_media_at  # stalled: on air until its last media
            watchdog = self._watchdogs.pop(stream_id, None)
            if watchdog is not None:
                # Finished before the lease goes: a renewal in flight must not take the
                # lease back after its release (the grace timer would then think the
                # publisher came back elsewhere and never end the stream).
                watchdog.cancel()
                await asyncio.wait({watchdog}, timeout=WATCHDOG_STOP_S)
            if self.broadcasts.get(stream_id) is broadcast:
                del self.broadcasts[stream_id]
            await self._release(stream_id, broadcast.lease_token)
            info = await self.ctx.streams.info(stream_id)
            ended = info is not None and info.ended
            never_live = info is not None and not info.live and not info.ended
            log.info(
                "RTMP publisher left",
                extra={
                    "fields": {
                        "stream_id": stream_id,
                        "grace_s": 0 if ended else self.settings.grace_s,
                        "stream_ended": ended,
                    }
                },
            )
            if self._stopping or ended or never_live or not broadcast.alive:
                await broadcast.close()
            if self._stopping or never_live:  # never on air: nothing to end or record
                return
            if ended:  # EndStream ended it: no grace, the recording goes now
                if self.settings.record:
                    self._background(self.recorder.finish(stream_id))
                return
            if broadcast.alive:
                broadcast.pause()
                self.paused[stream_id] = broadcast
            self._left_at[stream_id] = left_at
            self.grace[stream_id] = asyncio.create_task(
                self._end_after_grace(stream_id, left_at, dropped_at, broadcast.lease_token)
            )
        finally:
            self._sessions.discard(session)

    async def _release(self, stream_id: str, token: str) -> None:
        try:
            await self.leases.release(stream_id, token)
        except RedisError:  # it expires by itself (lease.LEASE_TTL_S)
            log.warning("could not release the publisher lease of %s", stream_id, exc_info=True)

    def stream_ended(self, stream_id: str) -> None:
        """EndStream on this instance: drop the stream's publisher now (other instances
        see the end through ``streams.info`` within a second, in :meth:`_watch`); a
        stream in its grace period stops waiting and its recording goes now."""
        broadcast = self.broadcasts.get(stream_id)
        for session in list(self._sessions):
            if broadcast is not None and session.state.get("broadcast") is broadcast:
                session.writer.transport.abort()
        timer = self.grace.pop(stream_id, None)
        if timer is not None:
            timer.cancel()
            self._left_at.pop(stream_id, None)
            self._background(self._wrap_up(stream_id, self.paused.pop(stream_id, None)))

    async def _wrap_up(self, stream_id: str, paused: Broadcast | None) -> None:
        """An ended stream: its last segments written, playlists closed, recording sent."""
        if paused is not None:
            await paused.close()
        await self._close_playlists(stream_id)
        if self.settings.record:
            await self.recorder.finish(stream_id)

    # ------------------------------------------------------------------ timers

    async def _watch(self, session: SessionManager, broadcast: Broadcast) -> None:
        """Drop a publisher that sends no media for the publisher timeout (its closed()
        then starts the grace period), whose stream was ended (EndStream, any
        instance), or whose lease was lost (Redis lost it and another publish took
        it). Renews the lease every ``RENEW_INTERVAL_S``."""
        timeout = self.settings.publisher_timeout_s
        stream_id = broadcast.stream_id
        renewed_at = time.monotonic()
        while session.state.get("broadcast") is broadcast:  # closed() pops it
            await asyncio.sleep(WATCH_INTERVAL_S)
            why = ""
            now = time.monotonic()
            # Waiting on our own ffmpeg (``draining``) is not the publisher stalling.
            if not broadcast.draining and now - broadcast.last_media_at >= timeout:
                why = "stalled"
            elif broadcast.proc is None and now - broadcast.accepted_at >= timeout:
                why = "sent no video"
            elif time.monotonic() - renewed_at >= RENEW_INTERVAL_S:
                renewed_at = time.monotonic()
                try:
                    if session.state.get("broadcast") is not broadcast:
                        return  # the publisher left meanwhile: its lease is released
                    if not await self.leases.keep(stream_id, broadcast.lease_token):
                        why = "another publish holds the stream's lease"
                    info = await self.ctx.streams.info(stream_id)
                    if info is not None and info.ended:
                        why = "stream ended"
                except Exception:  # noqa: BLE001 - Redis or the database hiccuped: go on
                    log.warning("publisher checks failed for %s", stream_id, exc_info=True)
            if why:
                log.warning(
                    "RTMP publisher dropped",
                    extra={"fields": {"stream_id": stream_id, "why": why}},
                )
                session.writer.transport.abort()
                return

    async def _end_after_grace(
        self, stream_id: str, left_at: float, dropped_at: float, left_token: str
    ) -> None:
        """``grace_s`` after the publisher was dropped (``dropped_at``), unless it came
        back: close the paused ladder and end the stream, on air until ``left_at`` (its
        last media when it stalled). Monotonic seconds. ``left_token``: the lease token
        of the publish that left; a lease still holding it is a stale one of ours (a
        renewal that raced the release), dropped here, not a publisher that came back."""
        try:
            await asyncio.sleep(max(0.0, self.settings.grace_s - (time.monotonic() - dropped_at)))
            if self.grace.get(stream_id) is not asyncio.current_task():
                return
            del self.grace[stream_id]
            self._left_at.pop(stream_id, None)
            paused = self.paused.pop(stream_id, None)
            if paused is not None:
                await paused.close()  # its last segment is written before the end
            holder = await self.leases.holder(stream_id)
            if holder == left_token:
                await self._release(stream_id, left_token)
            elif holder is not None:
                log.info("publisher of %s came back on another instance", stream_id)
                return
            ago = time.monotonic() - left_at
            await self.ctx.streams.ingest_ended(stream_id, ended_ago_s=ago)
            await self._close_playlists(stream_id)
            if self.settings.record:
                await self.recorder.finish(stream_id)
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
