"""The shared video embedding space: one 256-d unit vector per video, and how it is made.

svc_transcode computes it at publish (``combine``) and sends it in ``video.published``
(``video_embedding``, with ``embedding_model_version`` = ``MODEL_VERSION``); svc_rank
indexes it in Milvus and builds **user vectors in the same space** as weighted means
of the video vectors a user watched, L2-normalised (``normalise``). Any vector that is
to be compared with video vectors (a user vector, a query) must come from video
vectors of the same ``MODEL_VERSION`` or from ``combine`` itself: vectors of different
versions are not comparable, and a version change means re-embedding (svc_transcode's
backfill) and a new index.

Inputs (both L2-normalised before they get here):

* visual ``v``: float32 [1280], EfficientNet-Lite0 (Triton ``visual_embedding``)
  frame embeddings of up to 16 frames sampled evenly across the video, mean-pooled
  and L2-normalised (svc_transcode/frames.py, svc_transcode/embeddings.py);
* text ``t``: float32 [384], MiniLM-L6-v2 (Triton ``text_embedding``) of title,
  description and hashtags, already unit norm.

The video vector::

    x = [ sqrt(VISUAL_WEIGHT) * v , sqrt(TEXT_WEIGHT) * t ]      # [1664], |x| = 1
    video = normalise(x @ P)                                     # [256],  |video| = 1

with ``VISUAL_WEIGHT + TEXT_WEIGHT = 1``, so before projection
``cos(x_a, x_b) = VISUAL_WEIGHT * cos(v_a, v_b) + TEXT_WEIGHT * cos(t_a, t_b)``:
the weights are the shares of each modality in the similarity. Equal shares (0.5 /
0.5): the text says what a reel is about, the frames what it looks like, and short
videos often have little text, so neither should dominate.

``P`` is a fixed Gaussian random projection, float32 [1664, 256], entries
N(0, 1/256), drawn from NumPy's legacy ``RandomState(PROJECTION_SEED)`` (its stream
is frozen by NumPy's compatibility policy, so every process, machine and NumPy
version builds the same matrix; ``PROJECTION_FINGERPRINT`` is checked in the unit
tests). Why a random projection rather than a learned one (PCA): it needs no
training data and never changes. By Johnson–Lindenstrauss it preserves inner products
of unit vectors up to an error of about ``(1 - cos^2) / sqrt(256)`` (one standard
deviation: ~0.06 for unrelated vectors, ~0.01 at cosine 0.9), which is what ranking
by cosine needs; 256 dimensions keep exact Milvus search of 100k vectors at ~15 ms.

Note on the visual part: EfficientNet's pooled features are non-negative (ReLU6),
so two unrelated videos still have a visual cosine well above 0 (measured 0.2-0.8).
Near-duplicate detection therefore uses the *visual* vectors and a high threshold
(``NEAR_DUPLICATE_COSINE``), not the combined vector.
"""

from __future__ import annotations

import functools

import numpy as np

from reels.model_client import (
    TEXT_EMBEDDING_DIM,
    TEXT_EMBEDDING_MODEL,
    VISUAL_EMBEDDING_DIM,
    VISUAL_EMBEDDING_MODEL,
)

VIDEO_EMBEDDING_DIM = 256
VISUAL_WEIGHT = 0.5
TEXT_WEIGHT = 1.0 - VISUAL_WEIGHT
PROJECTION_SEED = 1729
# Triton model versions (models/repository/<name>/<version>/): bump with the model.
VISUAL_MODEL_VERSION = "1"
TEXT_MODEL_VERSION = "1"


def space_version(visual_version: str, text_version: str) -> str:
    """``embedding_model_version`` of vectors made from the given served versions of the
    two models (Triton's ``model_version`` in their responses) and this projection."""
    return (
        f"{VISUAL_EMBEDDING_MODEL}@{visual_version}"
        f"+{TEXT_EMBEDDING_MODEL}@{text_version}"
        f"+rp{VIDEO_EMBEDDING_DIM}s{PROJECTION_SEED}w{round(VISUAL_WEIGHT * 100)}"
    )


