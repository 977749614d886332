"""The LambdaRank re-ranker and its training path on small generated data."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from personalization_pipeline.recsys.als import ALS, ALSParams
from personalization_pipeline.recsys.candidates import CandidateBatches, CandidateCodes
from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.popularity import Popularity
from personalization_pipeline.recsys.rerank import (
    DIVERSITY_GRID,
    FeaturedBatches,
    RankingConfig,
    TrainingSplit,
    build_sources,
    iter_reranked,
    train_reranker,
    training_lists,
)
from personalization_pipeline.recsys.rerank_features import FeatureContext
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


def test_predictions_on_several_threads_at_once_equal_those_made_one_at_a_time():
    features, labels, groups = planted_lists(0)
    reranker, _ = Reranker.fit(features, labels, groups, groups, PARAMS)
    parts = [planted_lists(seed, users=200)[0] for seed in range(1, 9)]
    alone = [reranker.predict(part) for part in parts]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(reranker.predict, parts * 4))
    for number, scores in enumerate(together):
        np.testing.assert_array_equal(scores, alone[number % len(parts)])


def generated_training(path):
    """(train, catalog, user vectors, base model fitting) of small generated data."""
    generate(path, users=120, items=60, seed=5)
    events = pd.read_csv(path / "interactions.csv")
    train = (
        events.assign(weight=np.where(events["event_type"] == "dismiss", -1.0, 1.0))
        .groupby(["user_id", "item_id"], as_index=False)
        .agg(weight=("weight", "sum"), occurred_at=("occurred_at", "max"))
    )
    catalog = pd.read_csv(path / "items.csv")[["item_id", "scope", "category", "approved_at"]]
    user_ids = np.sort(train["user_id"].unique())
    vectors = pd.DataFrame({"user_id": user_ids, "sessions_30d": np.arange(len(user_ids)) % 5})

    def fit(history):
        return {"als": ALS(ALSParams(factors=4, iterations=5)).fit(history), "popularity": Popularity().fit(history)}

    return train, catalog, vectors, fit


def test_training_on_generated_data_is_deterministic_and_chooses_a_diversity_weight(tmp_path):
    train, catalog, vectors, fit = generated_training(tmp_path)
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


def test_re_ranked_lists_keep_user_order_and_do_not_depend_on_the_batch_size(tmp_path):
    train, catalog, vectors, fit = generated_training(tmp_path)
    config = RankingConfig(candidates=30)
    lists = training_lists(train, catalog, vectors, fit, config, TrainingSplit(folds=2), 42)
    reranker = train_reranker(lists, catalog, config, PARAMS).reranker
    history = InteractionMatrix.from_frame(train)
    as_of = pd.to_datetime(train["occurred_at"]).max().to_pydatetime()
    sources = build_sources(fit(history), history, catalog, as_of, config)
    context = FeatureContext(history, catalog, vectors, as_of)
    scopes = pd.concat(
        [catalog[["item_id", "scope", "category"]], catalog[["item_id", "category"]].assign(scope="all")]
    )
    users = history.users.ids

    def served(batch_size):
        codes = CandidateCodes.build(users, scopes)
        batches = FeaturedBatches(CandidateBatches(sources, codes, scopes, history, 30, batch_size), context)
        ranked = iter_reranked(reranker, batches, history, scopes, config, 5)
        return pd.concat([batch.lists for batch in ranked], ignore_index=True)

    whole, small = served(1000), served(7)  # 18 batches of 7 users, several in flight at once
    pd.testing.assert_frame_equal(small, whole)
    assert list(whole["user_id"].drop_duplicates()) == sorted(users)
    assert whole.groupby(["user_id", "scope"]).size().max() == 5
