"""The embeddings a published video carries in its ``video.published`` event.

Three vectors and a version, all computed by Triton-served models
(reels/embedding_space.py defines the space and its version):

* ``visual``: float32 [1280], unit norm. EfficientNet-Lite0 (Triton
  ``visual_embedding``) on up to 16 frames sampled evenly across the video
  (svc_transcode/frames.py: uint8 [n, 224, 224, 3] RGB, center square), sent in ONE
  request; the frame embeddings are mean-pooled and L2-normalised.
* ``text``: float32 [384], unit norm. MiniLM-L6-v2 (Triton ``text_embedding``) of
  title, description and hashtags (``video_text``).
* ``video``: float32 [256], unit norm: ``embedding_space.combine(visual, text)``.
* ``model_version``: ``embedding_space.space_version`` of the versions Triton answered
  with (each response's ``model_version``), e.g. ``embedding_space.MODEL_VERSION`` for
  version 1 of both models; a hot reload to a new version shows here.

Both requests go out at once and share one deadline (``REELS_EMBEDDINGS_TIMEOUT_S``).
A failure of either model (Triton down, timing out, answering badly) raises
``EmbeddingUnavailable``: the worker then publishes the video without vectors and
the backfill retries later (svc_transcode/backfill.py). A malformed input is a bug
and raises ``ValueError``, which is never retried as if it were an outage.

``REELS_EMBEDDINGS=off`` (``NoEmbedder``): videos publish without vectors and nothing
is retried (svc_rank then recalls them by trending, followees and freshness only).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from reels import embedding_space
from reels.model_client import (
    FRAME_SIZE,
    TEXT_EMBEDDING_DIM,
    VISUAL_EMBEDDING_DIM,
    ModelClient,
)

DEFAULT_TIMEOUT_S = 10.0


class EmbeddingUnavailable(Exception):
    """The model server did not answer (down, timed out, bad reply); transient."""


@dataclass(frozen=True)
class VideoEmbeddings:
    """One video's vectors (float32, each unit norm) and the space's version."""

    visual: np.ndarray  # [1280]
    text: np.ndarray  # [384]
    video: np.ndarray  # [256]
    model_version: str


class VideoEmbedder(Protocol):
    """What the worker and the backfill need: vectors for frames + text, or None."""

    @property
    def enabled(self) -> bool:
        """False: embeddings are switched off (publish without them, never retry)."""
        ...

    async def embed(self, frames: np.ndarray, text: str) -> VideoEmbeddings | None: ...

    async def close(self) -> None: ...


def video_text(title: str, description: str, hashtags: list[str]) -> str:
    """What the text model sees: the words a viewer would search for."""
    tags = " ".join(f"#{tag.lstrip('#')}" for tag in hashtags if tag)
    return "\n".join(part for part in (title.strip(), description.strip(), tags) if part)


def check_frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` as uint8 [n>=1, 224, 224, 3]; ValueError otherwise (a caller bug)."""
    frames = np.asarray(frames)
    if (
        frames.dtype != np.uint8
        or frames.ndim != 4
        or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3)
        or len(frames) == 0
    ):
        raise ValueError(
            f"frames must be uint8 [n>=1, 224, 224, 3], got {frames.dtype} {frames.shape}"
        )
    return frames


class TritonEmbedder:
    """Both models through Triton at ``addr`` (``REELS_TRITON_ADDR``)."""

    enabled = True

    def __init__(self, addr: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.client = ModelClient(addr, timeout=timeout_s)
        self.timeout_s = timeout_s

    async def embed(self, frames: np.ndarray, text: str) -> VideoEmbeddings:
        """Vectors for one video: ``frames`` uint8 [n, 224, 224, 3] (1 <= n <= 16,
        svc_transcode/frames.py), ``text`` from ``video_text``. One visual request
        (all frames) and one text request, concurrently, within ``timeout_s``."""
        frames = check_frames(frames)
        try:
            (rows, visual_version), (texts, text_version) = await asyncio.wait_for(
                asyncio.gather(
                    self.client.embed_frames_versioned(frames),
                    self.client.embed_texts_versioned([text]),
                ),
                self.timeout_s,
            )
        except (ValueError, TypeError):
            raise
        except TimeoutError as exc:
            raise EmbeddingUnavailable(
                f"embeddings at {self.client.addr}: no answer within {self.timeout_s:.0f}s"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - ModelError, grpc/tritonclient errors of any kind
            raise EmbeddingUnavailable(f"embeddings at {self.client.addr}: {exc}") from exc
        return vectors_of(rows, texts[0], visual_version=visual_version, text_version=text_version)

    async def close(self) -> None:
        await self.client.close()


def vectors_of(
    frame_embeddings: np.ndarray,
    text_embedding: np.ndarray,
    *,
    visual_version: str = embedding_space.VISUAL_MODEL_VERSION,
    text_version: str = embedding_space.TEXT_MODEL_VERSION,
) -> VideoEmbeddings:
    """The video's vectors from the models' raw outputs: frame embeddings float32
    [n, 1280] (not normalised) and the text embedding float32 [384], made by the
    given served versions of the two models."""
    visual = embedding_space.pool_frames(frame_embeddings)
    text = embedding_space.normalise(np.asarray(text_embedding, dtype=np.float32))
    if visual.shape != (VISUAL_EMBEDDING_DIM,) or text.shape != (TEXT_EMBEDDING_DIM,):
        raise ValueError(f"unexpected embedding shapes {visual.shape}, {text.shape}")
    return VideoEmbeddings(
        visual=visual,
        text=text,
        video=embedding_space.combine(visual, text),
        model_version=embedding_space.space_version(visual_version, text_version),
    )


class NoEmbedder:
    """``REELS_EMBEDDINGS=off``: publish without vectors."""

    enabled = False

    async def embed(self, frames: np.ndarray, text: str) -> VideoEmbeddings | None:
        return None

    async def close(self) -> None:
        return None
