"""Candidate merge and the non-model sources, on hand-built cases."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys import matrices
from personalization_pipeline.recsys.candidates import CandidateBatches, CandidateCodes, merge_candidates
from personalization_pipeline.recsys.matrices import MARKS_PER_STEP, InteractionMatrix
from personalization_pipeline.recsys.popularity import Popularity
from personalization_pipeline.recsys.sources import FreshScorer, NeighbourScorer
from personalization_pipeline.recsys.splits import random_folds

ITEMS = "abcde"


def ranked(rows):
    """A source's list in codes (one user and scope; items a..e are codes 0..4)."""
    return pd.DataFrame(
        [(0, 0, ITEMS.index(item), rank, score) for item, rank, score in rows],
        columns=["user_code", "scope_code", "item_code", "rank", "score"],
    )


def test_merge_keeps_every_source_score_and_rank_and_cuts_by_best_rank():
    lists = {
        "als": ranked([("a", 1, 0.9), ("b", 2, 0.8), ("c", 3, 0.1)]),
        "ease": ranked([("d", 1, 5.0), ("b", 2, 4.0), ("e", 3, 3.0)]),
    }
    merged = merge_candidates(lists, size=4)
    codes = CandidateCodes(np.array(["u"]), np.array(["s"]), np.array(list(ITEMS)))
    keyed = codes.keyed(merged).set_index("item_id")
    assert list(keyed.index) == ["a", "d", "b", "c"]  # best rank first; b (listed twice) before c
    b = keyed.loc["b"]
    assert (b["als_score"], b["als_rank"], b["ease_score"], b["ease_rank"]) == (0.8, 2, 4.0, 2)
    assert np.isnan(keyed.loc["a", "ease_score"]) and np.isnan(keyed.loc["a", "ease_rank"])
    with pytest.raises(ValueError):
        merge_candidates(lists, size=0)


def random_lists(rng: np.random.Generator, users: int, scopes: int, items: int, length: int) -> pd.DataFrame:
    """A source's ranked lists: per (user, scope), ``length`` distinct items (an item may sit in
    several scopes), ranks 1.. with gaps where a list was cut, scores on a coarse grid (ties)."""
    rows = []
    for user in range(100, 100 + users):  # codes need not start at 0
        for scope in range(scopes):
            picked = rng.choice(items, size=rng.integers(0, length + 1), replace=False)
            ranks = np.sort(rng.choice(np.arange(1, 2 * length + 1), size=len(picked), replace=False))
            rows += [
                (user, scope, item, rank, rng.integers(0, 4) / 4) for item, rank in zip(picked, ranks, strict=True)
            ]
    return pd.DataFrame(rows, columns=["user_code", "scope_code", "item_code", "rank", "score"])


def reference_merge(lists: dict[str, pd.DataFrame], size: int) -> pd.DataFrame:
    """The merge's definition in pandas: an outer join of the sources on (user, scope, item), the
    best rank and the number of sources per pair, then the first ``size`` per list."""
    merged = None
    for name, frame in lists.items():
        renamed = frame.rename(columns={"score": f"{name}_score", "rank": f"{name}_rank"})
        merged = (
            renamed
            if merged is None
            else merged.merge(renamed, on=["user_code", "scope_code", "item_code"], how="outer")
        )
    assert merged is not None
    rank_columns = [f"{name}_rank" for name in lists]
    merged = merged.assign(best=merged[rank_columns].min(axis=1), missing=merged[rank_columns].isna().sum(axis=1))
    merged = merged.sort_values(["user_code", "scope_code", "best", "missing", "item_code"])
    merged = merged.groupby(["user_code", "scope_code"]).head(size).drop(columns=["best", "missing"])
    columns = ["user_code", "scope_code", "item_code"] + [f"{n}_{c}" for n in lists for c in ("score", "rank")]
    return merged[columns].astype(dict.fromkeys(columns[3:], np.float64)).reset_index(drop=True)


