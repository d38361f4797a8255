"""Page assembly with the feed's guardrails, and an independent checker.

Rules (RECSYS.md, Evaluation): no already-served video; at most ``per_creator``
(2) items of one creator in any ``window`` (10) consecutive positions; creators
the user asked to "see fewer of" are left out of the page (the simulator's
reading of "honoured": 0 items from them on the next pages).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PER_CREATOR = 2
WINDOW = 10


def assemble_page(
    order: np.ndarray,
    videos: np.ndarray,
    creators: np.ndarray,
    blocked: np.ndarray,
    *,
    length: int = 20,
    per_creator: int = PER_CREATOR,
    window: int = WINDOW,
) -> np.ndarray:
    """Greedy page: walk candidates in ``order`` and keep those the rules allow.

    ``order``: candidate indices best first; ``videos``/``creators``: ids per
    candidate ``[n]``; ``blocked``: bool ``[n]`` (already served or a
    see-fewer creator). Returns candidate indices, at most ``length``.
    For a single window this greedy pick is the best possible page for any
    score (the per-creator cap is a matroid), so the oracle stays an upper bound.
    """
    page: list[int] = []
    page_creators: list[int] = []
    used: set[int] = set()
    for i in order:
        if blocked[i] or int(videos[i]) in used:
            continue
        c = int(creators[i])
        if page_creators[-(window - 1) :].count(c) >= per_creator:
            continue
        page.append(int(i))
        page_creators.append(c)
        used.add(int(videos[i]))
        if len(page) == length:
            break
    return np.asarray(page, dtype=np.int64)


@dataclass
class Violations:
    """Counts of broken rules over checked pages."""

    repeats: int = 0  # items already served before, or twice on the page
    creator_cap: int = 0  # windows of ``WINDOW`` with more than ``PER_CREATOR`` of a creator
    see_fewer: int = 0  # items from a creator the user asked to see fewer of
    pages: int = 0

    def add(self, other: Violations) -> None:
        """Accumulate ``other`` into this."""
        self.repeats += other.repeats
        self.creator_cap += other.creator_cap
        self.see_fewer += other.see_fewer
        self.pages += other.pages

    @property
    def clean(self) -> bool:
        """True when no rule was broken."""
        return self.repeats == 0 and self.creator_cap == 0 and self.see_fewer == 0


def check_page(
    videos: np.ndarray,
    creators: np.ndarray,
    served: set[int],
    fewer: set[int],
    *,
    per_creator: int = PER_CREATOR,
    window: int = WINDOW,
) -> Violations:
    """Check one served page (video and creator ids in order) against the rules."""
    vids = [int(v) for v in videos]
    cres = [int(c) for c in creators]
    repeats = sum(1 for v in vids if v in served) + (len(vids) - len(set(vids)))
    cap = 0
    for s in range(max(1, len(cres) - window + 1)):
        w = cres[s : s + window]
        cap += any(w.count(c) > per_creator for c in set(w))
    return Violations(
        repeats=repeats, creator_cap=cap, see_fewer=sum(1 for c in cres if c in fewer), pages=1
    )
