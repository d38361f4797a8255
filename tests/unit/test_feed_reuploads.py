"""Re-upload detection's choice of the original and eligibility (pure parts)."""

from __future__ import annotations

import numpy as np

from svc_rank.candidate import Candidate
from svc_rank.filter.eligibility import eligible
from svc_rank.index.reuploads import Checked, Known, Recent, original_of, visual_filter


def test_the_original_is_the_earliest_match_resolved_through_its_own_original() -> None:
    known = {
        "a": Known(published_ms=100, reupload_of=""),
        "b": Known(published_ms=50, reupload_of="first"),
        "c": Known(published_ms=10, reupload_of=""),
    }
    # c is earliest but below the threshold; b is the earliest match, itself a copy.
    assert original_of([("a", 0.95), ("b", 0.93), ("c", 0.5)], known, threshold=0.9) == "first"
    assert original_of([("a", 0.95)], known, threshold=0.9) == "a"
    assert original_of([("c", 0.89)], known, threshold=0.9) == ""
    assert original_of([], known, threshold=0.9) == ""


def test_recent_matches_only_other_creators_published_no_later() -> None:
    v = np.zeros(4, dtype=np.float32)
    v[0] = 1.0
    recent = Recent(size=10)
    recent.add(Checked("mine", "me", 10, v, ""))
    recent.add(Checked("later", "x", 99, v, ""))
    recent.add(Checked("theirs", "y", 20, v, ""))
    assert recent.matches(v, creator_id="me", published_ms=50, threshold=0.9) == [("theirs", 1.0)]
    assert visual_filter('a"b', 5) == 'creator_id != "a\\"b" and published_at <= 5'


class _V:
    def __init__(self, creator: str, reupload_of: str = "") -> None:
        self.creator_id = creator
        self.master_playlist_key = "m.m3u8"
        self.reupload_of = reupload_of


def test_reuploads_and_hidden_creators_are_not_eligible() -> None:
    catalog = {"o": _V("a"), "r": _V("b", reupload_of="o"), "h": _V("c"), "k": _V("d")}
    got = eligible(
        [Candidate(v) for v in catalog],
        catalog,
        user_id="u",
        served=frozenset(),
        hidden_creators=frozenset({"c"}),
    )
    assert [c.video_id for c in got] == ["o", "k"]