MODEL_VERSION = space_version(VISUAL_MODEL_VERSION, TEXT_MODEL_VERSION)
"""``embedding_model_version`` of vectors from version 1 of both models:
``visual_embedding@1+text_embedding@1+rp256s1729w50``. What a published video
records is :func:`space_version` of the versions Triton actually answered with."""

# sum(P[:8, :8]) and P[0, 0] of the projection: a changed generator shows up here.
PROJECTION_FINGERPRINT = (-0.6241059303283691, -0.042958714067935944)

NEAR_DUPLICATE_COSINE = 0.9
"""Default cosine of two *visual* vectors (1280-d, unit) above which one video is a
near-duplicate (re-upload) of the other. Measured with the real model on tiny
synthetic clips (tests/integration/test_transcode_embeddings.py, 6 frames each): the
same clip re-encoded at another size and quality with 10-20 % cropped, brightened or
padded with borders scored 0.947-0.984 against the original; different clips scored
0.24-0.75 (0.75: another synthetic test pattern, the hardest negative)."""

_INPUT_DIM = VISUAL_EMBEDDING_DIM + TEXT_EMBEDDING_DIM


def normalise(vector: np.ndarray) -> np.ndarray:
    """``vector / |vector|`` as float32 (last axis); a zero vector stays zero."""
    vector = np.asarray(vector, dtype=np.float32)
    norm = np.linalg.norm(vector, axis=-1, keepdims=True)
    return np.divide(vector, norm, out=np.zeros_like(vector), where=norm > 0)


@functools.cache
def projection_matrix() -> np.ndarray:
    """P: float32 [1664, 256], read-only; rows 0-1279 visual, 1280-1663 text."""
    rng = np.random.RandomState(PROJECTION_SEED)  # noqa: NPY002 - frozen stream, on purpose
    matrix = rng.standard_normal((_INPUT_DIM, VIDEO_EMBEDDING_DIM)) / np.sqrt(VIDEO_EMBEDDING_DIM)
    out = matrix.astype(np.float32)
    out.flags.writeable = False
    return out


def pool_frames(frame_embeddings: np.ndarray) -> np.ndarray:
    """The visual vector of a video: the mean of its frames' embeddings, L2-normalised.

    ``frame_embeddings``: float32 [n, 1280] (ModelClient.embed_frames), n >= 1.
    Returns float32 [1280], unit norm.
    """
    rows = np.asarray(frame_embeddings, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != VISUAL_EMBEDDING_DIM or len(rows) == 0:
        raise ValueError(
            f"frame embeddings must be [n>=1, {VISUAL_EMBEDDING_DIM}], got {rows.shape}"
        )
    return normalise(rows.mean(axis=0))


def combine(visual: np.ndarray | None, text: np.ndarray | None) -> np.ndarray:
    """The video vector: float32 [256], unit norm (see the module docstring).

    ``visual``: float32 [1280] and ``text``: float32 [384], each L2-normalised (they
    are normalised again here, harmlessly). Either may be None (e.g. a text-only
    query): its part of ``x`` is zero, so the result compares with video vectors by
    that modality alone. Also accepts batches ([m, 1280] and [m, 384] -> [m, 256]).
    """
    if visual is None and text is None:
        raise ValueError("combine needs a visual or a text vector")
    parts = []
    for vec, dim, weight in (
        (visual, VISUAL_EMBEDDING_DIM, VISUAL_WEIGHT),
        (text, TEXT_EMBEDDING_DIM, TEXT_WEIGHT),
    ):
        if vec is not None:
            arr = np.asarray(vec, dtype=np.float32)
            if arr.shape[-1] != dim:
                raise ValueError(f"expected {dim}-d vectors, got shape {arr.shape}")
            parts.append(normalise(arr) * np.float32(np.sqrt(weight)))
        else:
            parts.append(None)
    batch_shape = next(p.shape[:-1] for p in parts if p is not None)
    x = np.concatenate(
        [
            p if p is not None else np.zeros((*batch_shape, dim), dtype=np.float32)
            for p, dim in zip(parts, (VISUAL_EMBEDDING_DIM, TEXT_EMBEDDING_DIM), strict=True)
        ],
        axis=-1,
    )
    return normalise(x @ projection_matrix())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (any norm)."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
