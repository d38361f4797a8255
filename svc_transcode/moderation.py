"""NSFW moderation of a transcoded video: score -> publish | hold for review | reject.

The video's score is the **maximum** over its sampled frames (one explicit frame is
enough to matter). With the thresholds (``REELS_NSFW_REVIEW_THRESHOLD`` 0.2,
``REELS_NSFW_REJECT_THRESHOLD`` 0.8):

* ``score >= reject``: rejected. The job fails permanently with the reason
  ``rejected by moderation (nsfw score 0.93)``; nothing is published.
* ``review <= score < reject``: held. The outputs are published to the store but the
  video is reported IN_REVIEW, not PUBLISHED, and no ``video.published`` is written:
  the job keeps that event (``transcode_jobs.pending_event``, stage ``in_review``)
  until a moderator's ``video.moderated`` approval releases it
  (svc_transcode/review_consumer.py). The top frames go to the store as PNG under
  ``moderation/{video_id}/`` for the review queue.
* ``score < review``: published as before.

Pure logic here (thresholds, decision, reason, the frame images); the worker does the
I/O.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
from reels.v1 import common_pb2

from svc_transcode.nsfw import FrameScores

DEFAULT_REVIEW_THRESHOLD = 0.2
DEFAULT_REJECT_THRESHOLD = 0.8
TOP_FRAMES = 3
FRAMES_PREFIX = "moderation"
# The stage of a held job (transcode_jobs.stage) and video (videos.stage).
IN_REVIEW_STAGE = "in_review"  # = jobs.IN_REVIEW

PUBLISH = common_pb2.VIDEO_MODERATION_DECISION_PUBLISH
HOLD = common_pb2.VIDEO_MODERATION_DECISION_HOLD
REJECT = common_pb2.VIDEO_MODERATION_DECISION_REJECT


@dataclass(frozen=True)
class Thresholds:
    """``review <= score < reject`` holds, ``score >= reject`` rejects."""

    review: float = DEFAULT_REVIEW_THRESHOLD
    reject: float = DEFAULT_REJECT_THRESHOLD

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.reject:
            raise ValueError(
                f"NSFW thresholds must satisfy 0 <= review ({self.review}) "
                f"<= reject ({self.reject})"
            )

    def decide(self, score: float) -> int:
        if score >= self.reject:
            return REJECT
        if score >= self.review:
            return HOLD
        return PUBLISH


@dataclass(frozen=True)
class Verdict:
    """One video's moderation: its frames' scores and what they decide."""

    decision: int
    score: float
    frame_scores: np.ndarray  # float32 [n]
    frame_times: list[float]  # seconds, frame i
    model_name: str
    model_version: str
    thresholds: Thresholds

    @property
    def top(self) -> list[int]:
        """Indices of the highest-scoring frames, highest first (ties: earliest)."""
        order = sorted(range(len(self.frame_scores)), key=lambda i: (-self.frame_scores[i], i))
        return order[:TOP_FRAMES]

    def reason(self) -> str:
        return f"rejected by moderation (nsfw score {self.score:.2f})"

    def to_proto(self, keys: dict[int, str] | None = None) -> common_pb2.VideoModeration:
        keys = keys or {}
        return common_pb2.VideoModeration(
            decision=self.decision,  # type: ignore[arg-type]
            score=self.score,
            model_name=self.model_name,
            model_version=self.model_version,
            review_threshold=self.thresholds.review,
            reject_threshold=self.thresholds.reject,
            frames_scored=len(self.frame_scores),
            top_frames=[
                common_pb2.VideoModerationFrame(
                    key=keys.get(i, ""),
                    score=float(self.frame_scores[i]),
                    time_seconds=self.frame_times[i] if i < len(self.frame_times) else 0.0,
                )
                for i in self.top
            ],
        )


def verdict_of(scored: FrameScores, times: list[float], thresholds: Thresholds) -> Verdict:
    """The decision for a video whose frames scored ``scored.scores``."""
    scores = np.asarray(scored.scores, dtype=np.float32)
    score = float(scores.max()) if len(scores) else 0.0
    return Verdict(
        decision=thresholds.decide(score),
        score=score,
        frame_scores=scores,
        frame_times=list(times),
        model_name=scored.model_name,
        model_version=scored.model_version,
        thresholds=thresholds,
    )


def frame_key(video_id: str, index: int) -> str:
    """Where a held video's frame ``index`` is kept for the review queue."""
    return f"{FRAMES_PREFIX}/{video_id}/frame-{index:02d}.png"


def png(frame: np.ndarray) -> bytes:
    """A uint8 RGB [H, W, 3] frame as PNG (numpy + zlib: no image library needed)."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    h, w, _ = frame.shape
    raw = b"".join(b"\x00" + frame[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
