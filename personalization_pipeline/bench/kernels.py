"""The bare kernels: the heaviest work of a pipeline step done directly on the same inputs, with
none of the pipeline around it, to measure what the pipeline adds.

Each kernel reads its inputs from the warehouse a run left (untimed) and times only the work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import faiss
import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from ..recsys.base import Recommender
from ..recsys.factor_topk import Factored, FactorRows
from ..recsys.matrices import IdIndex
from ..recsys.ranking import mask_seen
from ..recsys.registry import GLOBAL_MODELS
from ..recsys.reranker import Reranker
from ..recsys.similarity import SearchParams, build_index, unit_rows
from ..serving.publish import LOAD_CONNECTIONS, create_load_tables, drop_load_tables, load_rows
from ..serving.schema import FEATURES, RANKS, RATIONALE, SIMILAR_USERS
from ..serving.snapshot import build_snapshot
from ..steps.inputs import read_active_users, read_catalog, read_history
from ..steps.registry import latest_trained
from ..steps.rerank import featured_batches, signals_as_of
from ..steps.similar_users import subject_vectors
from ..steps.train import load

BATCH_USERS = 2048


@dataclass(frozen=True)
class KernelTime:
    name: str
    step: str  # the pipeline step doing the same work
    seconds: float
    what: str


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def als_fit(con: duckdb.DuckDBPyConnection, params: dict) -> KernelTime:
    """implicit's ALS fit on the run's signal matrix with the registered parameters."""
    weights = read_history(con).weights
    model = AlternatingLeastSquares(
        factors=params["factors"],
        iterations=params["iterations"],
        regularization=params["regularization"],
        alpha=params["alpha"],
        random_state=params["seed"],
    )
    with threadpool_limits(1, "blas"):
        seconds = _timed(lambda: model.fit(weights, show_progress=False))
    return KernelTime("ALS fit", "als_model", seconds, f"implicit, {weights.shape[0]:,} x {weights.shape[1]:,}")


def top_n(con: duckdb.DuckDBPyConnection, model: Recommender, n: int) -> KernelTime:
    """``model``'s top ``n`` of each scope for every active user, in batches, nothing written:
    for a factor model, a flat inner-product search (faiss) of n + the batch's most seen items per
    scope, the seen ones left in; otherwise every score, seen items masked, and a partial sort."""
    history = read_history(con)
    users = read_active_users(con).to_numpy(str)
    catalog = read_catalog(con)
    items = np.asarray(model.item_ids, dtype=str)
    scope_cols = [
        np.flatnonzero(np.isin(items, group["item_id"].to_numpy(str))) for _, group in catalog.groupby("scope")
    ]
    to_model = IdIndex(items).positions(history.items.ids)
    seen_counts = np.diff(history.seen.indptr)

    def search(batch: np.ndarray, factors: FactorRows) -> None:
        most_seen = int(seen_counts[history.users.positions(batch)].max(initial=0))
        for cols in scope_cols:
            index = faiss.IndexFlatIP(factors.items.shape[1])
            index.add(np.ascontiguousarray(factors.items[cols]))
            index.search(np.ascontiguousarray(factors.users), min(len(cols), n + most_seen))

    def partial_sort(batch: np.ndarray) -> None:
        scores = model.score(batch, history)
        mask_seen(scores, batch, history, to_model)
        for cols in scope_cols:
            part = np.nan_to_num(scores[:, cols], nan=-np.inf)
            k = min(n, len(cols))
            top = np.argpartition(-part, k - 1, axis=1)[:, :k]
            np.take_along_axis(part, top, axis=1).argsort(axis=1)

    def work() -> None:
        for start in range(0, len(users), BATCH_USERS):
            batch = users[start : start + BATCH_USERS]
            groups = model.factor_rows(batch, history) if isinstance(model, Factored) else None
            for factors in groups or []:
                search(batch, factors)
            if groups is None:
                partial_sort(batch)

    how = "flat index search" if isinstance(model, Factored) else "dense partial sort"
    return KernelTime(
        "top-N scoring",
        "user_rankings",
        _timed(work),
        f"{model.kind} {how}, {len(users):,} users x {len(scope_cols)} scopes",
    )


def first_batch_features(
    con: duckdb.DuckDBPyConnection, settings: Any, registry: dict, reranker: Reranker
) -> np.ndarray:
    """The re-ranker's feature rows of the first batch of active users, built as the step builds
    them (not timed): what :func:`reranker_predict` predicts."""
    models = {name: load(registry[name]) for name in GLOBAL_MODELS if name in registry}
    users = np.sort(read_active_users(con).to_numpy(str))[:BATCH_USERS]
    batches = featured_batches(con, settings, models, read_history(con), signals_as_of(con), users, read_catalog(con))
    _, features = batches(batches.starts[0])
    return features[reranker.feature_names].to_numpy(np.float64)


def reranker_predict(reranker: Reranker, features: np.ndarray, rows: int) -> KernelTime:
    """LightGBM's predict alone, on every core (its default), over ``rows`` candidate rows (as many
    as the step re-ranks): the real ``features`` of a batch (:func:`first_batch_features`), predicted
    again until they add up to ``rows``; the floor of re-ranking without building candidates or
    features. Real rows, not random ones: the trees' paths through real values cost more (1.7
    times at tier S)."""

    def work() -> None:
        for start in range(0, rows, len(features)):
            reranker.booster.predict(features[: min(len(features), rows - start)])

    what = f"LightGBM, {rows:,} rows x {features.shape[1]} features"
    return KernelTime("re-ranker predict", "user_rankings", _timed(work), what)


def reranking_floor(predict: KernelTime, sources: list[KernelTime]) -> KernelTime:
    """The least a re-ranking step does: each personal base model's (ALS, EASE) bare top-N of
    candidates per scope (:func:`top_n` with the candidate count) and LightGBM's predict over
    them. Not in it, so left to the pipeline's side of the ratio: the popularity, neighbour and
    freshness sources, merging the lists, the features and the post-processing."""
    models = " + ".join(source.what.split(" ", 1)[0] for source in sources)
    seconds = predict.seconds + sum(source.seconds for source in sources)
    return KernelTime("candidates + predict", "user_rankings", seconds, f"top-N of {models}, then the predict above")


def similar_user_search(con: duckdb.DuckDBPyConnection, params: SearchParams) -> KernelTime:
    """faiss alone on the similar-user search: the index over the users' unit ALS factors (flat up
    to ``params.exact_max`` users, else HNSW with the same parameters, built on one thread) and
    every user's ``k`` + 1 nearest, without thresholds, ids, shared attributes or candidates."""
    x, _ = unit_rows(subject_vectors(con)[1])
    exact = len(x) <= params.exact_max

    def work() -> None:
        build_index(x, params, exact).search(x, min(params.k + 1, len(x)))

    how = "flat" if exact else f"HNSW M {params.hnsw_m}, efSearch {params.ef_search}"
    return KernelTime("similar-user search", "similar_users", _timed(work), f"faiss {how}, {len(x):,} users")


PER_USER_FRAMES = {"ranks": RANKS, "rationale": RATIONALE, "features": FEATURES, "similar_users": SIMILAR_USERS}
"""The per-user serving tables a publish replaces, by snapshot frame name."""


def copy_serving_rows(con: duckdb.DuckDBPyConnection, url: str) -> KernelTime:
    """The per-user serving rows of a publish (rankings, rationale, features, similar users) built
    in DuckDB and loaded as a publish loads them (:func:`~..serving.publish.load_rows`, into load
    tables shaped like the served ones), then dropped."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(tzinfo=None)
    snapshot = build_snapshot(con, generated_at=now, ttl=timedelta(hours=1), registry=latest_trained(con))
    frames = {name: frame for name in PER_USER_FRAMES if (frame := getattr(snapshot, name)) is not None}
    tables = create_load_tables(url, "bench", tuple(frames))
    try:
        rows = sum(load_rows(url, tables, frames).values())
    finally:
        drop_load_tables(url, tables)
    return KernelTime(
        "publish COPY",
        "serving_tables",
        time.perf_counter() - started,
        f"{rows:,} per-user rows, JSON + COPY over {LOAD_CONNECTIONS} connections",
    )
