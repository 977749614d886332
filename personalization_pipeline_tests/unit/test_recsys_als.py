"""ALS training: determinism, behaviour on planted clusters, persistence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys.als import ALS, ALSParams
from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.ranking import user_rankings

PARAMS = ALSParams(factors=8, iterations=15, regularization=0.05, alpha=10.0, seed=7)
# the planted structure has rank 2; more factors let ALS memorise single users here
CLUSTER_PARAMS = ALSParams(factors=2, iterations=15, regularization=0.05, alpha=10.0, seed=7)


def two_clusters(seed: int = 0) -> pd.DataFrame:
    """Users u00-u29 use items a00-a39 only, users u30-u59 items b00-b39 only (8 each)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(60):
        prefix = "a" if u < 30 else "b"
        for item in rng.choice(40, size=8, replace=False):
            rows.append((f"u{u:02d}", f"{prefix}{item:02d}", float(rng.integers(1, 4))))
    rows.append(("u00", "b00", -3.0))  # a dismissal: seen, never trained on
    return pd.DataFrame(rows, columns=["user_id", "item_id", "weight"])


@pytest.fixture(scope="module")
def interactions() -> InteractionMatrix:
    return InteractionMatrix.from_frame(two_clusters())


def test_same_seed_same_factors(interactions):
    first, second = ALS(PARAMS).fit(interactions), ALS(PARAMS).fit(interactions)
    assert np.array_equal(first.user_factors, second.user_factors)
    assert np.array_equal(first.item_factors, second.item_factors)
    single_thread = ALS(replace(PARAMS, num_threads=1)).fit(interactions)
    assert np.array_equal(first.user_factors, single_thread.user_factors)
    other_seed = ALS(replace(PARAMS, seed=8)).fit(interactions)
    assert not np.array_equal(first.user_factors, other_seed.user_factors)


def test_recommends_cluster_mates_items(interactions):
    model = ALS(CLUSTER_PARAMS).fit(interactions)
    items = pd.DataFrame({"item_id": model.item_ids, "scope": "all"})
    recs = user_rankings(model, interactions.users.ids, items, interactions, n=5)
    assert recs["user_id"].nunique() == 60 and (recs.groupby("user_id").size() == 5).all()
    # only cluster-mates used the own cluster's unseen items: they must fill each top 5
    for user, group in recs.groupby("user_id"):
        own = "a" if user < "u30" else "b"
        assert group["item_id"].str[0].eq(own).all(), (user, group["item_id"].tolist())
        assert not set(group["item_id"]) & set(interactions.seen_items(user))


def test_only_positive_rows_train(interactions):
    model = ALS(PARAMS).fit(interactions)
    # b00 was dismissed by u00 but also used positively by cluster b, so it stays
    assert "b00" in model.item_ids.tolist()
    ghost = pd.DataFrame([("ghost", "zz", -3.0)], columns=["user_id", "item_id", "weight"])
    dismissed_only = InteractionMatrix.from_frame(pd.concat([two_clusters(), ghost]))
    model = ALS(PARAMS).fit(dismissed_only)
    assert "ghost" not in model.users.ids.tolist() and "zz" not in model.item_ids.tolist()
    scores = model.score(np.array(["ghost", "u00"]))
    assert np.isnan(scores[0]).all() and np.isfinite(scores[1]).all()
    with pytest.raises(ValueError, match="no positive"):
        ALS().fit(InteractionMatrix.from_frame(ghost))


def test_save_load_round_trip(interactions, tmp_path):
    model = ALS(PARAMS).fit(interactions)
    path = model.save(tmp_path / "als")
    assert path == tmp_path / "als" / "model.npz" and path.exists()
    loaded = ALS.load(tmp_path / "als")
    assert loaded.params == PARAMS
    assert loaded.users.ids.tolist() == model.users.ids.tolist()
    assert loaded.item_ids.tolist() == model.item_ids.tolist()
    users = np.array(["u03", "u20"])
    assert np.array_equal(loaded.score(users), model.score(users))
