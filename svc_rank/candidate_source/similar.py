"""``similar``: Milvus ANN search with the user vector (cosine), the user's own
videos excluded inside Milvus. No vector (a new user) → no candidates; Milvus
unavailable → SourceUnavailable (the feed falls back to trending and fresh)."""

from __future__ import annotations

from svc_rank.candidate import SIMILAR, Candidate, FeedRequest
from svc_rank.index.vectors import VectorStore


class SimilarSource:
    name = "similar"
    reason = SIMILAR

    def __init__(self, vectors: VectorStore, k: int) -> None:
        self.vectors = vectors
        self.k = k

    async def fetch(self, request: FeedRequest, fallbacks: set[int]) -> list[Candidate]:
        if request.user_vector is None:
            return []
        hits = await self.vectors.search(
            request.user_vector.tolist(), self.k, exclude_creator=request.user_id
        )
        return [Candidate(vid, {SIMILAR}, similarity=score) for vid, score in hits]
