"""The user vector's decay (svc_rank/index/user_state.py): newer watches weigh more,
by a half-life of event time, whatever order the events arrive in."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from svc_rank.index.user_state import decayed_sum

H = 3 * 86400.0
DAY_MS = 86_400_000


def unit(i: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def test_a_watch_one_half_life_older_weighs_half() -> None:
    s, t = decayed_sum(None, 0, unit(0), 1.0, 0, H)
    s, t = decayed_sum(s, t, unit(1), 1.0, 3 * DAY_MS, H)
    assert s[0] == pytest.approx(0.5, rel=1e-5)
    assert s[1] == pytest.approx(1.0)
    assert t == 3 * DAY_MS


def test_arrival_order_does_not_change_the_vector() -> None:
    events = [(unit(0), 1.0, 0), (unit(1), 0.5, DAY_MS), (unit(2), 0.25, 5 * DAY_MS)]
    results = []
    for order in itertools.permutations(events):
        s, t = None, 0
        for vec, w, at in order:
            s, t = decayed_sum(s, t, vec, w, at, H)
        results.append(s / np.linalg.norm(s))
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=1e-5)


def test_a_new_model_dimension_starts_the_vector_afresh() -> None:
    s, _ = decayed_sum(np.ones(4, dtype=np.float32), 0, unit(0, 8), 1.0, 10, H)
    assert s.shape == (8,)
