"""Exact top-n of factor models (score = user . item) without scoring every item for every user.

A flat inner-product index (faiss: float32 BLAS) proposes each user's ``k`` best items, ``k`` =
n + the most items a user of the batch has seen + a margin; the best n + margin unseen proposals
by the index are re-scored exactly (:func:`~.dots.dots`) and ordered by score then column. An
item not re-scored scores at most the index score of the best proposal left out (or of the k-th)
plus the float32 error bound, so a user's list is certified exact when its n-th score lies above
that; users not certified (near-ties at the cut, or too few unseen proposals) and users who have
seen more than ``HEAVY_SEEN`` items are scored against every item. Either way a user's list is
the exact top-n of :func:`~.dots.dots`, whichever users share the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Self, runtime_checkable

import faiss
import numpy as np
import scipy.sparse as sp

from personalization_pipeline.recsys.dots import dots
from personalization_pipeline.recsys.matrices import InteractionMatrix

HEAVY_SEEN = 256  # users who have seen more are scored densely: their long proposal lists would cost the whole batch
MARGIN = 16  # proposals beyond n + seen, room for the certificate


@dataclass(frozen=True)
class Affine:
    """Per-user scores ``scale * (user . item) + offset + rule_weight * item_terms + category_terms``,
    the last term the user's entry for the item's category (``categories``: a code per item):
    the cold-start blend of a factor model's scores (:mod:`~.cold_start`)."""

    scale: np.ndarray
    offset: np.ndarray
    rule_weight: np.ndarray
    category_terms: np.ndarray
    item_terms: np.ndarray
    categories: np.ndarray

    def only(self, keep: np.ndarray) -> Self:
        return replace(
            self,
            scale=self.scale[keep],
            offset=self.offset[keep],
            rule_weight=self.rule_weight[keep],
            category_terms=self.category_terms[keep],
        )

    def columns(self, cols: np.ndarray) -> Self:
        return replace(self, item_terms=self.item_terms[cols], categories=self.categories[cols])

    def apply(self, rows: np.ndarray, cols: np.ndarray, products: np.ndarray) -> np.ndarray:
        """The scores of ``rows`` (positions in these users) for ``cols`` (shared, or one row of
        columns per user) from their float32 ``products``, in float64, the same operations in the
        same order for any layout."""
        cols = np.broadcast_to(cols, products.shape)
        r = rows[:, np.newaxis]
        return (
            (self.scale[r] * products.astype(np.float64) + self.offset[r]) + self.rule_weight[r] * self.item_terms[cols]
        ) + self.category_terms[r, self.categories[cols]]


