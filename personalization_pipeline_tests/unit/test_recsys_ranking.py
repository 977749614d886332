"""Top-N ranking shared by all models, popularity and global rankings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys import ranking
from personalization_pipeline.recsys.als import ALS, ALSParams
from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.popularity import Popularity, PopularityParams
from personalization_pipeline.recsys.ranking import USER_COLUMNS, global_rankings, user_rankings
from personalization_pipeline.recsys.sources import NeighbourScorer

# Items in id order ("i10" sorts before "i2") with two latent factors; uA scores by
# the first factor, uB by the second, so every score below is exact.
ITEM_FACTORS = {
    "i1": (0.9, 0.1),
    "i10": (0.5, 0.2),
    "i2": (0.5, 0.3),  # ties with i10 for uA and uC: i10 wins by id
    "i3": (0.7, 0.9),
    "i4": (0.2, 0.8),
    "i5": (0.2, 0.6),  # ties with i4 for uC: i4 wins by id
    "i6": (-0.1, 0.4),
}


def als_with(users: np.ndarray, items: np.ndarray, user_factors: np.ndarray, item_factors: np.ndarray) -> ALS:
    """An ALS model with the given factors (ids ascending)."""
    model = ALS(ALSParams(factors=2))
    model.restore({"user_ids": users, "item_ids": items, "user_factors": user_factors, "item_factors": item_factors})
    return model


MODEL = als_with(
    np.array(["uA", "uB", "uC"]),
    np.array(list(ITEM_FACTORS)),
    np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32),
    np.array(list(ITEM_FACTORS.values()), dtype=np.float32),
)
SCOPES = pd.DataFrame(
    [
        ("i1", "video"),
        ("i10", "video"),
        ("i2", "video"),
        ("i3", "video"),
        ("i3", "article"),
        ("i4", "article"),
        ("i5", "article"),
        ("i6", "article"),
        ("i99", "video"),  # unknown to the model: ignored
    ],
    columns=["item_id", "scope"],
)
HISTORY = InteractionMatrix.from_frame(
    pd.DataFrame(
        [("uA", "i1", 2.0), ("uA", "i5", 1.0), ("uB", "i3", -3.0), ("uB", "i4", 1.0)],  # uB dismissed i3
        columns=["user_id", "item_id", "weight"],
    )
)


def lists(recs: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    return {key: group["item_id"].tolist() for key, group in recs.groupby(["user_id", "scope"])}


def test_top_n_per_scope_without_seen_items_ties_by_id():
    recs = user_rankings(MODEL, ["uC", "uB", "uA", "uA", "nobody"], SCOPES, HISTORY, n=2)
    assert list(recs.columns) == USER_COLUMNS
    assert lists(recs) == {
        ("uA", "article"): ["i3", "i4"],  # i5 seen
        ("uA", "video"): ["i3", "i10"],  # i1 seen; i10 and i2 tie at 0.5
        ("uB", "article"): ["i5", "i6"],  # i3 dismissed, i4 seen
        ("uB", "video"): ["i2", "i10"],  # i3 dismissed
        ("uC", "article"): ["i3", "i4"],  # no history; i4 and i5 tie at 0.2
        ("uC", "video"): ["i1", "i3"],
    }
    # ordered by user, scope, rank; ranks 1-based; "nobody" is unknown to the model
    expected_order = recs.sort_values(["user_id", "scope", "rank"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(recs, expected_order)
    assert recs["rank"].tolist() == [1, 2] * 6
    ub_article = recs[(recs.user_id == "uB") & (recs.scope == "article")]
    assert ub_article["score"].tolist() == pytest.approx([0.6, 0.4])


def test_n_larger_than_candidates_gives_short_lists():
    recs = user_rankings(MODEL, ["uA"], SCOPES, HISTORY, n=10)
    assert lists(recs) == {("uA", "article"): ["i3", "i4", "i6"], ("uA", "video"): ["i3", "i10", "i2"]}


def test_confidence_relative_to_top_and_damped_by_history():
    recs = user_rankings(MODEL, ["uA", "uB", "uC"], SCOPES, HISTORY, n=3)
    recs = recs.set_index(["user_id", "scope", "item_id"])
    confidence = recs["confidence"]
    # uA: 2 positive items -> support 2 / (2 + 3) = 0.4 ; i10 scores 0.5 against the top 0.7
    assert confidence[("uA", "video", "i3")] == pytest.approx(0.4)
    assert confidence[("uA", "video", "i10")] == pytest.approx(0.4 * 0.5 / 0.7)
    # uA article: i6 scores -0.1, clipped to 0
    assert confidence[("uA", "article", "i6")] == 0.0
    # uB: 1 positive item (the dismissal does not count) -> 0.25
    assert confidence[("uB", "article", "i5")] == pytest.approx(0.25)
    # uC: no history -> 0
    assert (confidence.loc["uC"] == 0.0).all()
    assert confidence.between(0.0, 1.0).all()
    assert recs["confidence"].groupby(level=[0, 1]).is_monotonic_decreasing.all()


def test_unknown_users_and_no_scopes_give_empty_typed_frame():
    empty = user_rankings(MODEL, ["nobody"], SCOPES, HISTORY, n=5)
    assert empty.empty and list(empty.columns) == USER_COLUMNS
    assert str(empty["rank"].dtype) == "int64" and str(empty["user_id"].dtype) == "str"
    assert user_rankings(MODEL, ["uA"], SCOPES.iloc[0:0], HISTORY, n=5).empty
    with pytest.raises(ValueError):
        user_rankings(MODEL, ["uA"], SCOPES, HISTORY, n=0)


def brute_force(model, users, scopes, history, n) -> list[tuple[str, str, int, str]]:
    """Reference: sort every (user, scope) candidate list by (-score, item_id)."""
    scores = model.score(np.array(users), history)
    rows = []
    for u, user in enumerate(users):
        seen = set(history.seen_items(user))
        for scope, group in scopes.groupby("scope"):
            candidates = [
                (-float(scores[u, j]), item)
                for j, item in enumerate(model.item_ids)
                if item in set(group["item_id"]) and item not in seen and not np.isnan(scores[u, j])
            ]
            for rank, (_, item) in enumerate(sorted(candidates)[:n], start=1):
                rows.append((user, scope, rank, item))
    return rows


def random_case() -> tuple[ALS, np.ndarray, pd.DataFrame, InteractionMatrix]:
    """37 users, 25 items in overlapping scopes, integer factors (many exact ties), a random history."""
    rng = np.random.default_rng(3)
    users = np.array([f"u{i:03d}" for i in range(37)])
    items = np.array([f"item{i}" for i in range(25)])
    model = als_with(
        users,
        np.sort(items),
        # one decimal and few factors: many exact ties
        rng.integers(-2, 3, size=(37, 2)).astype(np.float32),
        (rng.integers(-5, 6, size=(25, 2)) / 10).astype(np.float32),
    )
    scopes = pd.DataFrame({"item_id": items, "scope": rng.choice(["a", "b", "c"], size=25)})
    scopes = pd.concat([scopes, pd.DataFrame({"item_id": items[:8], "scope": "all"})])
    frame = pd.DataFrame(
        {
            "user_id": rng.choice(users, size=120),
            "item_id": rng.choice(items, size=120),
            "weight": rng.choice([-3.0, 1.0, 2.0], size=120),
        }
    )
    return model, users, scopes, InteractionMatrix.from_frame(frame)


def test_batching_matches_one_batch_and_reference():
    model, users, scopes, history = random_case()
    whole = user_rankings(model, users, scopes, history, n=4)
    batched = user_rankings(model, users, scopes, history, n=4, batch_size=5)
    pd.testing.assert_frame_equal(whole, batched)
    got = whole[["user_id", "scope", "rank", "item_id"]].itertuples(index=False, name=None)
    assert list(got) == brute_force(model, list(users), scopes, history, 4)


class DenseOnly:
    """A model's scores without its factors or sparse entries: ranked from every score (the dense path)."""

    def __init__(self, model: ALS | NeighbourScorer) -> None:
        self.item_ids = model.item_ids
        self.score = model.score


