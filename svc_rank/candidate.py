"""What flows through the feed pipeline: the request, candidates and ranked items.

Pure data (no I/O), shared by every stage: candidate sources produce
:class:`Candidate`; hydration turns them into :class:`Scored` items; the mixer
orders those into the ranked list whose entries (:class:`ListItem`) are cached and
paged through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from reels.v1 import rank_pb2

SIMILAR = rank_pb2.FEED_REASON_SIMILAR
FOLLOWEE = rank_pb2.FEED_REASON_FOLLOWEE
TRENDING = rank_pb2.FEED_REASON_TRENDING
FRESH = rank_pb2.FEED_REASON_FRESH
EXPLORATION = rank_pb2.FEED_REASON_EXPLORATION

# When one video comes from several sources, the item's reason is the first of
# these it has: the most personal explanation wins ("from @x you follow" says more
# than "trending now").
REASON_PRIORITY = (FOLLOWEE, SIMILAR, TRENDING, FRESH, EXPLORATION)
REASON_NAMES = {
    SIMILAR: "similar",
    FOLLOWEE: "followees",
    TRENDING: "trending",
    FRESH: "fresh",
    EXPLORATION: "exploration",
}


class SourceUnavailable(Exception):
    """A candidate source could not reach its component (Milvus, svc_stream, ...)."""


@dataclass(frozen=True, slots=True)
class FeedRequest:
    """One user's ranking request as the sources and hydrators see it."""

    user_id: str
    region: str = ""
    user_vector: np.ndarray | None = None
    """Unit vector of the user's taste (None: no watch history with embeddings)."""
    followees: frozenset[str] = frozenset()
    served: frozenset[str] = frozenset()
    """Video ids served to the user within the no-repeat window."""
    positive_creators: frozenset[str] = frozenset()
    """Creators the user has shown interest in (exploration stays away from them)."""
    hidden_creators: frozenset[str] = frozenset()
    """Creators the user asked to see fewer of (never served while that lasts)."""
    seed: int = 0
    """Seeds every random choice of this list (exploration), so a rebuild is the same."""


@dataclass(slots=True)
class Candidate:
    """A video some source proposes, with what that source knows about it."""

    video_id: str
    reasons: set[int] = field(default_factory=set)
    similarity: float | None = None
    """Cosine to the user vector, when a vector search found it."""
    trending_score: float = 0.0

    @property
    def reason(self) -> int:
        for r in REASON_PRIORITY:
            if r in self.reasons:
                return r
        return rank_pb2.FEED_REASON_UNSPECIFIED


def merge(groups: list[list[Candidate]]) -> dict[str, Candidate]:
    """One candidate per video, reasons and signals combined, first-seen order kept."""
    out: dict[str, Candidate] = {}
    for group in groups:
        for c in group:
            have = out.get(c.video_id)
            if have is None:
                out[c.video_id] = Candidate(
                    c.video_id, set(c.reasons), c.similarity, c.trending_score
                )
                continue
            have.reasons |= c.reasons
            if c.similarity is not None:
                have.similarity = c.similarity
            have.trending_score = max(have.trending_score, c.trending_score)
    return out


@dataclass(slots=True)
class Scored:
    """A hydrated, scored candidate, ready for the mixer."""

    video_id: str
    creator_id: str
    score: float
    reason: int
    reasons: frozenset[int]
    embedding: np.ndarray | None = None
    explanation: str = ""
    components: dict[str, float] = field(default_factory=dict)
    """The rule scorer's 0..1 inputs (completion, engagement, affinity, deep_model)."""


@dataclass(slots=True)
class ListItem:
    """One entry of a ranked list as it is cached and served (JSON-friendly)."""

    video_id: str
    creator_id: str
    title: str
    duration_s: float
    score: float
    reason: int
    explanation: str
    view_count: int = 0
    like_count: int = 0
    completion_rate: float = 0.0
    streaming_url: str = ""
    thumbnail_url: str = ""
    signed: bool = True
    """False while the URLs are still to be signed (items past the first page of a new
    list are signed off the request path); a signed item with an empty
    ``streaming_url`` is one svc_stream cannot play, and is never served."""

    def to_json(self) -> list[object]:
        return [
            self.video_id,
            self.creator_id,
            self.title,
            self.duration_s,
            self.score,
            self.reason,
            self.explanation,
            self.view_count,
            self.like_count,
            self.completion_rate,
            self.streaming_url,
            self.thumbnail_url,
            self.signed,
        ]

    @classmethod
    def from_json(cls, row: list[object]) -> ListItem:
        return cls(*row)  # type: ignore[arg-type]
