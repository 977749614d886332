"""Post-processing stages on hand-built lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys.beyond_accuracy import intra_list_diversity
from personalization_pipeline.recsys.candidates import CandidateCodes
from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.metrics import evaluate
from personalization_pipeline.recsys.postprocess import (
    diversify,
    drop_dismissed_categories,
    drop_seen,
    rationale,
    sort_lists,
    with_confidence,
)


def scored(items, scores, user=0):
    """One list (user code ``user``, scope 0) of items by their codes in CODES."""
    codes = [CODES.items.tolist().index(item) for item in items]
    return pd.DataFrame({"user_code": user, "scope_code": 0, "item_code": codes, "score": scores})


CODES = CandidateCodes(np.array(["new", "u"]), np.array(["s"]), np.array([*"abc", *(f"i{n}" for n in range(8))]))


def keyed_items(frame):
    return list(CODES.keyed(frame)["item_id"])


def test_lists_sort_by_score_then_item_id():
    frame = sort_lists(scored(["b", "a", "c"], [1.0, 1.0, 2.0]))
    assert keyed_items(frame) == ["c", "a", "b"] and list(frame["rank"]) == [1, 2, 3]


@pytest.mark.parametrize("limit", [None, 1, 3])
def test_sort_lists_equals_a_sort_of_the_whole_frame_with_ties_nan_and_lists_out_of_order(limit):
    rng = np.random.default_rng(4)
    rows = 500
    frame = pd.DataFrame(
        {
            "user_code": rng.integers(0, 40, rows),
            "scope_code": rng.integers(0, 3, rows),
            "item_code": rng.permutation(rows),
            "score": np.where(rng.random(rows) < 0.1, np.nan, rng.integers(0, 5, rows) / 2),
            "payload": np.arange(rows),
        }
    )
    expected = frame.assign(descending=-frame["score"]).sort_values(
        ["user_code", "scope_code", "descending", "item_code"], na_position="last"
    )
    expected["rank"] = expected.groupby(["user_code", "scope_code"]).cumcount() + 1
    if limit is not None:
        expected = expected[expected["rank"] <= limit]
    expected = expected.drop(columns="descending").reset_index(drop=True)
    pd.testing.assert_frame_equal(sort_lists(frame, limit), expected, check_dtype=False)
    grouped = frame.sort_values(["user_code", "scope_code"], kind="stable")  # the usual input: grouped by list
    pd.testing.assert_frame_equal(sort_lists(grouped, limit), expected, check_dtype=False)
    assert sort_lists(frame.iloc[:0], limit).empty


def test_seen_items_are_removed():
    history = InteractionMatrix.from_frame(pd.DataFrame({"user_id": ["u"], "item_id": ["b"], "weight": [-3.0]}))
    user_rows, item_cols = history.users.positions(CODES.users), history.items.positions(CODES.items)
    assert keyed_items(drop_seen(scored(["a", "b"], [1.0, 2.0], user=1), history.seen, user_rows, item_cols)) == ["a"]


def test_a_consistently_dismissed_category_is_filtered_and_a_mixed_one_kept():
    frame = scored(["a", "b", "c"], [3.0, 2.0, 1.0])
    dismissals = pd.Series([4.0, 4.0, 1.0])  # per row: the user's dismissals in the row's category
    positives = pd.Series([0.0, 3.0, 0.0])
    kept = drop_dismissed_categories(frame, dismissals, positives, min_dismissals=3, share=0.8)
    assert keyed_items(kept) == ["b", "c"]  # a: 4 of 4 dismissed; b: 4 of 7; c: too few to judge


def test_mmr_raises_intra_list_diversity_at_a_bounded_accuracy_cost():
    items = [f"i{n}" for n in range(8)]
    categories = pd.Series(["x", "x", "x", "x", "y", "y", "z", "z"], index=items)
    frame = scored(items, [1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65])
    category_codes = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    plain = CODES.keyed(diversify(frame, category_codes, 0.0, 4))
    diverse = CODES.keyed(diversify(frame, category_codes, 0.5, 4))
    assert list(plain["item_id"]) == ["i0", "i1", "i2", "i3"]
    assert list(diverse["item_id"]) == ["i0", "i4", "i6", "i1"]
    assert list(diverse["rank"]) == [1, 2, 3, 4] and list(diverse["diversified"]) == [False, True, True, False]
    assert intra_list_diversity(diverse, categories, 4) > intra_list_diversity(plain, categories, 4)
    truth = pd.DataFrame({"user_id": "new", "item_id": ["i0", "i1", "i4"]})
    cost = evaluate(plain, truth, 4, 8, 1)["ndcg"] - evaluate(diverse, truth, 4, 8, 1)["ndcg"]
    assert abs(cost) < 0.25


def test_confidence_is_one_minus_damping_share_at_the_top_and_falls_with_the_score():
    frame = with_confidence(sort_lists(scored(["a", "b"], [2.0, 1.0])), np.array([3.0, 3.0]), damping=3.0)
    assert frame["confidence"].tolist() == pytest.approx([0.5, 0.5 * np.exp(-1.0)])
    stranger = with_confidence(sort_lists(scored(["a"], [2.0])), np.array([0.0]), damping=3.0)
    assert stranger["confidence"].tolist() == [0.0]


def test_an_item_without_a_category_resembles_no_other():
    frame = scored(["a", "b", "c"], [1.0, 0.9, 0.1])
    together = CODES.keyed(diversify(frame, np.array([0, 0, 1]), 0.9, 2))
    apart = CODES.keyed(diversify(frame, np.array([-1, -1, 1]), 0.9, 2))
    assert list(together["item_id"]) == ["a", "c"] and list(apart["item_id"]) == ["a", "b"]


def test_rationale_names_the_sources_and_boosts_that_placed_an_item():
    frame = pd.DataFrame(
        {"als_rank": [1.0, 40.0], "ease_rank": [np.nan, 2.0], "diversified": [False, True]}, index=[5, 6]
    )
    tags = rationale(frame, ["als", "ease", "fresh"], pd.Series([0.5, 0.0], index=[5, 6]))
    assert tags.tolist() == [["boost:category_affinity", "source:als"], ["boost:diversity", "source:ease"]]