@pytest.mark.parametrize("step", [MARKS_PER_STEP, 7])
def test_merge_equals_an_outer_join_cut_by_best_rank_then_sources_then_item(monkeypatch, step):
    rng = np.random.default_rng(11)
    lists = {
        name: random_lists(rng, users=30, scopes=3, items=25, length=length)
        for name, length in (("als", 8), ("ease", 8), ("popularity", 5), ("neighbours", 3))
    }
    lists["empty"] = lists["als"].iloc[:0]
    monkeypatch.setattr(matrices, "MARKS_PER_STEP", step)  # 7: many small steps over the range
    for size in (1, 4, 30):
        merged = merge_candidates(lists, size)
        pd.testing.assert_frame_equal(merged, reference_merge(lists, size), check_dtype=False)
    assert merge_candidates({"als": lists["empty"]}, 5).empty


def test_candidates_exclude_seen_items_and_do_not_depend_on_the_batch_size():
    frame = pd.DataFrame(
        {"user_id": ["u1", "u1", "u2", "u3", "u3"], "item_id": ["a", "b", "a", "c", "b"], "weight": 1.0}
    )
    history = InteractionMatrix.from_frame(frame)
    sources = {"popularity": Popularity().fit(history)}
    scopes = pd.DataFrame({"item_id": ["a", "b", "c"], "scope": "s"})
    codes = CandidateCodes.build(["u3", "u1", "u2"], scopes)
    whole_batch = CandidateBatches(sources, codes, scopes, history, size=3, batch_size=10)
    single_users = CandidateBatches(sources, codes, scopes, history, size=3, batch_size=1)
    assert list(single_users.starts) == [0, 1, 2]
    whole = pd.concat([whole_batch(start) for start in whole_batch.starts])
    batched = pd.concat([single_users(start) for start in single_users.starts])
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), batched.reset_index(drop=True))
    keyed = codes.keyed(whole)
    assert list(keyed[keyed["user_id"] == "u1"]["item_id"]) == ["c"]
    assert list(keyed[keyed["user_id"] == "u2"]["item_id"]) == ["b", "c"]  # by popularity, then id


def test_neighbour_scorer_sums_the_similarity_of_neighbours_who_answered_positively():
    frame = pd.DataFrame(
        {"user_id": ["n1", "n1", "n2", "n2", "u"], "item_id": ["x", "y", "x", "z", "w"], "weight": [1, 1, 1, -1, 1]}
    )
    history = InteractionMatrix.from_frame(frame)
    neighbours = pd.DataFrame({"user_id": ["u", "u"], "similar_user_id": ["n1", "n2"], "similarity_score": [0.9, 0.6]})
    scorer = NeighbourScorer(neighbours, history)
    scores = dict(zip(scorer.item_ids, scorer.score(np.array(["u", "nobody"]), history)[0], strict=True))
    assert scores["x"] == pytest.approx(1.5) and scores["y"] == pytest.approx(0.9)
    assert np.isnan(scores["z"]) and np.isnan(scores["w"])  # a dismissal is no proposal
    assert np.isnan(scorer.score(np.array(["nobody"]), history)).all()


def test_fresh_scorer_proposes_recently_approved_items_newest_first():
    catalog = pd.DataFrame(
        {
            "item_id": ["old", "new", "newer", "unknown"],
            "approved_at": [datetime(2024, 1, 1), datetime(2024, 3, 1), datetime(2024, 3, 9), None],
        }
    )
    scorer = FreshScorer(catalog, datetime(2024, 3, 10), days=14)
    scores = dict(zip(scorer.item_ids, scorer.score(np.array(["u"]), None)[0], strict=True))  # type: ignore[arg-type]
    assert scores["newer"] > scores["new"] and np.isnan(scores["old"]) and np.isnan(scores["unknown"])


def test_random_folds_test_every_pair_exactly_once():
    frame = pd.DataFrame({"user_id": ["u"] * 7 + ["v"] * 3, "item_id": list("abcdefg") + list("abc"), "weight": 1.0})
    folds = random_folds(frame, k=3, seed=1)
    tested = pd.concat([test for _, test in folds])
    assert len(tested) == len(frame) and not tested.duplicated(["user_id", "item_id"]).any()
    for train, test in folds:
        assert not set(zip(train.user_id, train.item_id, strict=True)) & set(
            zip(test.user_id, test.item_id, strict=True)
        )
        assert test.groupby("user_id").size().max() <= 3
    assert [len(t) for _, t in folds] == [len(t) for _, t in random_folds(frame.iloc[::-1], k=3, seed=1)]
