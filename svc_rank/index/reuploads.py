"""Re-upload (near-duplicate) detection at publish, on the *visual* vectors.

A video whose 1280-d visual vector (EfficientNet-Lite0 frames, mean-pooled, unit) is
within ``REELS_RANK_REUPLOAD_COSINE`` (default
:data:`reels.embedding_space.NEAR_DUPLICATE_COSINE`, 0.9) of a video **another
creator** published earlier is marked ``rank_videos.reupload_of`` = the original's id.
The threshold was measured on these visual vectors with the real model: re-encoded,
cropped, brightened or padded copies score 0.947–0.984 against their original,
different clips at most 0.75. The combined 256-d video vector is not used: half of it
is the text, which a re-uploader changes freely.

How (the ``vectors`` loop, :meth:`svc_rank.index.vectors.VectorStore.run`, off the
consumer so that a Milvus outage never blocks the catalog): rows with a visual vector
not yet checked are taken oldest ``published_at`` first; each is compared with

* Milvus collection ``videos_visual`` (``REELS_RANK_MILVUS_VISUAL_COLLECTION``):
  the top-10 visual neighbours by other creators published no later than it;
* the videos this process checked recently (:class:`Recent`), which covers Milvus'
  visibility lag for vectors upserted a moment ago (same batch or the previous one).

Among the matches at or above the threshold, the **earliest published** is the
original; when that match is itself a re-upload, its ``reupload_of`` is taken
instead, so every copy points at the first upload. The vector is then upserted into
``videos_visual`` and the row marked ``visual_checked``. A copy that reaches svc_rank
before its original (events delayed) is checked against what was there then: it stays
an original, and the later-arriving original finds no *earlier* match either.

The feed never serves a re-upload (:mod:`svc_rank.filter.eligibility`);
ExplainFeedItem reports ``reupload_of``. The check runs within one indexer interval
(1 s) of the catalog row; an instance that cached the row before that sees the mark
when its catalog entry expires (60 s), like any republish.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 10


@dataclass(frozen=True, slots=True)
class Checked:
    video_id: str
    creator_id: str
    published_ms: int
    vector: np.ndarray
    reupload_of: str


class Recent:
    """The last ``size`` checked visual vectors of this process (newest last)."""

    def __init__(self, size: int = 2000) -> None:
        self.items: deque[Checked] = deque(maxlen=size)

    def add(self, item: Checked) -> None:
        self.items.append(item)

    def matches(
        self, vector: np.ndarray, *, creator_id: str, published_ms: int, threshold: float
    ) -> list[tuple[str, float]]:
        others = [
            c for c in self.items if c.creator_id != creator_id and c.published_ms <= published_ms
        ]
        if not others:
            return []
        sims = np.stack([c.vector for c in others]) @ vector
        return [(c.video_id, float(s)) for c, s in zip(others, sims, strict=True) if s >= threshold]


@dataclass(frozen=True, slots=True)
class Known:
    """What the original's choice needs of a matched video."""

    published_ms: int
    reupload_of: str


def original_of(
    matches: Iterable[tuple[str, float]],
    known: dict[str, Known],
    *,
    threshold: float,
) -> str:
    """The original among ``matches`` (id, cosine) at or above ``threshold``: the
    earliest published (ties: the smaller id), resolved to *its* original when it is a
    re-upload itself; "" when none matches."""
    best: tuple[int, str] | None = None
    for vid, cosine in matches:
        info = known.get(vid)
        if cosine < threshold or info is None:
            continue
        key = (info.published_ms, vid)
        if best is None or key < best:
            best = key
    if best is None:
        return ""
    vid = best[1]
    return known[vid].reupload_of or vid


def visual_filter(creator_id: str, published_ms: int) -> str:
    """Milvus expression: another creator's video, published no later (the literal
    quoted as :func:`reels.vectors.filter_eq` does)."""
    return f"creator_id != {json.dumps(creator_id)} and published_at <= {int(published_ms)}"


def as_unit(vector: Sequence[float]) -> np.ndarray | None:
    arr = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(arr)) if arr.size else 0.0
    return arr / norm if norm > 0 and np.isfinite(norm) else None
