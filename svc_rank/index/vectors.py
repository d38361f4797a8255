"""The video vectors in Milvus: svc_rank is the only process that opens the index.

**Index type: IVF_FLAT** (``nlist`` 1024, ``nprobe`` 32) by default. Measured on this
platform (shared DESIGN.md): exact FLAT search over 100k 256-d vectors in Milvus Lite
takes 13–16 ms, IVF about 2 ms. The feed's budget is p95 < 50 ms for a whole cache
miss (five sources, hydration, scoring, mixing, URL signing), so an exact search alone
would spend a third of it; ``similar`` is one source of five and the ranker re-orders
what it recalls, so the few neighbours IVF misses cost little. ``FLAT`` stays a
setting (``REELS_RANK_MILVUS_INDEX``) for small catalogs or recall measurements.
Milvus Lite searches its growing (unsealed) segment exhaustively, so a fresh index is
exact until enough vectors arrive to build clusters.

:class:`VectorStore` holds the open :class:`~reels.vectors.VectorIndex`. The
``vectors`` loop (:meth:`VectorStore.run`) opens it (a Lite server takes about 1.5 s to
start), ensures the collection, then copies every ``rank_videos`` row whose
embedding is not yet indexed into Milvus, once per ``interval_s``. If Milvus fails
(its process died, the file is locked) the loop raises, the supervisor restarts it and
it opens Milvus again; meanwhile :meth:`search` raises
:class:`~svc_rank.candidate.SourceUnavailable` at once and the feed serves without the
``similar`` source.

The same loop keeps a second collection, ``videos_visual`` (1280-d visual vectors,
same index type), and checks each new visual vector against it for re-uploads
(:mod:`svc_rank.index.reuploads`) before adding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from reels import faults
from reels.embedding_space import NEAR_DUPLICATE_COSINE
from reels.model_client import VISUAL_EMBEDDING_DIM
from reels.supervise import report_ready
from reels.vectors import VectorIndex, filter_eq
from svc_rank.candidate import SourceUnavailable
from svc_rank.index import reuploads
from svc_rank.models import RankVideo

log = logging.getLogger(__name__)

BATCH = 500


class VectorStore:
    """The Milvus collection of video vectors, opened by the ``vectors`` loop."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        uri: str,
        collection: str = "videos",
        dim: int = 256,
        index_type: str = "IVF_FLAT",
        nlist: int = 1024,
        nprobe: int = 32,
        timeout_s: float = 0.1,
        interval_s: float = 1.0,
        visual_collection: str = "videos_visual",
        reupload_cosine: float = NEAR_DUPLICATE_COSINE,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.uri = uri
        self.collection = collection
        self.dim = dim
        self.index_type = index_type
        self.nlist = nlist
        self.nprobe = nprobe
        self.timeout_s = timeout_s
        self.interval_s = interval_s
        self.visual_collection = visual_collection
        self.reupload_cosine = reupload_cosine
        self.index: VectorIndex | None = None
        self.visual: VectorIndex | None = None
        self.indexed = 0
        """Vectors copied to Milvus by this process (tests wait on it)."""
        self.visual_checked = 0
        """Visual vectors checked for re-uploads by this process (tests wait on it)."""
        self.recent = reuploads.Recent()
        self._broken: str = ""

    @property
    def available(self) -> bool:
        return self.index is not None

    def _open(self, collection: str | None = None, dim: int | None = None) -> VectorIndex:
        index = VectorIndex(
            self.uri,
            collection or self.collection,
            dim or self.dim,
            "COSINE",
            index_type=self.index_type,
            nlist=self.nlist,
            nprobe=self.nprobe,
        )
        try:
            index.ensure_collection()
        except BaseException:
            index.close()
            raise
        return index

    async def run(self) -> None:
        """Open Milvus, then index pending vectors forever (a supervised loop)."""
        index = await asyncio.to_thread(self._open)
        try:
            visual = await asyncio.to_thread(
                self._open, self.visual_collection, VISUAL_EMBEDDING_DIM
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(index.close)
            raise
        self.index, self.visual, self._broken = index, visual, ""
        report_ready()
        try:
            while True:
                if self._broken:
                    # A search saw Milvus fail: reopen it (the supervisor restarts us).
                    raise RuntimeError(f"vector index failed: {self._broken}")
                await self.index_pending(index)
                await self.check_reuploads(visual)
                await asyncio.sleep(self.interval_s)
        finally:
            self.index = self.visual = None
            for opened in (visual, index):
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(opened.close)

    async def check_reuploads(self, visual: VectorIndex) -> int:
        """Check unchecked visual vectors (oldest first) for re-uploads, mark each row
        (``reupload_of``, ``visual_checked``) and add the vector to ``videos_visual``;
        returns how many were checked. See :mod:`svc_rank.index.reuploads`."""
        total = 0
        threshold = self.reupload_cosine
        while True:
            async with self.sessionmaker() as session:
                rows = (
                    await session.execute(
                        select(
                            RankVideo.video_id,
                            RankVideo.creator_id,
                            RankVideo.published_at,
                            RankVideo.visual_embedding,
                            RankVideo.updated_at,
                        )
                        .where(RankVideo.visual_embedding.is_not(None), ~RankVideo.visual_checked)
                        .order_by(RankVideo.published_at, RankVideo.video_id)
                        .limit(BATCH)
                    )
                ).all()
            if not rows:
                return total
            for r in rows:
                vector = reuploads.as_unit(r.visual_embedding)
                published_ms = int(r.published_at.timestamp() * 1000)
                original = ""
                if vector is not None and vector.shape[0] == VISUAL_EMBEDDING_DIM:
                    hits = await asyncio.to_thread(
                        visual.search,
                        vector.tolist(),
                        reuploads.NEIGHBOURS,
                        reuploads.visual_filter(r.creator_id, published_ms),
                    )
                    matches = [h for h in hits if h[1] >= threshold]
                    matches += self.recent.matches(
                        vector,
                        creator_id=r.creator_id,
                        published_ms=published_ms,
                        threshold=threshold,
                    )
                    original = await self._original(matches, threshold)
                    await asyncio.to_thread(
                        visual.upsert,
                        [
                            {
                                "id": r.video_id,
                                "vector": vector.tolist(),
                                "creator_id": r.creator_id,
                                "published_at": published_ms,
                            }
                        ],
                    )
                    self.recent.add(
                        reuploads.Checked(r.video_id, r.creator_id, published_ms, vector, original)
                    )
                    if original:
                        log.info("re-upload: %s is a copy of %s", r.video_id, original)
                async with self.sessionmaker() as session, session.begin():
                    # Only the version we checked: a republish since then stays pending.
                    await session.execute(
                        update(RankVideo)
                        .where(
                            RankVideo.video_id == r.video_id,
                            RankVideo.updated_at == r.updated_at,
                        )
                        .values(visual_checked=True, reupload_of=original)
                    )
                total += 1
                self.visual_checked += 1

    async def _original(self, matches: list[tuple[str, float]], threshold: float) -> str:
        if not matches:
            return ""
        ids = list(dict.fromkeys(vid for vid, _ in matches))
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(RankVideo.video_id, RankVideo.published_at, RankVideo.reupload_of).where(
                        RankVideo.video_id.in_(ids)
                    )
                )
            ).all()
        known = {
            r.video_id: reuploads.Known(int(r.published_at.timestamp() * 1000), r.reupload_of)
            for r in rows
        }
        return reuploads.original_of(matches, known, threshold=threshold)

    async def index_pending(self, index: VectorIndex) -> int:
        """Copy rows whose vector is not in Milvus yet; returns how many."""
        total = 0
        while True:
            async with self.sessionmaker() as session:
                rows = (
                    await session.execute(
                        select(
                            RankVideo.video_id,
                            RankVideo.creator_id,
                            RankVideo.published_at,
                            RankVideo.embedding,
                            RankVideo.updated_at,
                        )
                        .where(RankVideo.embedding.is_not(None), ~RankVideo.vector_indexed)
                        .limit(BATCH)
                    )
                ).all()
            if not rows:
                return total
            items = [
                {
                    "id": r.video_id,
                    "vector": r.embedding,
                    "creator_id": r.creator_id,
                    "published_at": int(r.published_at.timestamp() * 1000),
                }
                for r in rows
                if len(r.embedding) == self.dim
            ]
            await asyncio.to_thread(index.upsert, items)
            async with self.sessionmaker() as session, session.begin():
                for r in rows:
                    # Only the version we copied: a republish since then stays pending.
                    await session.execute(
                        update(RankVideo)
                        .where(
                            RankVideo.video_id == r.video_id,
                            RankVideo.updated_at == r.updated_at,
                        )
                        .values(vector_indexed=True)
                    )
            total += len(rows)
            self.indexed += len(items)

    async def search(
        self, vector: Sequence[float], limit: int, *, exclude_creator: str = ""
    ) -> list[tuple[str, float]]:
        """Nearest videos to ``vector`` as (id, cosine), best first.

        Raises SourceUnavailable when Milvus is not open, fails or misses the deadline.
        """
        index = self.index
        if index is None:
            raise SourceUnavailable("vector index is not open")
        # Fault injection (reels.faults, target milvus): the feed's trending fallback.
        await faults.inject("milvus", SourceUnavailable)
        # Milvus Lite has no `not (...)`: `!=` with the literal quoted like filter_eq's.
        expr = (
            filter_eq("creator_id", exclude_creator).replace(" == ", " != ", 1)
            if exclude_creator
            else None
        )
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(index.search, list(vector), limit, expr), self.timeout_s
            )
        except TimeoutError as exc:
            raise SourceUnavailable(f"vector search exceeded {self.timeout_s}s") from exc
        except Exception as exc:  # noqa: BLE001 - pymilvus raises many kinds
            self._broken = str(exc)[:200] or type(exc).__name__
            raise SourceUnavailable(f"vector search failed: {exc}") from exc
