"""The mixer: scored candidates → one ranked list, under the feed's heuristics (pure).

Greedy, position by position (home-mixer's shape):

1. **Reserved shares.** Positions are reserved for exploration and for fresh videos
   by two accumulators (``acc += share`` per position, a slot when it reaches 1):
   with the default 10 % each, exploration takes positions 4, 14, 24, … and fresh
   9, 19, 29, … — so every page of 10 or more carries both, spread rather than
   bunched at the end. A reserved slot takes the best remaining candidate of its
   kind (exploration: recalled only by exploration; fresh: recalled by fresh), or
   the best of any kind when none is left.
2. **Creator saturation.** A creator's nth item (n = 0 for the first already in the
   list) has its score multiplied by ``(1 - f)·d^n + f`` (X's author-diversity
   discount; default f = 0.25, d = 0.5: 1, 0.625, 0.4375, …), so a creator's second
   video must beat others by more to stay on top.
3. **Creator cap.** Never more than ``creator_cap`` (2) items of one creator in any
   10 consecutive positions. A candidate that would break it waits; when only such
   candidates remain the list ends there (a short list, never a broken rule).
4. **Near-duplicates.** A candidate whose embedding is within
   ``near_duplicate_cosine`` of one already in the list is dropped: checked
   against the whole list, so no page (whatever its size) holds two. The default is
   :data:`reels.embedding_space.NEAR_DUPLICATE_COSINE` (0.9), the same number as
   re-upload detection. Here it applies to the combined 256-d video vectors (half
   visual, half text), where it is stricter than on visual vectors alone: two
   videos reach it only when both what they show and what they say nearly match.
   Re-uploads whose text differs are caught earlier, on the visual vectors, and never
   reach the mixer (:mod:`svc_rank.index.reuploads`, ``eligibility``).

The discount needs the current count of a creator, which changes as the list grows;
a lazy max-heap re-scores an entry only when its creator's count moved since it was
pushed, so building a 200-item list from 500 candidates costs about a millisecond.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from reels.embedding_space import NEAR_DUPLICATE_COSINE
from svc_rank.candidate import EXPLORATION, FOLLOWEE, FRESH, SIMILAR, Scored

CAP_WINDOW = 10


@dataclass(frozen=True, slots=True)
class MixRules:
    size: int = 200
    exploration_share: float = 0.10
    fresh_share: float = 0.10
    saturation_floor: float = 0.25
    saturation_decay: float = 0.5
    creator_cap: int = 2
    near_duplicate_cosine: float = NEAR_DUPLICATE_COSINE


def creator_discount(n: int, floor: float, decay: float) -> float:
    """``(1 - f)·d^n + f`` for a creator's nth item (n = 0: no discount)."""
    return (1.0 - floor) * decay**n + floor


def reserved_slots(size: int, exploration_share: float, fresh_share: float) -> list[int | None]:
    """Per position: EXPLORATION, FRESH or None (open). Exploration wins a tie; the
    fresh slot then moves to the next position."""
    slots: list[int | None] = []
    explore_acc, fresh_acc, fresh_owed = 0.5, 0.0, 0
    for _ in range(size):
        explore_acc += exploration_share
        fresh_acc += fresh_share
        if fresh_acc >= 1.0 - 1e-9:
            fresh_acc -= 1.0
            fresh_owed += 1
        if explore_acc >= 1.0 - 1e-9:
            explore_acc -= 1.0
            slots.append(EXPLORATION)
        elif fresh_owed:
            fresh_owed -= 1
            slots.append(FRESH)
        else:
            slots.append(None)
    return slots


def _is_exploration(item: Scored) -> bool:
    return EXPLORATION in item.reasons and not item.reasons & {SIMILAR, FOLLOWEE}


class _Mixer:
    def __init__(self, items: Sequence[Scored], rules: MixRules) -> None:
        self.items = items
        self.rules = rules
        self.count: dict[str, int] = {}
        self.recent: deque[str] = deque(maxlen=CAP_WINDOW - 1)
        self.done: set[int] = set()
        self.placed: np.ndarray | None = None
        """The placed embeddings, rows ``[:n_placed]`` (grown by doubling, not
        re-stacked per check)."""
        self.n_placed = 0
        self.heaps: dict[int | None, list[tuple[float, int, int]]] = {
            None: [],
            EXPLORATION: [],
            FRESH: [],
        }
        for i, item in enumerate(items):
            entry = (-item.score, i, 0)
            self.heaps[None].append(entry)
            if _is_exploration(item):
                self.heaps[EXPLORATION].append(entry)
            if FRESH in item.reasons:
                self.heaps[FRESH].append(entry)
        for heap in self.heaps.values():
            heapq.heapify(heap)

    def adjusted(self, item: Scored, n: int) -> float:
        d = creator_discount(n, self.rules.saturation_floor, self.rules.saturation_decay)
        return item.score * d if item.score >= 0 else item.score / max(d, 1e-9)

    def near_duplicate(self, item: Scored) -> bool:
        if item.embedding is None or not self.n_placed:
            return False
        assert self.placed is not None
        sims = self.placed[: self.n_placed] @ item.embedding
        return bool(sims.max() >= self.rules.near_duplicate_cosine)

    def pick(self, kind: int | None) -> tuple[int, float] | None:
        heap = self.heaps[kind]
        waiting: list[tuple[float, int, int]] = []
        found: tuple[int, float] | None = None
        while heap:
            neg, i, n_at = heapq.heappop(heap)
            if i in self.done:
                continue
            item = self.items[i]
            n = self.count.get(item.creator_id, 0)
            if n != n_at:
                heapq.heappush(heap, (-self.adjusted(item, n), i, n))
                continue
            if self.recent.count(item.creator_id) >= self.rules.creator_cap:
                waiting.append((neg, i, n_at))
                continue
            if self.near_duplicate(item):
                self.done.add(i)
                continue
            found = (i, -neg)
            break
        for entry in waiting:
            heapq.heappush(heap, entry)
        return found

    def place(self, i: int) -> None:
        item = self.items[i]
        self.done.add(i)
        self.count[item.creator_id] = self.count.get(item.creator_id, 0) + 1
        self.recent.append(item.creator_id)
        e = item.embedding
        if e is not None:
            if self.placed is None:
                self.placed = np.empty((max(16, self.rules.size), *e.shape), dtype=e.dtype)
            elif self.n_placed == len(self.placed):
                self.placed = np.concatenate([self.placed, np.empty_like(self.placed)])
            self.placed[self.n_placed] = e
            self.n_placed += 1


def mix(items: Sequence[Scored], rules: MixRules) -> list[Scored]:
    """The ranked list (at most ``rules.size`` items); each item's ``score`` is its
    score after the creator discount and its ``reason`` the slot's when it filled a
    reserved one."""
    mixer = _Mixer(items, rules)
    out: list[Scored] = []
    for kind in reserved_slots(rules.size, rules.exploration_share, rules.fresh_share):
        chosen = mixer.pick(kind) if kind is not None else None
        reason = kind
        if chosen is None:
            chosen, reason = mixer.pick(None), None
        if chosen is None:
            break
        i, score = chosen
        mixer.place(i)
        item = items[i]
        out.append(replace(item, score=score, reason=reason if reason is not None else item.reason))
    return out
