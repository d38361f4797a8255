"""The mixer's heuristics (svc_rank/filter/mixer.py): saturation, the creator cap,
near-duplicates and the reserved exploration / fresh shares, on plain data."""

from __future__ import annotations

import numpy as np
import pytest

from svc_rank.candidate import EXPLORATION, FRESH, SIMILAR, TRENDING, Scored
from svc_rank.filter.mixer import CAP_WINDOW, MixRules, creator_discount, mix, reserved_slots


def item(
    vid: str, creator: str, score: float, *reasons: int, emb: np.ndarray | None = None
) -> Scored:
    rs = frozenset(reasons or (TRENDING,))
    return Scored(vid, creator, score, next(iter(rs)), rs, emb)


def test_author_diversity_discount_is_x_home_mixer_rule() -> None:
    assert creator_discount(0, 0.25, 0.5) == 1.0
    assert creator_discount(1, 0.25, 0.5) == pytest.approx(0.625)
    assert creator_discount(2, 0.25, 0.5) == pytest.approx(0.4375)
    assert creator_discount(50, 0.25, 0.5) == pytest.approx(0.25)


def test_never_more_than_two_items_of_a_creator_in_any_ten() -> None:
    items = [item(f"a{i}", "alice", 1.0 - i * 0.001) for i in range(30)]
    items += [item(f"x{i}", f"c{i}", 0.1) for i in range(40)]
    ranked = mix(items, MixRules(size=60, exploration_share=0, fresh_share=0))
    creators = [r.creator_id for r in ranked]
    for start in range(len(creators)):
        window = creators[start : start + CAP_WINDOW]
        assert window.count("alice") <= 2, (start, window)
    assert creators[0] == "alice"  # the best item still leads


def test_a_creators_second_video_must_beat_others_by_the_discount() -> None:
    ranked = mix(
        [item("a1", "alice", 1.0), item("a2", "alice", 0.9), item("b1", "bob", 0.6)],
        MixRules(size=3, exploration_share=0, fresh_share=0),
    )
    # a2 is discounted to 0.9 * 0.625 = 0.5625 < 0.6
    assert [r.video_id for r in ranked] == ["a1", "b1", "a2"]
    assert ranked[2].score == pytest.approx(0.5625)


def test_only_one_creator_left_ends_the_list_rather_than_break_the_cap() -> None:
    ranked = mix(
        [item(f"a{i}", "alice", 1.0) for i in range(5)], MixRules(size=10, exploration_share=0)
    )
    assert len(ranked) == 2


def test_near_duplicates_never_share_a_list() -> None:
    rng = np.random.default_rng(1)
    v = rng.normal(size=64).astype(np.float32)
    v /= np.linalg.norm(v)
    w = v + 0.01 * rng.normal(size=64).astype(np.float32)
    w /= np.linalg.norm(w)
    other = rng.normal(size=64).astype(np.float32)
    other /= np.linalg.norm(other)
    ranked = mix(
        [
            item("orig", "a", 0.9, emb=v),
            item("copy", "b", 0.8, emb=w),
            item("c", "c", 0.1, emb=other),
        ],
        MixRules(size=10, exploration_share=0, fresh_share=0),
    )
    assert [r.video_id for r in ranked] == ["orig", "c"]


def test_reserved_shares_put_exploration_and_fresh_on_every_page_of_ten() -> None:
    slots = reserved_slots(30, 0.10, 0.10)
    for page in range(3):
        chunk = slots[page * 10 : page * 10 + 10]
        assert chunk.count(EXPLORATION) == 1
        assert chunk.count(FRESH) == 1


def test_exploration_slot_takes_an_exploration_item_even_when_it_scores_low() -> None:
    items = [item(f"s{i}", f"c{i}", 1.0 - i * 0.01, SIMILAR) for i in range(20)]
    items.append(item("explore", "far", 0.01, EXPLORATION))
    items.append(item("new", "newbie", 0.02, FRESH))
    ranked = mix(items, MixRules(size=10))
    ids = [r.video_id for r in ranked]
    assert "explore" in ids and "new" in ids
    assert ranked[ids.index("explore")].reason == EXPLORATION
    assert ranked[ids.index("new")].reason == FRESH


def test_an_empty_share_slot_is_filled_by_the_best_of_the_rest() -> None:
    items = [item(f"s{i}", f"c{i}", 1.0 - i * 0.01, SIMILAR) for i in range(12)]
    ranked = mix(items, MixRules(size=12))
    assert [r.video_id for r in ranked] == [f"s{i}" for i in range(12)]
