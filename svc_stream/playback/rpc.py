"""GetPlayback and GetManifest (playback release).

GetPlayback also answers for a live stream: an id the catalog does not know is looked
up in the live view (svc_stream.playback.live, fed by ``streams.events``); a LIVE stream
gets the signed URL of its live master (``live/{stream_id}/master.m3u8``, device cap as
for videos), no duration, renditions or images. Until GetPlaybackResponse has an
``is_live`` field (a contract change, not made here) a client tells a live answer by
the URL's ``/media/live/`` path and the absent duration. An ENDED stream is
FAILED_PRECONDITION; a LIVE one whose first segments are not written yet (about 1.6 s
after publish) is UNAVAILABLE with RetryInfo (1 s).

Both RPCs answer from memory on the hot path (catalog hit, existence cache hit, a few
HMACs): the benchmark's goal is p99 < 5 ms inside the service. A catalog or storage
outage escapes as an outage (the interceptor answers UNAVAILABLE with RetryInfo;
``StorageUnavailable`` is an ``errors.Unavailable``); only domain answers are decided here.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc
from google.api import httpbody_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from reels.v1 import stream_pb2

from reels import errors
from reels.media_urls import UrlSigner
from svc_stream.playback import manifest
from svc_stream.playback.catalog import Catalog, PublishedVideo
from svc_stream.playback.devices import DeviceClass, choose_ladder, resolve_device
from svc_stream.playback.live import LiveStream, LiveStreams
from svc_stream.playback.media_store import MediaStore

MAX_URL_BATCH = 500
LIVE_RETRY_S = 1.0


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


def _not_published(video_id: str) -> errors.NotFound:
    # Unknown and not-yet-published look the same here: the catalog only ever holds
    # published videos (svc_upload's status RPC tells them apart).
    return errors.NotFound("video", video_id, f"video '{video_id}' is not published")


class PlaybackRpcs:
    """The playback RPCs over the catalog, the URL signer and the bounded store view."""

    def __init__(
        self,
        catalog: Catalog,
        signer: UrlSigner,
        media: MediaStore,
        live: LiveStreams | None = None,
    ) -> None:
        self.catalog = catalog
        self.signer = signer
        self.media = media
        self.live = live

    async def _video(self, video_id: str) -> PublishedVideo:
        video = await self._video_or_none(video_id)
        if video is None:
            raise _not_published(video_id)
        return video

    async def _video_or_none(self, video_id: str) -> PublishedVideo | None:
        if not video_id:
            raise errors.InvalidArgument("video_id is required", [("video_id", "must be set")])
        return await self.catalog.get(video_id)

    async def _live_playback(
        self,
        stream: LiveStream,
        request: stream_pb2.GetPlaybackRequest,
        context: grpc.aio.ServicerContext | None,
    ) -> stream_pb2.GetPlaybackResponse:
        if not stream.is_live:
            raise errors.FailedPrecondition(f"live stream '{stream.stream_id}' has ended")
        if not await self.media.exists(stream.master_key):
            raise errors.Unavailable(
                f"live stream '{stream.stream_id}' has no segments yet", LIVE_RETRY_S
            )
        device = resolve_device(request.device, _user_agent(request.user_agent, context))
        exp = self.signer.expiry()
        expires_at = timestamp_pb2.Timestamp()
        expires_at.FromSeconds(exp)
        return stream_pb2.GetPlaybackResponse(
            video_id=stream.stream_id,
            master_manifest_url=self.signer.url(stream.master_key, exp, _device_param(device)),
            expires_at=expires_at,
            is_live=True,
        )

    async def GetPlayback(  # noqa: N802 - generated name
        self, request: stream_pb2.GetPlaybackRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.GetPlaybackResponse:
        video = await self._video_or_none(request.video_id)
        if video is None:
            stream = await self.live.get(request.video_id) if self.live is not None else None
            if stream is not None:
                return await self._live_playback(stream, request, context)
            raise _not_published(request.video_id)
        device = resolve_device(request.device, _user_agent(request.user_agent, context))
        present = await asyncio.gather(
            *(self.media.exists(r.playlist_key) for r in video.renditions)
        )
        available = [r for r, ok in zip(video.renditions, present, strict=True) if ok]
        offered, start = choose_ladder(available, device, lambda r: r.short_side)
        if start is None:
            raise errors.FailedPrecondition(
                f"video '{video.video_id}' has no playable rendition in storage"
            )
        signer = self.signer
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

    async def GetPlaybackUrls(  # noqa: N802 - generated name
        self, request: stream_pb2.GetPlaybackUrlsRequest, context: grpc.aio.ServicerContext
    ) -> stream_pb2.GetPlaybackUrlsResponse:
        """Signed master and thumbnail URLs of a feed page's videos (svc_rank), in one call.

        Unlike GetPlayback there is no storage round trip per rendition: a published
        video's master playlist exists (svc_transcode writes it before publishing), and
        a page of 100 must cost a catalog hit and two HMACs per video. Unknown ids are
        left out: the feed drops what playback cannot serve.
        """
        ids = list(dict.fromkeys(v for v in request.video_ids if v))
        if len(ids) > MAX_URL_BATCH:
            raise errors.InvalidArgument(
                f"at most {MAX_URL_BATCH} video ids per call",
                [("video_ids", f"got {len(ids)}")],
            )
        videos = await asyncio.gather(*(self.catalog.get(v) for v in ids))
        exp = self.signer.expiry()
        expires_at = timestamp_pb2.Timestamp()
        expires_at.FromSeconds(exp)
        sign = self.signer.url
        return stream_pb2.GetPlaybackUrlsResponse(
            videos=[
                stream_pb2.PlaybackUrls(
                    video_id=v.video_id,
                    master_manifest_url=sign(v.keys.master_playlist, exp),
                    thumbnail_url=sign(v.keys.thumbnail, exp) if v.keys.thumbnail else "",
                )
                for v in videos
                if v is not None and v.keys.master_playlist
            ],
            expires_at=expires_at,
        )

    async def GetManifest(  # noqa: N802 - generated name
        self, request: stream_pb2.GetManifestRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        video = await self._video(request.video_id)
        device = resolve_device(request.device, _user_agent("", context))
        key = video.keys.master_playlist
        try:
            text = (await self.media.read_small(key)).decode("utf-8", errors="replace")
            variant_keys = manifest.variant_keys(text, key)
            found = await asyncio.gather(*(self.media.exists(k) for k in variant_keys))
        except FileNotFoundError as exc:
            raise errors.NotFound(
                "video", video.video_id, f"media of video '{video.video_id}' is missing"
            ) from exc
        present = {k for k, ok in zip(variant_keys, found, strict=True) if ok}
        exp = self.signer.expiry()
        sign = manifest.absolute_signed(lambda k: self.signer.url(k, exp))
        body = manifest.render_master(text, key, device, present, sign)
        return httpbody_pb2.HttpBody(content_type=manifest.CONTENT_TYPE, data=body.encode())
