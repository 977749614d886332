"""The re-ranker's training step and the candidates-to-lists path shared by evaluation and serving."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ..recsys.base import Recommender
from ..recsys.candidates import CandidateBatches, CandidateCodes
from ..recsys.cold_start import ColdStartParams
from ..recsys.matrices import InteractionMatrix
from ..recsys.per_user import PerUserComposite
from ..recsys.registry import GLOBAL_MODELS, MODELS
from ..recsys.rerank import (
    FeaturedBatches,
    RankedBatch,
    RankingConfig,
    RerankerTraining,
    TrainingLists,
    TrainingSplit,
    build_sources,
    iter_reranked,
    train_reranker,
    training_lists,
)
from ..recsys.rerank_features import FeatureContext
from ..recsys.reranker import Reranker, RerankerParams
from ..recsys.similarity import SearchParams
from ..sqlutil import scalar
from .inputs import read_catalog, read_signals, read_user_vectors
from .registry import SKIPPED, TRAINED, RegistryEntry, record, with_tuned
from .splitting import split_for_evaluation
from .tables import ACTIVITY, ITEMS, SIGNALS

RANKER = "ranker"


def ranking_config(settings: Any) -> RankingConfig:
    """The ranking path's settings."""
    return RankingConfig(
        candidates=settings.ranker_candidates,
        fresh_days=settings.fresh_days,
        dismiss_min=settings.dismiss_filter_min,
        dismiss_share=settings.dismiss_filter_share,
        neighbours=SearchParams(k=settings.similar_users_k, threshold=settings.similar_users_threshold),
    )


def cold_start_params(settings: Any) -> ColdStartParams:
    """The cold-start blend of personal models from settings."""
    return ColdStartParams(
        max_history=settings.cold_start_max_history,
        category_boost=settings.cold_start_category_boost,
        fresh_boost=settings.cold_start_fresh_boost,
        fresh_days=settings.fresh_days,
    )


def reranker_params(settings: Any) -> RerankerParams:
    """LightGBM's parameters: the defaults of :class:`RerankerParams` where ``ranker_<field>`` is unset."""
    tuned = {
        f.name: value
        for f in fields(RerankerParams)
        if (value := getattr(settings, f"ranker_{f.name}", None)) is not None
    }
    return RerankerParams(**{**tuned, "seed": settings.seed, "eval_at": settings.eval_k})


def read_training_lists(
    con: duckdb.DuckDBPyConnection, settings: Any, entries: dict[str, RegistryEntry]
) -> tuple[TrainingLists, pd.DataFrame]:
    """The re-ranker's training lists (:func:`training_lists` over the registered models, on the
    evaluation split's train part, so the evaluation holdout stays unseen) and the catalogue."""
    split = TrainingSplit(
        kind=settings.eval_split,
        folds=settings.ranker_folds,
        holdout_fraction=settings.holdout_fraction,
        max_users=settings.ranker_max_users,
    )
    train, _ = split_for_evaluation(read_signals(con), settings)
    catalog = read_catalog(con)
    config = ranking_config(settings)
    return training_lists(train, catalog, read_user_vectors(con), refit(entries), config, split, settings.seed), catalog


def refit(entries: dict[str, RegistryEntry]) -> Callable[[InteractionMatrix], dict[str, Recommender]]:
    """A function fitting each registered global model (its entry's kind and parameters) on a
    history; a model its limits skip there is left out."""

    def fit(history: InteractionMatrix) -> dict[str, Recommender]:
        fitted = {}
        for name in GLOBAL_MODELS:
            if name in entries:
                cls = MODELS[name]
                model = cls(cls.Params(**entries[name].params_dict))
                if model.skip_reason(history) is None:
                    fitted[name] = model.fit(history)
        return fitted

    return fit


