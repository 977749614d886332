"""EASE (Steck 2019): closed-form item-item models on binary history, whole and in sequence.

With ``X`` the users x items binary matrix of engaged pairs (positive answers and any other
answer that is not a dismissal) and ``G = XᵀX + λI``, the weights are
``B = I - P / diag(P)`` for ``P = G⁻¹`` (so ``diag(B) = 0``: an item never explains
itself), and a user's scores are ``x_u B``.

Whole-history co-occurrence cannot tell items engaged with one after the other from items
merely held by the same user years apart. A second EASE learns from order: its Gram matrix
counts, off the diagonal, the times two items stand within ``sequence_window`` places of each
other in a user's history ordered by time (the diagonal keeps each item's users), with its own
``sequence_regularization``. The served weights are ``B + sequence_weight · B_seq``: one item x
item matrix, so scoring costs the same (``sequence_weight = 0`` gives the plain model).

Items held by fewer than ``min_item_users`` users are left out (they add rows to ``G`` and
nothing to the scores), which keeps the item x item matrix small; :func:`ease_fits` says
whether the rest fits the budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from personalization_pipeline.recsys.base import Recommender, UserIds
from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix

BYTES_PER_CELL = 8 * 3 + 4  # G, its inverse and B in float64 at the peak, plus the kept float32 weights


@dataclass(frozen=True)
class EASEParams:
    """``max_items`` and ``max_memory_mb`` bound the item x item matrix: beyond them EASE is skipped."""

    regularization: float = 250.0
    sequence_weight: float = 0.5
    sequence_window: int = 5
    sequence_regularization: float = 50.0
    min_item_users: int = 2
    max_items: int = 20_000
    max_memory_mb: float = 4096.0


def ease_items(history: InteractionMatrix, min_item_users: int) -> np.ndarray:
    """Positions of the items engaged with by at least ``min_item_users`` users."""
    holders = np.bincount(history.engaged.indices, minlength=len(history.items))
    return np.flatnonzero(holders >= min_item_users)


def sequence_cooccurrence(history: InteractionMatrix, keep: np.ndarray, window: int) -> sp.csr_matrix:
    """Symmetric counts, over the ``keep`` items (positions of ``history.items``), of two engaged
    items standing within ``window`` places of each other in a user's time-ordered history."""
    n = len(keep)
    if history.sequence is None or window < 1:
        return sp.csr_matrix((n, n))
    column = np.full(len(history.items), -1, dtype=np.int64)
    column[keep] = np.arange(n)
    rows = np.repeat(np.arange(len(history.users)), np.diff(history.seen.indptr))
    items = history.sequence
    engaged = np.asarray(history.engaged[rows, items]).ravel() & (column[items] >= 0)
    rows, items = rows[engaged], column[items[engaged]]
    counts = sp.csr_matrix((n, n), dtype=np.float64)
    for offset in range(1, window + 1):
        same = rows[offset:] == rows[:-offset]
        pairs = sp.csr_matrix((np.ones(int(same.sum())), (items[:-offset][same], items[offset:][same])), shape=(n, n))
        counts = counts + pairs + pairs.T
    return counts.tocsr()


def ease_fits(n_items: int, max_items: int, max_memory_mb: float) -> str | None:
    """Why EASE cannot be fitted on ``n_items`` items within the limits, or None when it can."""
    if n_items == 0:
        return "no item is held by enough users"
    if n_items > max_items:
        return f"{n_items} items exceed the EASE item limit of {max_items}"
    needed = n_items * n_items * BYTES_PER_CELL / 2**20
    if needed > max_memory_mb:
        return f"{n_items} items need {needed:.0f} MB, more than the EASE memory limit of {max_memory_mb:g} MB"
    return None


def _item_weights(gram: np.ndarray, regularization: float) -> np.ndarray:
    """EASE's ``B`` (float32) from a Gram matrix (overwritten)."""
    gram[np.diag_indices_from(gram)] += regularization
    with threadpool_limits(None, "blas"):
        inverse = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    weights = inverse / (-np.diag(inverse))
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


class EASE(Recommender):
    """Item-item weights ``B`` over the items held by enough users."""

    kind = "ease"
    Params = EASEParams

    items: IdIndex
    weights: np.ndarray

    def skip_reason(self, history: InteractionMatrix) -> str | None:
        n_items = len(ease_items(history, self.params.min_item_users))
        return ease_fits(n_items, self.params.max_items, self.params.max_memory_mb)

    def fit(self, history: InteractionMatrix) -> Self:
        keep = ease_items(history, self.params.min_item_users)
        if len(keep) == 0:
            raise ValueError(f"no item is held by {self.params.min_item_users} or more users: nothing for EASE")
        x = history.engaged[:, keep].astype(np.float64)
        gram = np.asarray((x.T @ x).todense())
        holders = np.diag(gram).copy()
        weights = _item_weights(gram, self.params.regularization)
        if self.params.sequence_weight > 0 and history.sequence is not None:
            near = sequence_cooccurrence(history, keep, self.params.sequence_window).toarray()
            near[np.diag_indices_from(near)] = holders
            weights += self.params.sequence_weight * _item_weights(near, self.params.sequence_regularization)
        self.restore({"item_ids": history.items.ids[keep], "weights": weights})
        return self

    @property
    def item_ids(self) -> np.ndarray:
        return self.items.ids

    def score(self, user_ids: UserIds, history: InteractionMatrix) -> np.ndarray:
        """``x_u B`` from each user's history (float32); NaN rows for users with no history on its items."""
        rows = history.users.positions(user_ids)
        cols = self.items.positions(history.items.ids)  # history column -> model item, -1 if not modelled
        out = np.full((len(rows), len(self.items)), np.nan, dtype=np.float32)
        known = np.flatnonzero(rows >= 0)
        if len(known) == 0:
            return out
        sub = history.engaged[rows[known]].tocoo()
        inside = cols[sub.col] >= 0
        x = sp.csr_matrix(
            (np.ones(int(inside.sum()), dtype=np.float32), (sub.row[inside], cols[sub.col[inside]])),
            shape=(len(known), len(self.items)),
        )
        x.data[:] = 1.0  # binary, whatever the summed weights
        has = np.diff(x.indptr) > 0
        out[known[has]] = np.asarray(x[has] @ self.weights)  # sparse x dense: cost nnz x items
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"item_ids": self.items.ids, "weights": self.weights}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.items = IdIndex(state["item_ids"])
        self.weights = np.ascontiguousarray(state["weights"])  # row-major: x @ B reads it without a copy
