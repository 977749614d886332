"""The ranking path: candidates from every source, LambdaRank scores, post-processing.

The same functions serve three histories: the whole one (nightly serving), the evaluation
split's train part (the replay that measures what is served) and, for training the re-ranker,
folds of that train part (base models on the rest of a fold, relevance from the fold), so the
re-ranker never sees the evaluation holdout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.candidates import KEYS, CandidateBatches, CandidateCodes
from personalization_pipeline.recsys.matrices import InteractionMatrix, engaged_rows
from personalization_pipeline.recsys.metrics import evaluate
from personalization_pipeline.recsys.postprocess import (
    diversify,
    drop_dismissed_categories,
    drop_seen,
    rationale,
    with_confidence,
)
from personalization_pipeline.recsys.ranking import DEFAULT_HISTORY_DAMPING, USER_COLUMNS, Scorer
from personalization_pipeline.recsys.rerank_features import FeatureContext
from personalization_pipeline.recsys.reranker import Reranker, RerankerParams, TrainingReport, validation_rows
from personalization_pipeline.recsys.similarity import SearchParams, nearest_neighbours
from personalization_pipeline.recsys.sources import FreshScorer, NeighbourScorer
from personalization_pipeline.recsys.splits import random_folds, temporal_holdout
from personalization_pipeline.recsys.threads import ordered_map

SOURCES = ["als", "ease", "similar_users", "popularity", "fresh"]
"""Every candidate source, in feature order; a source a run lacks (EASE skipped, no fresh item)
has NaN features."""
DIVERSITY_GRID = (0.0, 0.05, 0.1, 0.2, 0.3)
"""Diversity weights tried on validation; the best NDCG wins (ties: the larger weight)."""
RANKED_COLUMNS = [*USER_COLUMNS, "tags"]


@dataclass(frozen=True)
class RankingConfig:
    candidates: int = 200
    fresh_days: float = 14.0
    dismiss_min: int = 3
    dismiss_share: float = 0.8
    history_damping: float = DEFAULT_HISTORY_DAMPING
    neighbours: SearchParams = field(default_factory=SearchParams)


def build_sources(
    models: Mapping[str, Scorer],
    history: InteractionMatrix,
    catalog: pd.DataFrame,
    as_of: datetime,
    config: RankingConfig,
    neighbours: pd.DataFrame | None = None,
) -> dict[str, Scorer]:
    """Candidate sources from fitted ``models`` (any of als, ease, popularity): the models, the
    items of ALS neighbours (:class:`NeighbourScorer`; ``neighbours`` when given, else
    :func:`als_neighbours`) and fresh items when any."""
    sources = {name: models[name] for name in ("als", "ease", "popularity") if name in models}
    als = models.get("als")
    if als is not None:
        if neighbours is None:
            neighbours = als_neighbours(als, config)
        sources["similar_users"] = NeighbourScorer(neighbours, history)
    if "approved_at" in catalog:
        fresh = FreshScorer(catalog, as_of, config.fresh_days)
        if np.isfinite(fresh.score(np.array(["-"]), history)).any():
            sources["fresh"] = fresh
    return {name: sources[name] for name in SOURCES if name in sources}


def als_neighbours(als: Scorer, config: RankingConfig) -> pd.DataFrame:
    """Every user's nearest neighbours by the cosine of their ALS factors."""
    return nearest_neighbours(als.users.ids, als.user_factors, config.neighbours)  # type: ignore[attr-defined]