def rerank_cost_reason(con: duckdb.DuckDBPyConnection, settings: Any) -> str | None:
    """Why re-ranking every list would cost more than ``settings.ranker_max_rows`` candidate rows in
    one user bucket (its share of the active users x scopes x candidates), or None when it fits.
    Over the budget the re-ranker is neither trained, tuned nor served: the best personal model
    serves, and more buckets (a cluster executor) or a larger budget bring it back."""
    users = scalar(con, f"SELECT count(*) FROM {ACTIVITY}")
    scopes = scalar(con, f"SELECT count(DISTINCT scope) FROM {ITEMS}")
    rows = -(-users // settings.buckets) * scopes * settings.ranker_candidates
    if rows <= settings.ranker_max_rows:
        return None
    return (
        f"re-ranking {users:,} users' lists in {settings.buckets} bucket(s) x {scopes} scope(s) x "
        f"{settings.ranker_candidates} candidates is {rows:,} candidate rows per bucket, over "
        f"PERSONALIZATION_RANKER_MAX_ROWS={settings.ranker_max_rows:,}"
    )


def ranker_is_current(entry: RegistryEntry | None, now: datetime, max_age_days: float) -> bool:
    """Whether ``entry`` is a trained re-ranker younger than ``max_age_days`` (never, at 0)."""
    if entry is None or entry.model_version is None:
        return False
    return (now - entry.trained_at).total_seconds() < max_age_days * 86_400


def train_ranker(
    con: duckdb.DuckDBPyConnection,
    settings: Any,
    entries: dict[str, RegistryEntry],
    store: Path,
    run_id: str,
    trained_at: datetime,
) -> tuple[RegistryEntry, RerankerTraining | None]:
    """Train the re-ranker on :func:`read_training_lists` with the LightGBM parameters in force (the
    last tuned values where the environment sets none), store it under ``store/ranker/<version>/``
    and register it; skipped, with the reason, when the data has too few answered candidates or
    serving it would exceed its cost budget (:func:`rerank_cost_reason`)."""
    params = reranker_params(with_tuned(con, settings))
    reason = rerank_cost_reason(con, settings)
    if reason is None:
        try:
            lists, catalog = read_training_lists(con, settings, entries)
            training = train_reranker(lists, catalog, ranking_config(settings), params)
        except ValueError as exc:
            reason = str(exc)
    if reason is not None:
        entry = RegistryEntry(
            run_id, RANKER, None, Reranker.kind, json.dumps(asdict(params)), trained_at, SKIPPED, reason
        )
        record(con, entry)
        return entry, None
    reranker = training.reranker
    path = reranker.save(store / RANKER / reranker.version)
    described = json.dumps({**asdict(params), **reranker.settings}, sort_keys=True)
    entry = RegistryEntry(
        run_id, RANKER, reranker.version, Reranker.kind, described, trained_at, TRAINED, None, str(path.parent)
    )
    record(con, entry)
    return entry, training


def load_ranker(entry: RegistryEntry) -> Reranker:
    if entry.path is None:
        raise ValueError(f"the re-ranker was not trained in run {entry.run_id}: {entry.detail}")
    return Reranker.load(entry.path)


def featured_batches(
    con: duckdb.DuckDBPyConnection,
    settings: Any,
    models: dict[str, Any],
    history: InteractionMatrix,
    as_of: datetime,
    users: np.ndarray,
    item_scopes: pd.DataFrame,
    personal: tuple[str, PerUserComposite] | None = None,
    neighbours: pd.DataFrame | None = None,
) -> FeaturedBatches:
    """The candidates and features of ``users``, a batch at a time, from fitted base ``models`` on
    ``history``; with ``personal`` = (source name, per-user models), that source scores kept users
    by their own model over it; ``neighbours``: the ALS neighbours when already computed."""
    catalog = read_catalog(con)
    config = ranking_config(settings)
    sources: dict[str, Any] = build_sources(models, history, catalog, as_of, config, neighbours)
    if personal is not None and personal[0] in sources:
        sources[personal[0]] = personal[1].over(sources[personal[0]])
    context = FeatureContext(history, catalog, read_user_vectors(con), as_of)
    codes = CandidateCodes.build(users, item_scopes)
    return FeaturedBatches(CandidateBatches(sources, codes, item_scopes, history, config.candidates), context)


def rerank(
    con: duckdb.DuckDBPyConnection,
    settings: Any,
    reranker: Reranker,
    models: dict[str, Any],
    history: InteractionMatrix,
    as_of: datetime,
    users: np.ndarray,
    item_scopes: pd.DataFrame,
    n: int,
    personal: tuple[str, PerUserComposite] | None = None,
    neighbours: pd.DataFrame | None = None,
) -> Iterator[RankedBatch]:
    """Candidates and re-ranked lists of ``users`` (see :func:`featured_batches`)."""
    batches = featured_batches(con, settings, models, history, as_of, users, item_scopes, personal, neighbours)
    return iter_reranked(reranker, batches, history, item_scopes, ranking_config(settings), n)


def signals_as_of(con: duckdb.DuckDBPyConnection) -> datetime:
    """The newest signal's time: "now" for item ages and freshness, so a re-run gives the same lists."""
    return pd.Timestamp(scalar(con, f"SELECT max(last_at) FROM {SIGNALS}")).to_pydatetime()
