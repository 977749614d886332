"""Candidate sources that are not trained models: similar users' items and fresh items.

Both are :class:`~.ranking.Scorer` s, so candidates, evaluation and serving treat them like a
model. NaN marks what a source does not propose (it is never listed).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix


def age_days(catalog: pd.DataFrame, as_of: datetime) -> np.ndarray:
    """Days from each catalogue row's ``approved_at`` to ``as_of`` (NaN when unknown or absent)."""
    approved = pd.to_datetime(catalog.get("approved_at", pd.Series(index=catalog.index)), errors="coerce")
    return (pd.Timestamp(as_of) - approved).dt.total_seconds().to_numpy(np.float64) / 86400.0


class NeighbourScorer:
    """Items a user's neighbours responded to positively, scored by the summed similarity of
    those neighbours (``neighbours``: user_id, similar_user_id, similarity_score, e.g. from
    :func:`~.similarity.nearest_neighbours`). Users without neighbours get a NaN row."""

    def __init__(self, neighbours: pd.DataFrame, history: InteractionMatrix) -> None:
        self._items = history.items.ids
        self._users = IdIndex.from_values(neighbours["user_id"]) if len(neighbours) else IdIndex(np.empty(0, str))
        rows = self._users.positions(neighbours["user_id"])
        cols = history.users.positions(neighbours["similar_user_id"])
        keep = cols >= 0
        similarity = sp.csr_matrix(
            (neighbours["similarity_score"].to_numpy(np.float64)[keep], (rows[keep], cols[keep])),
            shape=(len(self._users), len(history.users)),
        )
        scores = (similarity @ (history.weights > 0).astype(np.float64)).tocsr()
        scores.data[scores.data <= 0] = 0.0  # not proposed
        scores.eliminate_zeros()
        self._scores = scores

    @property
    def item_ids(self) -> np.ndarray:
        return self._items

    def sparse_scores(self, user_ids: np.ndarray, history: InteractionMatrix) -> sp.csr_matrix:
        """The positive scores of ``user_ids`` (rows in their order; empty for a user without
        neighbours)."""
        rows = self._users.positions(user_ids)
        known = np.flatnonzero(rows >= 0)
        picked = self._scores[rows[known]]
        lengths = np.zeros(len(user_ids), dtype=np.int64)
        lengths[known] = np.diff(picked.indptr)
        indptr = np.r_[0, np.cumsum(lengths)]
        return sp.csr_matrix((picked.data, picked.indices, indptr), shape=(len(user_ids), len(self._items)))

    def score(self, user_ids: np.ndarray, history: InteractionMatrix) -> np.ndarray:
        dense = self.sparse_scores(user_ids, history).toarray()
        return np.where(dense > 0, dense, np.nan)


class FreshScorer:
    """Items approved within ``days`` of ``as_of``, newest first (score = -age in days), the same
    for every user: catalogue cold start. ``catalog`` has item_id and approved_at."""

    def __init__(self, catalog: pd.DataFrame, as_of: datetime, days: float) -> None:
        age = age_days(catalog, as_of)
        fresh = (age >= 0) & (age <= days)
        order = np.argsort(catalog["item_id"].astype(str).to_numpy())
        self._items = catalog["item_id"].astype(str).to_numpy()[order]
        self._scores = np.where(fresh, -age, np.nan)[order]

    @property
    def item_ids(self) -> np.ndarray:
        return self._items

    def score(self, user_ids: np.ndarray, history: InteractionMatrix) -> np.ndarray:
        return np.broadcast_to(self._scores, (len(user_ids), len(self._scores)))
