"""GetPlayback and GetManifest (playback release), plus starting what they need.

start() builds the playback parts once per process and shares them through
``ctx.extras`` (the other RPC groups use the catalog and the sessionmaker):

* ``sessionmaker`` (created if no group created one first) and ``store``;
* ``catalog``: :class:`~svc_stream.playback.catalog.Catalog` plus its ``video.published``
  consumer, started in the background so a broker that is down at boot delays the
  catalog instead of the whole service;
* ``media_signer`` / ``media_store`` / ``media_origin``: URL signing, the deadline-
  bounded store view, and the HTTP origin on ``REELS_MEDIA_PORT``.

Both RPCs answer from memory on the hot path (catalog hit, existence cache hit, a few
HMACs): the benchmark's goal is p99 < 5 ms inside the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import grpc
from google.api import httpbody_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import stream_pb2, stream_pb2_grpc
from sqlalchemy.exc import SQLAlchemyError

from reels import errors
from reels.events import ensure_topics
from reels.media_signing import media_signing_key
from reels.storage import open_object_store
from svc_stream.playback import manifest
from svc_stream import resources
from svc_stream.playback.catalog import TOPIC_PUBLISHED, Catalog, PublishedVideo
from svc_stream.context import StreamContext
from svc_stream.playback.devices import DeviceClass, choose_ladder, resolve_device
from svc_stream.playback.media_store import MediaStore, StorageUnavailable
from svc_stream.playback.origin import MediaOrigin
from svc_stream.playback.signing import UrlSigner

log = logging.getLogger(__name__)

RETRY_AFTER_S = 2.0
CONSUMER_RETRY_MAX_S = 30.0


@dataclass
class Playback:
    """The playback parts one process shares (``ctx.extras["playback"]``)."""

    catalog: Catalog
    signer: UrlSigner
    media: MediaStore


def _user_agent(request_ua: str, context: grpc.aio.ServicerContext | None) -> str:
    """The request's field, else the caller's User-Agent header (kept by Envoy)."""
    if request_ua or context is None:
        return request_ua
    with contextlib.suppress(Exception):
        for key, value in context.invocation_metadata() or ():
            if key == "user-agent" and isinstance(value, str):
                return value
    return ""


def _device_param(device: DeviceClass) -> dict[str, str] | None:
    return None if device is DeviceClass.UNKNOWN else {"dev": device.value}


class PlaybackRpcs(stream_pb2_grpc.StreamServiceServicer):
    ctx: StreamContext

    @property
    def playback(self) -> Playback:
        return self.ctx.extras["playback"]  # type: ignore[no-any-return]

    async def _video(self, video_id: str) -> PublishedVideo:
        if not video_id:
            raise errors.InvalidArgument("video_id is required", [("video_id", "must be set")])
        try:
            video = await self.playback.catalog.get(video_id)
        except (SQLAlchemyError, OSError) as exc:
            raise errors.Unavailable("video catalog unavailable, retry shortly",
                                     RETRY_AFTER_S) from exc
        if video is None:
            # Unknown and not-yet-published look the same here: the catalog only ever
            # holds published videos (svc_upload's status RPC tells them apart).
            raise errors.NotFound("video", video_id, f"video '{video_id}' is not published")
        return video

    async def GetPlayback(  # noqa: N802 - generated name
        self, request: stream_pb2.GetPlaybackRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.GetPlaybackResponse:
        pb = self.playback
        video = await self._video(request.video_id)
        device = resolve_device(request.device, _user_agent(request.user_agent, context))
        try:
            present = await asyncio.gather(
                *(pb.media.exists(r.playlist_key) for r in video.renditions)
            )
        except StorageUnavailable as exc:
            raise errors.Unavailable("media storage unavailable, retry shortly",
                                     RETRY_AFTER_S) from exc
        available = [r for r, ok in zip(video.renditions, present, strict=True) if ok]
        offered, start = choose_ladder(available, device, lambda r: r.short_side)
        if start is None:
            raise errors.FailedPrecondition(
                f"video '{video.video_id}' has no playable rendition in storage"
            )
        signer = pb.signer
        exp = signer.expiry()
        expires_at = timestamp_pb2.Timestamp()
        expires_at.FromSeconds(exp)
        duration = duration_pb2.Duration()
        duration.FromNanoseconds(int(video.duration_s * 1e9))
        keys = video.keys
        return stream_pb2.GetPlaybackResponse(
            video_id=video.video_id,
            master_manifest_url=signer.url(keys.master_playlist, exp, _device_param(device)),
            renditions=[r.to_proto(signer.url(r.playlist_key, exp)) for r in offered],
            recommended_rendition=start.name,
            duration=duration,
            thumbnail_url=signer.url(keys.thumbnail, exp) if keys.thumbnail else "",
            preview_url=signer.url(keys.preview, exp) if keys.preview else "",
            storyboard_url=signer.url(keys.storyboard, exp) if keys.storyboard else "",
            expires_at=expires_at,
        )

    async def GetManifest(  # noqa: N802 - generated name
        self, request: stream_pb2.GetManifestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        pb = self.playback
        video = await self._video(request.video_id)
        device = resolve_device(request.device, _user_agent("", context))
        key = video.keys.master_playlist
        try:
            text = (await pb.media.read_small(key)).decode("utf-8", errors="replace")
            variant_keys = manifest.variant_keys(text, key)
            found = await asyncio.gather(*(pb.media.exists(k) for k in variant_keys))
        except FileNotFoundError as exc:
            raise errors.NotFound(
                "video", video.video_id, f"media of video '{video.video_id}' is missing"
            ) from exc
        except StorageUnavailable as exc:
            raise errors.Unavailable("media storage unavailable, retry shortly",
                                     RETRY_AFTER_S) from exc
        present = {k for k, ok in zip(variant_keys, found, strict=True) if ok}
        exp = pb.signer.expiry()
        sign = manifest.absolute_signed(lambda k: pb.signer.url(k, exp))
        body = manifest.render_master(text, key, device, present, sign)
        return httpbody_pb2.HttpBody(content_type=manifest.CONTENT_TYPE, data=body.encode())


async def _run_catalog_consumer(catalog: Catalog, stopping: asyncio.Event) -> None:
    """Keep trying to join the group: a broker down at boot must not stop the service."""
    backoff = 1.0
    while not stopping.is_set():
        consumer = catalog.consumer()
        try:
            await ensure_topics([TOPIC_PUBLISHED], bootstrap=consumer.bootstrap)
            await consumer.start()
        except Exception as exc:  # noqa: BLE001 - any broker failure: retry later
            log.warning("catalog consumer cannot start (%s); retrying in %.0fs", exc, backoff)
            await consumer.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            backoff = min(backoff * 2, CONSUMER_RETRY_MAX_S)
            continue
        catalog.active_consumer = consumer
        backoff = 1.0
        try:
            await consumer.run()
            return
        except Exception:  # noqa: BLE001 - never stop filling the catalog silently
            log.exception("catalog consumer failed; restarting it")
        finally:
            await consumer.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), backoff)


async def start(ctx: StreamContext) -> None:
    """Build the playback parts, start the catalog consumer and the media origin."""
    extras = ctx.extras
    if "store" not in extras:
        extras["store"] = open_object_store()
    catalog = resources.catalog(ctx)
    signer = extras.get("media_signer") or UrlSigner(media_signing_key())
    extras["media_signer"] = signer
    media = MediaStore(extras["store"])
    extras["media_store"] = media
    extras["playback"] = Playback(catalog, signer, media)

    origin = MediaOrigin(media, signer)
    port = await origin.start()
    extras["media_origin"] = origin
    log.info("media origin on port %d, URLs under %s", port, signer.base_url)

    stopping = asyncio.Event()
    task = asyncio.create_task(_run_catalog_consumer(catalog, stopping), name="catalog-consumer")

    async def stop() -> None:
        stopping.set()
        consumer = getattr(catalog, "active_consumer", None)
        if consumer is not None:
            await consumer.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await origin.stop()

    ctx.on_stop.append(stop)