def test_dense_scoring_in_chunks_of_users_gives_the_same_lists(monkeypatch):
    model, users, scopes, history = random_case()
    whole = user_rankings(model, users, scopes, history, n=4)
    dense = user_rankings(DenseOnly(model), users, scopes, history, n=4)
    monkeypatch.setattr(ranking, "DENSE_ENTRIES", 3 * len(model.item_ids))  # three users a step
    chunked = user_rankings(DenseOnly(model), users, scopes, history, n=4, batch_size=16)
    pd.testing.assert_frame_equal(dense, whole)
    pd.testing.assert_frame_equal(chunked, whole)


def test_a_sparse_scorer_ranks_its_entries_as_the_dense_scores_rank():
    _, users, scopes, history = random_case()
    rng = np.random.default_rng(5)
    neighbours = pd.DataFrame(
        {
            "user_id": rng.choice(users[:30], size=90),  # the last users have no neighbours, so no list
            "similar_user_id": rng.choice(users, size=90),
            "similarity_score": rng.choice([-0.5, 0.5, 1.0], size=90),  # exact ties, and sums below zero
        }
    ).drop_duplicates(["user_id", "similar_user_id"])
    scorer = NeighbourScorer(neighbours, history)
    sparse = user_rankings(scorer, users, scopes, history, n=4, batch_size=8)
    pd.testing.assert_frame_equal(sparse, user_rankings(DenseOnly(scorer), users, scopes, history, n=4))
    assert set(sparse["user_id"]) <= set(users[:30]) and len(sparse) > 100
    got = sparse[["user_id", "scope", "rank", "item_id"]].itertuples(index=False, name=None)
    assert list(got) == brute_force(scorer, list(users), scopes, history, 4)


