"""Readable explanations of why an item is in the feed (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from svc_rank.candidate import EXPLORATION, FOLLOWEE, FRESH, SIMILAR, TRENDING


def explanation(
    reason: int,
    *,
    creator_id: str,
    hashtags: Sequence[str],
    user_tags: Sequence[str],
    region: str = "",
) -> str:
    if reason == SIMILAR:
        shared = [t for t in user_tags if t in hashtags]
        return f"Because you watched #{shared[0]}" if shared else "Similar to videos you watched"
    if reason == FOLLOWEE:
        return f"From @{creator_id} you follow"
    if reason == TRENDING:
        return f"Trending in {region}" if region else "Trending now"
    if reason == FRESH:
        return f"New from @{creator_id}"
    if reason == EXPLORATION:
        return f"Something different: #{hashtags[0]}" if hashtags else "Something different to try"
    return "Recommended for you"
