"""Intra-list diversity and novelty against hand-computed cases."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from personalization_pipeline.recsys.beyond_accuracy import intra_list_diversity, novelty


def _recs(lists: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(u, item, r) for u, items in lists.items() for r, item in enumerate(items, start=1)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])


CATEGORIES = pd.Series({"a": "x", "b": "x", "c": "y", "d": None})


def test_intra_list_diversity_by_hand():
    recs = _recs({"u1": ["a", "b", "c"], "u2": ["a", "c"], "u3": ["a"], "u4": ["a", "d", "e"]})
    # u1: pairs ab(same) ac bc -> 2/3 differ; u2: ac -> 1/1; u3: no pair, left out;
    # u4: a=x, d=unknown (null), e=unknown (not in the map) -> ad, ae differ, de same -> 2/3
    expected = (2 / 3 + 1 + 2 / 3) / 3
    assert intra_list_diversity(recs, CATEGORIES, k=10) == pytest.approx(expected)
    # k=2 cuts u1 to [a, b] (same category: 0) and u4 to [a, d] (differ: 1)
    assert intra_list_diversity(recs, CATEGORIES, k=2) == pytest.approx((0 + 1 + 1) / 3)


def test_intra_list_diversity_without_pairs_is_zero():
    assert intra_list_diversity(_recs({"u": ["a"]}), CATEGORIES, k=5) == 0.0


def test_novelty_by_hand():
    item_users = pd.Series({"a": 3, "b": 1})  # 3 training users
    recs = _recs({"u1": ["a", "b"], "u2": ["c"]})
    # p(a) = 4/4 -> 0 bits; p(b) = 2/4 -> 1 bit; p(c) = 1/4 -> 2 bits (never seen)
    # u1 mean 0.5, u2 mean 2.0 -> 1.25
    assert novelty(recs, item_users, n_users=3, k=10) == pytest.approx(1.25)
    assert novelty(recs, item_users, n_users=3, k=1) == pytest.approx((0 + 2) / 2)
    assert novelty(_recs({}), item_users, n_users=3, k=1) == 0.0
    assert math.isfinite(novelty(recs, pd.Series(dtype=float), n_users=0, k=3))