def test_popularity_scores_and_global_rankings():
    frame = pd.DataFrame(
        [
            ("u1", "b", 2.0),
            ("u1", "b", 1.0),
            ("u2", "b", 1.0),  # b: weight 4, 2 users
            ("u1", "a", 4.0),  # a: weight 4, 1 user
            ("u2", "c", 1.0),
            ("u3", "c", 1.0),
            ("u4", "c", 0.5),  # c: weight 2.5, 3 users
            ("u3", "d", -3.0),  # d: dismissed only, 0
        ],
        columns=["user_id", "item_id", "weight"],
    )
    interactions = InteractionMatrix.from_frame(frame)
    by_weight = Popularity().fit(interactions)
    assert by_weight.to_frame().values.tolist() == [["a", 4.0], ["b", 4.0], ["c", 2.5], ["d", 0.0]]
    by_users = Popularity(PopularityParams(by="users")).fit(interactions)
    assert by_users.to_frame()["item_id"].tolist() == ["c", "b", "a", "d"]

    scopes = pd.DataFrame({"item_id": ["a", "b", "c", "d", "b"], "scope": ["x", "x", "x", "x", "y"]})
    ranked = global_rankings(by_weight, scopes, n=3)
    assert ranked[["scope", "rank", "item_id"]].values.tolist() == [
        ["x", 1, "a"],
        ["x", 2, "b"],
        ["x", 3, "c"],
        ["y", 1, "b"],
    ]
    assert ranked["confidence"].tolist() == pytest.approx([1.0, 1.0, 2.5 / 4, 1.0])

    # per user, the same popularity order minus what each user has seen
    recs = user_rankings(by_weight, ["u1", "u3"], scopes, interactions, n=3)
    # u1 saw a and b, so scope y (only b) has nothing left for u1; u3 saw c, dismissed d
    assert lists(recs) == {("u1", "x"): ["c", "d"], ("u3", "x"): ["a", "b"], ("u3", "y"): ["b"]}