class FeaturedBatches:
    """(candidates, features) of the users of ``candidates`` a batch at a time: its batches
    (:class:`~.candidates.CandidateBatches`) with every source of :data:`SOURCES` given columns,
    and their features."""

    def __init__(self, candidates: CandidateBatches, context: FeatureContext) -> None:
        self.candidates = candidates
        self.missing = [name for name in SOURCES if name not in candidates.plans]
        self.context = context

    @property
    def starts(self) -> range:
        return self.candidates.starts

    @property
    def codes(self) -> CandidateCodes:
        return self.candidates.codes

    def __call__(self, start: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        candidates = self.candidates(start)
        for name in self.missing:
            candidates[f"{name}_score"] = np.nan
            candidates[f"{name}_rank"] = np.nan
        return candidates, self.context.features(candidates, self.codes, SOURCES)


@dataclass(frozen=True)
class ListContext:
    """What turns scored candidates over ``codes`` into served lists: the history, the history
    row of each user code and column of each item code (-1: absent), each item code's category
    code (-1: none) and each user code's positive items."""

    history: InteractionMatrix
    codes: CandidateCodes
    user_rows: np.ndarray
    item_cols: np.ndarray
    categories: np.ndarray
    positives: np.ndarray

    @classmethod
    def build(cls, history: InteractionMatrix, codes: CandidateCodes, catalog: pd.DataFrame) -> ListContext:
        category = catalog.drop_duplicates("item_id").set_index("item_id")["category"].reindex(codes.items)
        named = category.astype("string").fillna("").to_numpy(str)
        numbers = pd.factorize(named, sort=True)[0]
        user_rows = history.users.positions(codes.users)
        positives = np.append(history.positive_counts, 0)[user_rows].astype(np.float64)
        item_cols = history.items.positions(codes.items)
        return cls(history, codes, user_rows, item_cols, np.where(named == "", -1, numbers), positives)


def finish_lists(
    candidates: pd.DataFrame,
    features: pd.DataFrame,
    scores: np.ndarray,
    lists: ListContext,
    config: RankingConfig,
    diversity_weight: float,
    n: int,
) -> pd.DataFrame:
    """Scored candidates to served lists (``RANKED_COLUMNS``): seen and consistently dismissed
    categories removed, diversified, top ``n``, confidence and rationale tags."""
    kept = [*KEYS, *(f"{name}_rank" for name in SOURCES)]
    context = ["category_share", "category_dismissals", "category_positives"]
    frame = pd.concat([candidates[kept], features[context]], axis=1).assign(score=scores)
    frame = drop_seen(frame, lists.history.seen, lists.user_rows, lists.item_cols)
    frame = drop_dismissed_categories(
        frame, frame["category_dismissals"], frame["category_positives"], config.dismiss_min, config.dismiss_share
    )
    frame = diversify(frame, lists.categories[frame["item_code"].to_numpy()], diversity_weight, n)
    frame = with_confidence(frame, lists.positives[frame["user_code"].to_numpy()], config.history_damping)
    frame["tags"] = rationale(frame, SOURCES, frame["category_share"])
    return lists.codes.keyed(frame)[RANKED_COLUMNS]


@dataclass(frozen=True)
class RankedBatch:
    """One batch of users: their candidates (coded by ``codes``) and their served lists (``RANKED_COLUMNS``)."""

    candidates: pd.DataFrame
    lists: pd.DataFrame
    codes: CandidateCodes


def iter_reranked(
    reranker: Reranker,
    batches: FeaturedBatches,
    history: InteractionMatrix,
    item_scopes: pd.DataFrame,
    config: RankingConfig,
    n: int,
) -> Iterator[RankedBatch]:
    """Candidates and served lists per batch of ``batches``, lists ordered by user, scope, rank;
    batches are re-ranked whole (candidates, features, scores, lists) on several threads
    (:func:`~.threads.ordered_map`), each predicting on one thread."""
    codes = batches.codes
    lists = ListContext.build(history, codes, item_scopes)
    weight = float(reranker.settings.get("diversity_weight", 0.0))

    def ranked(start: int) -> RankedBatch:
        candidates, features = batches(start)
        scores = reranker.predict(features)
        return RankedBatch(candidates, finish_lists(candidates, features, scores, lists, config, weight, n), codes)

    return ordered_map(ranked, batches.starts)


@dataclass(frozen=True)
class RerankerTraining:
    reranker: Reranker
    report: TrainingReport
    diversity: dict[float, float]
    """Validation NDCG per diversity weight of the grid."""


@dataclass(frozen=True)
class TrainingLists:
    """The re-ranker's training data: per fold (its lists' context, candidates, features, labels, later), and
    all folds' rows together with their list (``groups``: user#fold) and user."""

    folds: list[tuple[ListContext, pd.DataFrame, pd.DataFrame, np.ndarray, pd.DataFrame]]
    features: pd.DataFrame
    labels: np.ndarray
    groups: np.ndarray
    users: np.ndarray


def training_lists(
    train: pd.DataFrame,
    catalog: pd.DataFrame,
    user_vectors: pd.DataFrame,
    fit_models: Callable[[InteractionMatrix], Mapping[str, Scorer]],
    config: RankingConfig,
    split: TrainingSplit,
    seed: int,
) -> TrainingLists:
    """The lists to train on, from ``train`` (user_id, item_id, weight, occurred_at, optionally
    dismissed), never from what ``train`` lacks (an evaluation holdout). For each fold of
    :func:`training_folds`, ``fit_models`` fits the base models on the fold's history, candidates
    come from them, and a candidate's relevance comes from the fold's test part
    (:func:`_relevance`). Each fold gives one list per user (at most ``split.max_users``, a seeded
    sample)."""
    items = catalog[["item_id", "category"]].assign(scope="all")
    folds = []
    for number, (earlier, later) in enumerate(training_folds(train, split, seed)):
        history = InteractionMatrix.from_frame(earlier)
        as_of = pd.to_datetime(earlier["occurred_at"]).max().to_pydatetime()
        sources = build_sources(fit_models(history), history, catalog, as_of, config)
        users = later["user_id"].astype(str).drop_duplicates().sort_values()
        if len(users) > split.max_users:
            users = users.sample(split.max_users, random_state=seed + number).sort_values()
        context = FeatureContext(history, catalog, user_vectors, as_of)
        codes = CandidateCodes.build(users, items)
        batches = FeaturedBatches(CandidateBatches(sources, codes, items, history, config.candidates), context)
        parts = list(ordered_map(batches, batches.starts))
        candidates = pd.concat([c for c, _ in parts], ignore_index=True)
        features = pd.concat([f for _, f in parts], ignore_index=True)
        relevance = _relevance(codes.keyed(candidates), later)
        folds.append((ListContext.build(history, codes, catalog), candidates, features, relevance, later))
    users = np.concatenate([f[0].codes.users[f[1]["user_code"].to_numpy()] for f in folds])
    fold_of_row = np.concatenate([np.full(len(f[1]), number) for number, f in enumerate(folds)])
    return TrainingLists(
        folds=folds,
        features=pd.concat([f[2] for f in folds], ignore_index=True),
        labels=np.concatenate([f[3] for f in folds]),
        groups=np.char.add(np.char.add(users, "#"), fold_of_row.astype(str)),
        users=users,
    )


def train_reranker(
    lists: TrainingLists, catalog: pd.DataFrame, config: RankingConfig, params: RerankerParams
) -> RerankerTraining:
    """Fit the re-ranker on ``lists`` (:func:`training_lists`). The diversity weight is then chosen
    on the first fold's lists of the users held out for early stopping, which no tree was fitted
    on (see :data:`DIVERSITY_GRID`), and kept in the re-ranker's settings."""
    reranker, report = Reranker.fit(lists.features, lists.labels, lists.groups, lists.users, params)
    held_out = set(lists.users[validation_rows(lists.users, lists.labels, params)])  # where fit() stopped early
    context, candidates, features, _, later = lists.folds[0]
    listed_users = context.codes.users[candidates["user_code"].to_numpy()]
    valid = np.isin(listed_users, list(held_out))
    scores = reranker.predict(features[valid])
    positives = later[engaged_rows(later)][["user_id", "item_id"]].astype(str)
    truth = positives[positives["user_id"].isin(listed_users[valid])]
    n_items = catalog["item_id"].nunique()
    diversity = {}
    for weight in DIVERSITY_GRID:
        served = finish_lists(candidates[valid], features[valid], scores, context, config, weight, params.eval_at)
        diversity[weight] = evaluate(served, truth, params.eval_at, n_items, truth["user_id"].nunique())["ndcg"]
    chosen = max(diversity, key=lambda w: (diversity[w], w))
    reranker.settings["diversity_weight"] = chosen
    return RerankerTraining(reranker, report, diversity)


@dataclass(frozen=True)
class TrainingSplit:
    """How the re-ranker's training lists are cut from its training data: ``random`` deals each
    user's items into ``folds`` parts (every part is once the relevance of a fold), ``temporal``
    takes each user's last ``holdout_fraction`` of items as the one fold's relevance."""

    kind: str = "random"
    folds: int = 3
    holdout_fraction: float = 0.2
    max_users: int = 5000


def training_folds(train: pd.DataFrame, split: TrainingSplit, seed: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """(history, relevance) pairs of ``split`` over ``train``."""
    if split.kind == "temporal":
        return [temporal_holdout(train, fraction=split.holdout_fraction)]
    if split.kind == "random":
        return random_folds(train, split.folds, seed)
    raise ValueError(f"unknown training split {split.kind!r} (random or temporal)")


def _relevance(candidates: pd.DataFrame, later: pd.DataFrame) -> np.ndarray:
    """2 for a later positive answer; 1 for a later answer that is neither positive nor a
    dismissal (a low rating, a short view: the user chose to engage); 0 otherwise."""
    key = pd.MultiIndex.from_frame(candidates[["user_id", "item_id"]].astype(str))
    pairs = later[["user_id", "item_id"]].astype(str)
    positive = later["weight"].to_numpy() > 0
    dismissed = later["dismissed"].to_numpy(bool) if "dismissed" in later else np.zeros(len(later), bool)
    liked = key.isin(pd.MultiIndex.from_frame(pairs[positive]))
    engaged = key.isin(pd.MultiIndex.from_frame(pairs[~positive & ~dismissed]))
    return 2.0 * liked + 1.0 * engaged
