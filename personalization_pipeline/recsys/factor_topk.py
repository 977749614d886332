"""Exact top-n of factor models (score = user . item) without scoring every item for every user.

A flat inner-product index (faiss: float32 BLAS, both cores) proposes each user's ``k`` best
items, ``k`` = n + the most items a user of the batch has seen + a margin; the proposals are
re-scored exactly (:func:`~.dots.dots`), seen ones dropped, and ordered by score then column.
An item not proposed scores at most the k-th proposal's float32 score plus the float32 error
bound, so a user's list is certified exact when its n-th score lies above that; users not
certified (near-ties at the cut, or too few unseen proposals) and users who have seen more
than ``HEAVY_SEEN`` items are scored against every item. Either way a user's list is the exact
top-n of :func:`~.dots.dots`, whichever users share the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import faiss
import numpy as np
import scipy.sparse as sp

from personalization_pipeline.recsys.dots import dots
from personalization_pipeline.recsys.matrices import InteractionMatrix

HEAVY_SEEN = 256  # users who have seen more are scored densely: their long proposal lists would cost the whole batch
MARGIN = 16  # proposals beyond n + seen, room for the certificate


@dataclass(frozen=True)
class FactorRows:
    """The users of a batch whose scores are plain dot products of factors: their positions in
    the batch (ascending), their factors, and the factors of the scorer's items in its column order."""

    positions: np.ndarray
    users: np.ndarray
    items: np.ndarray

    def only(self, keep: np.ndarray) -> Self:
        """The same rows where ``keep`` (a mask over them) holds."""
        return type(self)(self.positions[keep], self.users[keep], self.items)


@runtime_checkable
class Factored(Protocol):
    """A scorer that can say which users of a batch it scores by factors alone."""

    def factor_rows(self, user_ids: np.ndarray, history: InteractionMatrix) -> FactorRows | None: ...


@dataclass(frozen=True)
class Proposed:
    """Certified lists (entries ordered by row, then rank) and the rows left to score densely."""

    rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    dense_rows: np.ndarray


def _float32_error(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per user, a bound on |float32 BLAS dot - :func:`dots`| over all items: twice the float32
    summation error of d products plus the final rounding, relative to |u| max|v|."""
    d = users.shape[1]
    longest = float(np.linalg.norm(items.astype(np.float64), axis=1).max(initial=0.0))
    return (2 * d + 2) * 2.0**-24 * np.linalg.norm(users.astype(np.float64), axis=1) * longest


def top_n(users: np.ndarray, items: np.ndarray, seen: sp.csr_matrix, n: int) -> Proposed:
    """The exact top-``n`` unseen items of each user (rows of ``users``) among ``items`` (rows:
    columns 0..w-1), ``seen`` a users x items boolean matrix, for the rows it can certify."""
    m, width = len(users), len(items)
    counts = np.diff(seen.indptr)
    light = np.flatnonzero(counts <= HEAVY_SEEN)
    k = min(width, n + int(counts[light].max(initial=0)) + MARGIN)
    if width == 0 or len(light) == 0 or k >= width:
        empty = np.empty(0, dtype=np.int64)
        return Proposed(empty, empty, np.empty(0, dtype=np.float32), empty, np.arange(m))
    queries = np.ascontiguousarray(users[light], dtype=np.float32)
    index = faiss.IndexFlatIP(items.shape[1])
    index.add(np.ascontiguousarray(items, dtype=np.float32))
    approx, proposed = index.search(queries, k)
    exact = dots(queries, items[proposed])
    seen_light = seen[light].tocoo()
    keys = np.int64(width) * np.arange(len(light))[:, np.newaxis] + proposed
    exact[np.isin(keys, np.int64(width) * seen_light.row + seen_light.col)] = -np.inf
    order = np.lexsort((proposed, -exact.astype(np.float64)), axis=1)[:, :n]
    cols, scores = np.take_along_axis(proposed, order, axis=1), np.take_along_axis(exact, order, axis=1)
    nth = scores[:, n - 1].astype(np.float64)
    certified = (nth > -np.inf) & (approx[:, -1].astype(np.float64) + _float32_error(queries, items) < nth)
    dense = np.sort(np.concatenate([np.flatnonzero(counts > HEAVY_SEEN), light[~certified]]))
    rows, slots = np.nonzero(np.broadcast_to(certified[:, np.newaxis], scores.shape))
    return Proposed(light[rows], cols[rows, slots], scores[rows, slots], slots + 1, dense)