@dataclass(frozen=True)
class FactorRows:
    """The users of a batch whose scores come from factors: their positions in the batch
    (ascending), their factors, the factors of the scorer's items in its column order, and for
    blended users the :class:`Affine` map of the dot products to their scores."""

    positions: np.ndarray
    users: np.ndarray
    items: np.ndarray
    affine: Affine | None = None

    def only(self, keep: np.ndarray) -> Self:
        """The same rows where ``keep`` (a mask over them) holds."""
        affine = self.affine.only(keep) if self.affine is not None else None
        return type(self)(self.positions[keep], self.users[keep], self.items, affine)

    def columns(self, cols: np.ndarray) -> Self:
        """The same users over the items ``cols`` only (renumbered 0..)."""
        affine = self.affine.columns(cols) if self.affine is not None else None
        return type(self)(self.positions, self.users, self.items[cols], affine)

    def scores(self, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """Exact scores of ``rows`` (positions in these users) for ``cols`` (one row of columns per
        user; every item when omitted): :func:`~.dots.dots`, through the affine map."""
        products = dots(self.users[rows], self.items, cols)
        if self.affine is None:
            return products
        return self.affine.apply(rows, np.arange(len(self.items)) if cols is None else cols, products)

    def index_vectors(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(queries of ``rows``, keys): float32 vectors whose inner product is the score minus the
        user's offset (for blended users: [scale x, rule weight, category terms] with
        [item factors, item term, one-hot category])."""
        if self.affine is None:
            return self.users[rows].astype(np.float32), self.items.astype(np.float32)
        a = self.affine
        queries = np.hstack(
            [
                a.scale[rows, None] * self.users[rows].astype(np.float64),
                a.rule_weight[rows, None],
                a.category_terms[rows],
            ]
        )
        one_hot = np.zeros((len(self.items), a.category_terms.shape[1]))
        one_hot[np.arange(len(self.items)), a.categories] = 1.0
        keys = np.hstack([self.items.astype(np.float64), a.item_terms[:, None], one_hot])
        return queries.astype(np.float32), keys.astype(np.float32)

    def offsets(self, rows: np.ndarray) -> np.ndarray:
        return self.affine.offset[rows] if self.affine is not None else np.zeros(len(rows))

    def error_bound(self, rows: np.ndarray, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Per user of ``rows``, a bound on |the index's float32 inner product - (exact score - offset)|
        over all items: float32 summation of the index vectors (rounded from float64 for blended
        users), the float32 rounding of the dot products scaled, and float64 rounding."""
        bound = _float32_error(queries, keys)
        if self.affine is None:
            return bound
        a = self.affine
        largest = (
            np.abs(a.scale[rows]) * np.linalg.norm(self.users[rows].astype(np.float64), axis=1) * _longest(self.items)
        )
        products = 2.0**-24 * largest  # |float32(u . v) - u . v|, through the scale
        magnitude = (
            largest
            + np.abs(a.offset[rows])
            + np.abs(a.rule_weight[rows]) * np.abs(a.item_terms).max(initial=0.0)
            + np.abs(a.category_terms[rows]).max(axis=1, initial=0.0)
        )
        return 2 * bound + 2 * products + 2.0**-40 * magnitude


@runtime_checkable
class Factored(Protocol):
    """A scorer that can say which users of a batch it scores from factors: disjoint groups (each
    plain dot products, or dot products through one affine map); ``None`` when it scores none so."""

    def factor_rows(self, user_ids: np.ndarray, history: InteractionMatrix) -> list[FactorRows] | None: ...


@dataclass(frozen=True)
class Proposed:
    """Certified lists (entries ordered by row, then rank) and the rows left to score densely."""

    rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    dense_rows: np.ndarray


def _longest(items: np.ndarray) -> float:
    return float(np.linalg.norm(items.astype(np.float64), axis=1).max(initial=0.0))


def _float32_error(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per user, a bound on |float32 BLAS dot - :func:`dots`| over all items: twice the float32
    summation error of d products plus the final rounding, relative to |u| max|v|."""
    d = users.shape[1]
    return (2 * d + 2) * 2.0**-24 * np.linalg.norm(users.astype(np.float64), axis=1) * _longest(items)


def top_n(factors: FactorRows, seen: sp.csr_matrix, n: int) -> Proposed:
    """The exact top-``n`` unseen items of each user of ``factors`` (rows: users, columns: its
    items), ``seen`` a users x items boolean matrix, for the rows it can certify."""
    m, width = len(factors.users), len(factors.items)
    counts = np.diff(seen.indptr)
    light = np.flatnonzero(counts <= HEAVY_SEEN)
    k = min(width, n + int(counts[light].max(initial=0)) + MARGIN)
    if width == 0 or len(light) == 0 or k >= width:
        empty = np.empty(0, dtype=np.int64)
        return Proposed(empty, empty, np.empty(0), empty, np.arange(m))
    queries, keys = factors.index_vectors(light)
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(np.ascontiguousarray(keys))
    approx, proposed = index.search(np.ascontiguousarray(queries), k)
    unseen = np.where(_is_seen(seen[light].tocoo(), proposed), -np.inf, approx)
    # k leaves each user at least n + MARGIN unseen proposals: the candidates are all unseen
    candidates, beyond = _best_unseen(unseen, min(k, n + MARGIN))
    picked = np.take_along_axis(proposed, candidates, axis=1)
    exact = factors.scores(light, picked)
    order = _best(exact, picked, n)
    cols, scores = np.take_along_axis(picked, order, axis=1), np.take_along_axis(exact, order, axis=1)
    nth = scores[:, n - 1].astype(np.float64) - factors.offsets(light)
    bound = factors.error_bound(light, queries, keys)
    # an item not re-scored is a proposal beyond the candidates or was not proposed: its index
    # score is at most the best beyond them, or the last proposal's
    beyond = np.maximum(beyond, approx[:, -1]).astype(np.float64)
    certified = (nth > -np.inf) & (beyond + bound < nth)
    dense = np.sort(np.concatenate([np.flatnonzero(counts > HEAVY_SEEN), light[~certified]]))
    rows, slots = np.nonzero(np.broadcast_to(certified[:, np.newaxis], scores.shape))
    return Proposed(light[rows], cols[rows, slots], scores[rows, slots], slots + 1, dense)


def _best_unseen(approx: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(per row, the positions of its ``r`` best index scores in any order; the best score left
    out, -inf when none is): seen proposals score -inf in ``approx``."""
    m, k = approx.shape
    if r >= k:
        return np.broadcast_to(np.arange(k), (m, k)), np.full(m, -np.inf, dtype=approx.dtype)
    part = np.argpartition(-approx, r, axis=1)
    return part[:, :r], np.take_along_axis(approx, part[:, r : r + 1], axis=1)[:, 0]


def _best(scores: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Per row, the positions of its ``n`` best ``scores`` ordered by score descending, then by
    ``cols`` ascending: the first ``n`` of a full sort, sorting only the ``n`` best where they
    stand clear of the rest (no tie at the n-th score)."""
    m, k = scores.shape
    if n >= k:
        return _ordered(scores, cols)
    above = scores >= np.partition(scores, k - n, axis=1)[:, k - n, np.newaxis]
    clear = above.sum(axis=1) == n
    order = np.empty((m, n), dtype=np.int64)
    tied = np.flatnonzero(~clear)
    order[tied] = _ordered(scores[tied], cols[tied])[:, :n]
    rows = np.flatnonzero(clear)
    picked = np.nonzero(above[rows])[1].reshape(len(rows), n)
    within = _ordered(np.take_along_axis(scores[rows], picked, 1), np.take_along_axis(cols[rows], picked, 1))
    order[rows] = np.take_along_axis(picked, within, 1)
    return order


def _ordered(scores: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Per row, the positions ordered by score descending, then by ``cols`` ascending."""
    return np.lexsort((cols, -scores.astype(np.float64)), axis=1)


def _is_seen(seen: sp.coo_matrix, proposed: np.ndarray) -> np.ndarray:
    """Whether each ``proposed[r, j]`` (a column) is an entry of row ``r`` of ``seen``, by binary
    search in the entries' sorted row-major keys."""
    width = np.int64(seen.shape[1])
    keys = np.sort(width * seen.row + seen.col)
    if not len(keys):
        return np.zeros(proposed.shape, dtype=bool)
    wanted = width * np.arange(len(proposed))[:, np.newaxis] + proposed
    return keys[np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)] == wanted
