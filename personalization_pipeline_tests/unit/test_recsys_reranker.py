"""The LambdaRank re-ranker and its training path on small generated data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys.als import ALS, ALSParams
from personalization_pipeline.recsys.popularity import Popularity
from personalization_pipeline.recsys.rerank import (
    DIVERSITY_GRID,
    RankingConfig,
    TrainingSplit,
    train_reranker,
    training_lists,
)
from personalization_pipeline.recsys.reranker import Reranker, RerankerParams
from personalization_pipeline.synth.generator import generate

PARAMS = RerankerParams(max_rounds=60, early_stopping_rounds=20, min_child_samples=5)


def planted_lists(seed: int, users: int = 60, per_list: int = 20):
    """Lists where relevance follows feature ``good`` and ``noise`` carries nothing."""
    rng = np.random.default_rng(seed)
    good = rng.random(users * per_list)
    features = pd.DataFrame({"good": good, "noise": rng.random(users * per_list)})
    labels = (good > 0.8).astype(float)
    groups = np.repeat([f"u{n:03d}" for n in range(users)], per_list)
    return features, labels, groups


def test_the_reranker_learns_a_planted_signal_and_is_deterministic(tmp_path):
    features, labels, groups = planted_lists(0)
    first, report = Reranker.fit(features, labels, groups, groups, PARAMS)
    second, _ = Reranker.fit(features, labels, groups, groups, PARAMS)
    assert first.version == second.version and first.version.startswith("lambdarank-")
    with_relevant = pd.Series(labels).groupby(groups).max().gt(0).sum()
    assert report.lists == with_relevant < 60 and report.valid_ndcg > 0.9  # lists without one are left out
    assert next(iter(first.importance())) == "good"
    test, _, _ = planted_lists(1)
    order = np.argsort(-first.predict(test))
    assert test["good"].to_numpy()[order[:10]].min() > 0.7
    first.save(tmp_path)
    loaded = Reranker.load(tmp_path)
    assert loaded.version == first.version
    np.testing.assert_array_equal(loaded.predict(test), first.predict(test))


def test_training_needs_lists_with_a_relevant_item():
    features, _, groups = planted_lists(0)
    with pytest.raises(ValueError, match="at least two users"):
        Reranker.fit(features, np.zeros(len(features)), groups, groups, PARAMS)


def test_training_on_generated_data_is_deterministic_and_chooses_a_diversity_weight(tmp_path):
    generate(tmp_path, users=120, items=60, seed=5)
    events = pd.read_csv(tmp_path / "interactions.csv")
    train = (
        events.assign(weight=np.where(events["event_type"] == "dismiss", -1.0, 1.0))
        .groupby(["user_id", "item_id"], as_index=False)
        .agg(weight=("weight", "sum"), occurred_at=("occurred_at", "max"))
    )
    catalog = pd.read_csv(tmp_path / "items.csv")[["item_id", "scope", "category", "approved_at"]]
    vectors = pd.DataFrame({"user_id": train["user_id"].unique()})

    def fit(history):
        return {"als": ALS(ALSParams(factors=4, iterations=5)).fit(history), "popularity": Popularity().fit(history)}

    config = RankingConfig(candidates=30)
    runs = [
        train_reranker(
            training_lists(train, catalog, vectors, fit, config, TrainingSplit(folds=2), 42), catalog, config, PARAMS
        )
        for _ in range(2)
    ]
    assert runs[0].reranker.version == runs[1].reranker.version
    assert runs[0].reranker.settings["diversity_weight"] in DIVERSITY_GRID
    assert set(runs[0].diversity) == set(DIVERSITY_GRID)
    assert "als_rank" in runs[0].reranker.feature_names and "ease_rank" in runs[0].reranker.feature_names
