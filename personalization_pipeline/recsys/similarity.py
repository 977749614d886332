"""Nearest neighbours of users by the cosine of their behaviour vectors (faiss).

Up to ``exact_max`` users the search is exact (a flat inner-product index over unit vectors);
beyond, an HNSW graph answers in about ``log n`` steps per user, so a million users take
minutes on two cores. :func:`approximate_recall` measures what the graph misses against the
exact answer on a sample. The graph is built on one thread, so results are deterministic;
neighbours are ordered by score, ties by id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

NEIGHBOUR_COLUMNS = ["user_id", "similar_user_id", "similarity_score"]


@dataclass(frozen=True)
class SearchParams:
    """``k`` neighbours per user with a cosine of at least ``threshold``; exact up to ``exact_max`` users."""

    k: int = 20
    threshold: float = 0.5
    exact_max: int = 50_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length (float32, contiguous) and the mask of rows that had a length."""
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1)
    keep = norms > 0
    return np.ascontiguousarray(x[keep] / norms[keep, np.newaxis]), keep


def build_index(x: np.ndarray, params: SearchParams, exact: bool) -> faiss.Index:
    """A flat (``exact``) or HNSW inner-product index over the rows of ``x``, built on one thread."""
    index: faiss.Index
    if exact:
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        graph = faiss.IndexHNSWFlat(x.shape[1], params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = params.ef_construction
        graph.hnsw.efSearch = max(params.ef_search, 2 * params.k)
        index = graph
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # a graph built on several threads depends on their timing
    try:
        index.add(x)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


@dataclass(frozen=True)
class NeighbourIndex:
    """Users' unit vectors (``x``, row ``i`` for ``ids[i]``; zero vectors left out) and the index
    over them. Searching any subset of rows gives those rows' answers of a search over all."""

    ids: np.ndarray
    x: np.ndarray
    index: faiss.Index | None

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, params: SearchParams) -> NeighbourIndex:
        x, keep = unit_rows(vectors)
        kept_ids = np.asarray(ids, dtype=str)[keep]
        index = build_index(x, params, exact=len(kept_ids) <= params.exact_max) if len(kept_ids) >= 2 else None
        return cls(kept_ids, x, index)

    def save(self, directory: Path) -> None:
        """Write the index, vectors and ids under ``directory`` (for :meth:`load` in other processes)."""
        np.save(directory / "vectors.npy", self.x)
        pd.DataFrame({"user_id": self.ids}).to_parquet(directory / "ids.parquet", index=False)
        if self.index is not None:
            faiss.write_index(self.index, str(directory / "index.faiss"))

    @classmethod
    def load(cls, directory: Path, params: SearchParams) -> NeighbourIndex:
        ids = pd.read_parquet(directory / "ids.parquet")["user_id"].to_numpy(str)
        path = directory / "index.faiss"
        index = faiss.read_index(str(path)) if path.exists() else None
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = max(params.ef_search, 2 * params.k)
        return cls(ids, np.load(directory / "vectors.npy", mmap_mode="r"), index)

    def search(self, rows: np.ndarray, params: SearchParams) -> pd.DataFrame:
        """Up to ``k`` other users with cosine >= ``threshold`` for each user of ``rows`` (positions in
        ``ids``): ``NEIGHBOUR_COLUMNS``, ordered by user, score descending, then neighbour id."""
        if self.index is None or len(rows) == 0:
            return pd.DataFrame(
                {c: pd.Series(dtype=t) for c, t in zip(NEIGHBOUR_COLUMNS, (str, str, float), strict=True)}
            )
        ranks = self._id_ranks()
        rows = rows[np.argsort(ranks[rows], kind="stable")]  # users in id order
        wanted = min(params.k + 1, len(self.ids))
        scores, found = self.index.search(np.ascontiguousarray(self.x[rows]), wanted)
        found, scores = found.astype(np.int64), scores.astype(np.float64)
        valid = (found >= 0) & (found != rows[:, np.newaxis]) & (scores >= params.threshold)
        # each user's answers by score descending, then neighbour id; the invalid ones last
        neighbour_rank = np.where(valid, ranks[np.where(found >= 0, found, 0)], len(ranks))
        order = np.lexsort((neighbour_rank, np.where(valid, -scores, np.inf)), axis=1)
        found, scores = np.take_along_axis(found, order, axis=1), np.take_along_axis(scores, order, axis=1)
        kept = np.take_along_axis(valid, order, axis=1) & (np.arange(wanted) < params.k)
        user, slot = np.nonzero(kept)
        return pd.DataFrame(
            {
                "user_id": self.ids[rows[user]],
                "similar_user_id": self.ids[found[user, slot]],
                "similarity_score": scores[user, slot],
            }
        )

    def _id_ranks(self) -> np.ndarray:
        """Each row's place in the ids' order (the rows themselves when the ids ascend, as staged)."""
        ids = self.ids
        if bool(np.all(ids[1:] > ids[:-1])):
            return np.arange(len(ids))
        ranks = np.empty(len(ids), dtype=np.int64)
        ranks[np.argsort(ids, kind="stable")] = np.arange(len(ids))
        return ranks


def nearest_neighbours(ids: np.ndarray, vectors: np.ndarray, params: SearchParams = SearchParams()) -> pd.DataFrame:
    """For each user (``ids[i]`` with ``vectors[i]``), up to ``k`` other users with cosine >= ``threshold``
    (:meth:`NeighbourIndex.search` over everyone). Users with a zero vector have no neighbours and
    are nobody's neighbour."""
    index = NeighbourIndex.build(ids, vectors, params)
    return index.search(np.arange(len(index.ids)), params)


def approximate_recall(index: NeighbourIndex, params: SearchParams, sample: int = 1000, seed: int = 0) -> float:
    """Share of the exact top-``k`` neighbours (threshold ignored) that ``index``'s own search (the
    HNSW graph it was built with) finds, over ``sample`` random users."""
    x = index.x
    k = min(params.k, len(x) - 1)
    queries = np.random.default_rng(seed).choice(len(x), size=min(sample, len(x)), replace=False)
    _, exact = build_index(np.ascontiguousarray(x), params, exact=True).search(x[queries], k + 1)
    assert index.index is not None
    _, approx = index.index.search(np.ascontiguousarray(x[queries]), k + 1)
    hits = [len((set(e) - {q}) & (set(a) - {q})) for q, e, a in zip(queries, exact, approx, strict=True)]
    return float(np.sum(hits) / (k * len(queries)))
