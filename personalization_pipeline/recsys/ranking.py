"""Top-N lists per user and scope, shared by every model.

Ordering: score descending, then item_id ascending; ranks are 1-based. Seen items
(any interaction, dismissals included) and NaN scores (users a model does not know)
are never listed, so a list can be shorter than N or missing.

Confidence, in [0, 1], says how much to trust an item's place in a user's list::

    confidence = relative * support
    relative   = clip(score / top_score, 0, 1)     # top_score: rank 1 of the same list
    support    = h / (h + history_damping)         # h: the user's distinct positive items

``relative`` is 1 for the list's first item and falls with the score gap to it (0 when
the list's best score is not positive). ``support`` damps users with little history:
with the default damping of 3, one item gives 0.25, two 0.4, ten 0.77, no history 0.
Global (non-personalised) lists use ``relative`` alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from personalization_pipeline.recsys import factor_topk
from personalization_pipeline.recsys.factor_topk import Factored, FactorRows
from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix, group_positions
from personalization_pipeline.recsys.popularity import Popularity
from personalization_pipeline.recsys.threads import ordered_map

DEFAULT_BATCH_SIZE = 2048
DENSE_ENTRIES = 1 << 25  # users x items scores per dense step: 256 MB of float64 (671 users of 50k items)
DEFAULT_HISTORY_DAMPING = 3.0
USER_COLUMNS = ["user_id", "scope", "rank", "item_id", "score", "confidence"]
GLOBAL_COLUMNS = USER_COLUMNS[1:]


class Scorer(Protocol):
    """What ranking needs of a model (every :class:`~.base.Recommender` is one): its items, and
    their scores for a batch of users given the history."""

    @property
    def item_ids(self) -> np.ndarray: ...

    def score(self, user_ids: np.ndarray, history: InteractionMatrix) -> np.ndarray: ...


@runtime_checkable
class SparseScored(Protocol):
    """A scorer proposing few items per user: :meth:`sparse_scores` holds the entries of
    :meth:`Scorer.score` that are not NaN (users x model columns), so ranking sorts those alone."""

    def sparse_scores(self, user_ids: np.ndarray, history: InteractionMatrix) -> sp.csr_matrix: ...


@dataclass(frozen=True)
class Scopes:
    """Scope names (ascending) and, per scope, ascending model column numbers."""

    names: np.ndarray
    columns: list[np.ndarray]

    @classmethod
    def build(cls, item_ids: np.ndarray, item_scopes: pd.DataFrame, names: np.ndarray | None = None) -> Scopes:
        """The scopes of ``item_scopes`` over a model's ``item_ids``: ``names`` when given (a scope
        none of whose items the model knows has no columns), else those with a known item."""
        positions = IdIndex(item_ids).positions(item_scopes["item_id"])
        pairs = pd.DataFrame({"scope": item_scopes["scope"].astype(str).to_numpy(), "col": positions})
        pairs = pairs[pairs["col"] >= 0].drop_duplicates()
        if names is None:
            names = np.array(sorted(pairs["scope"].unique().tolist()), dtype=str)
        columns = dict(iter(pairs.groupby("scope")["col"]))
        empty = pd.Series([], dtype=np.int64)
        return cls(names, [np.sort(columns.get(n, empty).to_numpy(np.int64)) for n in names])


@dataclass(frozen=True)
class Picks:
    """Selected entries of a score matrix, per scope ordered by row and rank."""

    rows: np.ndarray
    cols: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    relative: np.ndarray
    scope_codes: np.ndarray

    @classmethod
    def concat(cls, parts: list[Picks]) -> Picks:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def ordered(self) -> Picks:
        """The same entries ordered by row, then scope, then rank."""
        return self._take(np.lexsort((self.ranks, self.scope_codes, self.rows)))

    def by_scope(self) -> Picks:
        """The same entries ordered by scope, then row, then rank."""
        return self._take(np.lexsort((self.ranks, self.rows, self.scope_codes)))

    def moved(self, rows: np.ndarray, cols: np.ndarray | None = None) -> Picks:
        """The same entries with row r renumbered ``rows[r]`` (and column c ``cols[c]``)."""
        return replace(self, rows=rows[self.rows], cols=self.cols if cols is None else cols[self.cols])

    def _take(self, order: np.ndarray) -> Picks:
        return Picks(*(getattr(self, f)[order] for f in self.__dataclass_fields__))


def _pick_top(scores: np.ndarray, n: int, cols: np.ndarray, scope_code: int) -> Picks:
    """Each row's n best scores among ``cols``, -inf excluded; ties go to the lower column."""
    sub = scores[:, cols]
    chosen = _top_columns(sub, min(n, len(cols)))
    values = np.take_along_axis(sub, chosen, axis=1).astype(np.float64)
    order = np.lexsort((chosen, -values), axis=1)
    chosen, values = np.take_along_axis(chosen, order, axis=1), np.take_along_axis(values, order, axis=1)
    valid = values > -np.inf  # a row's valid values come first
    rows, slots = np.nonzero(valid)
    kept = values[rows, slots]
    return _picks(rows, cols[chosen[rows, slots]], kept, slots + 1, scope_code)


def _picks(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, ranks: np.ndarray, scope_code: int) -> Picks:
    """Picks of entries ordered by row and rank, ``relative`` to each row's first score."""
    first = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.empty(0, dtype=bool)
    best = scores[first][np.cumsum(first) - 1]
    relative = np.where(best > 0, np.clip(scores / np.where(best > 0, best, 1.0), 0.0, 1.0), 0.0)
    return Picks(rows, cols, scores, ranks, relative, np.full(len(rows), scope_code, dtype=np.int64))


def _rank_shared(
    row: np.ndarray, user_ids: np.ndarray, history: InteractionMatrix, scopes: Scopes, to_model: np.ndarray, n: int
) -> Picks:
    """:func:`rank_batch` for a model scoring every user alike (``row``): each scope's items are
    ordered once, and a user's list is the first ``n`` of them the user has not seen."""
    row = np.where(np.isnan(row), -np.inf, row).astype(np.float64)
    rows, cols = seen_entries(user_ids, history, to_model)
    seen_model = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(len(user_ids), len(row)))
    most_seen = int(np.diff(seen_model.indptr).max(initial=0))
    parts = []
    for code, cols in enumerate(scopes.columns):
        order = np.lexsort((cols, -row[cols]))
        ranked = cols[order][row[cols[order]] > -np.inf][: n + most_seen]
        free = ~seen_model[:, ranked].toarray()
        ranks = np.cumsum(free, axis=1)
        rows, slots = np.nonzero(free & (ranks <= n))
        parts.append(_picks(rows, ranked[slots], row[ranked[slots]], ranks[rows, slots], code))
    return Picks.concat(parts)


def _top_columns(sub: np.ndarray, k: int) -> np.ndarray:
    """Per row, the columns of its ``k`` largest values (any order; ties at the cut go to the
    lower columns)."""
    width = sub.shape[1]
    if k >= width:
        return np.broadcast_to(np.arange(width), sub.shape).copy()
    chosen = np.argpartition(sub, width - k, axis=1)[:, width - k :]
    values = np.take_along_axis(sub, chosen, axis=1)
    kth = values.min(axis=1, keepdims=True)
    # a row is unsettled when a value equal to its k-th one was left out: those rows keep what
    # beats the k-th value and, of the values equal to it, the first ones
    at = sub == kth
    unsettled = np.flatnonzero((at.sum(axis=1) > (values == kth).sum(axis=1)) & (kth[:, 0] > -np.inf))
    if len(unsettled):
        above = sub[unsettled] > kth[unsettled]
        ties = at[unsettled]
        room = k - above.sum(axis=1, keepdims=True)
        keep = above | (ties & (np.cumsum(ties, axis=1) <= room))
        chosen[unsettled] = np.nonzero(keep)[1].reshape(len(unsettled), k)
    return chosen


def _rank_scopes(scores: np.ndarray, scopes: Scopes, n: int) -> Picks:
    """Top-n per row within each scope, in model column numbers."""
    if n < 1:
        raise ValueError("n must be at least 1")
    no_columns = np.empty(0, dtype=np.int64)  # yields correctly typed empty picks
    parts = [_pick_top(scores, n, cols, code) for code, cols in enumerate(scopes.columns)]
    return Picks.concat(parts or [_pick_top(scores, n, no_columns, 0)])


def seen_entries(
    user_ids: np.ndarray, history: InteractionMatrix, to_model: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``user_ids``, model column) of every item each user has seen that the model
    knows (``to_model``: model column of each history item, -1 when unknown)."""
    rows = history.users.positions(user_ids)
    known = np.flatnonzero(rows >= 0)
    seen = history.seen[rows[known]].tocoo()
    cols = to_model[seen.col]
    inside = cols >= 0
    return known[seen.row[inside]], cols[inside]


def mask_seen(scores: np.ndarray, user_ids: np.ndarray, history: InteractionMatrix, to_model: np.ndarray) -> None:
    """Set the scores of items each user has seen to -inf, in place."""
    scores[seen_entries(user_ids, history, to_model)] = -np.inf


def _rank_factored(
    factors: FactorRows, user_ids: np.ndarray, history: InteractionMatrix, scopes: Scopes, to_model: np.ndarray, n: int
) -> Picks:
    """:func:`rank_batch` for the users of ``factors``, by proposals certified exact
    (:mod:`~.factor_topk`) and, for the users they leave, every item of the scope."""
    rows, cols = seen_entries(user_ids[factors.positions], history, to_model)
    shape = (len(factors.positions), len(factors.items))
    seen = sp.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=shape)
    parts = []
    for code, scope_cols in enumerate(scopes.columns):
        if not len(scope_cols):
            continue
        scoped, scope_seen = factors.columns(scope_cols), seen[:, scope_cols]
        top = factor_topk.top_n(scoped, scope_seen, n)
        parts.append(_picks(top.rows, scope_cols[top.cols], top.scores.astype(np.float64), top.ranks, code))
        if len(top.dense_rows):
            scores = scoped.scores(top.dense_rows)
            scores[scope_seen[top.dense_rows].nonzero()] = -np.inf
            local = _pick_top(scores, n, np.arange(len(scope_cols)), code)
            parts.append(local.moved(top.dense_rows, scope_cols))
    return Picks.concat(parts).moved(factors.positions)


def _rank_sparse(
    model: SparseScored, user_ids: np.ndarray, history: InteractionMatrix, scopes: Scopes, to_model: np.ndarray, n: int
) -> Picks:
    """:func:`rank_batch` from a sparse scorer's entries: one sort of the batch's unseen entries by
    (row, score descending, column), then each scope's first ``n`` per row."""
    scores = model.sparse_scores(user_ids, history).tocoo()
    n_cols = scores.shape[1]
    rows, cols, values = scores.row.astype(np.int64), scores.col.astype(np.int64), scores.data.astype(np.float64)
    seen_rows, seen_cols = seen_entries(user_ids, history, to_model)
    keep = ~np.isin(rows * n_cols + cols, seen_rows * n_cols + seen_cols) & (values > -np.inf)  # NaN fails too
    rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    in_scope = np.zeros(n_cols, dtype=bool)
    parts = []
    for code, scope_cols in enumerate(scopes.columns):
        in_scope[:] = False
        in_scope[scope_cols] = True
        inside = in_scope[cols]
        r, c, v = rows[inside], cols[inside], values[inside]
        ranks = group_positions(np.flatnonzero(np.r_[True, r[1:] != r[:-1]]), len(r)) + 1
        top = ranks <= n
        parts.append(_picks(r[top], c[top], v[top], ranks[top], code))
    return Picks.concat(parts)


def rank_batch(
    model: Scorer, user_ids: np.ndarray, history: InteractionMatrix, scopes: Scopes, to_model: np.ndarray, n: int
) -> Picks:
    """The top-``n`` unseen items per scope of each of ``user_ids`` (a batch) by ``model``, in its
    column numbers (``to_model``: model column of each history item, -1 when unknown), ordered by
    scope, row and rank. Users a factor model scores from factors, and a sparse scorer's users,
    skip the dense scores."""
    if isinstance(model, SparseScored) and scopes.columns:
        return _rank_sparse(model, user_ids, history, scopes, to_model, n)
    groups = model.factor_rows(user_ids, history) if isinstance(model, Factored) else None
    groups = [group for group in groups or [] if len(group.positions)]
    if not groups or not scopes.columns:
        return _rank_all(model, user_ids, history, scopes, to_model, n)
    parts = [_rank_factored(group, user_ids, history, scopes, to_model, n) for group in groups]
    rest = np.setdiff1d(np.arange(len(user_ids)), np.concatenate([group.positions for group in groups]))
    if len(rest):
        parts.append(_rank_all(model, user_ids[rest], history, scopes, to_model, n).moved(rest))
    return Picks.concat(parts).by_scope()


def _rank_all(
    model: Scorer, user_ids: np.ndarray, history: InteractionMatrix, scopes: Scopes, to_model: np.ndarray, n: int
) -> Picks:
    """:func:`rank_batch` from every score of the batch, scored :data:`DENSE_ENTRIES` scores at a
    time (each thread's memory bounded by the chunk, whatever the catalogue)."""
    step = max(1, DENSE_ENTRIES // max(len(model.item_ids), 1))
    if len(user_ids) <= step:
        return _rank_dense(model, user_ids, history, scopes, to_model, n)
    parts = [
        _rank_dense(model, user_ids[start : start + step], history, scopes, to_model, n).moved(
            np.arange(start, min(start + step, len(user_ids)))
        )
        for start in range(0, len(user_ids), step)
    ]
    return Picks.concat(parts).by_scope()


def _rank_dense(
    model: Scorer, user_ids: np.ndarray, history: InteractionMatrix, scopes: Scopes, to_model: np.ndarray, n: int
) -> Picks:
    """:func:`rank_batch` from every score of these users."""
    raw = model.score(user_ids, history)
    if len(user_ids) > 1 and raw.strides[0] == 0 and scopes.columns:  # a broadcast row: the same scores for every user
        return _rank_shared(raw[0], user_ids, history, scopes, to_model, n)
    scores = np.array(raw, copy=True)
    scores[np.isnan(scores)] = -np.inf
    mask_seen(scores, user_ids, history, to_model)
    return _rank_scopes(scores, scopes, n)


def iter_user_rankings(
    model: Scorer,
    user_ids: pd.Series | np.ndarray | list[str],
    item_scopes: pd.DataFrame,
    history: InteractionMatrix,
    n: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    history_damping: float = DEFAULT_HISTORY_DAMPING,
) -> Iterator[pa.Table]:
    """Yield top-``n`` rows (``USER_COLUMNS``) per user and scope, one Arrow table per batch.

    ``user_ids`` are de-duplicated and processed in ascending order, ``batch_size`` at a time
    on several threads (:func:`~.threads.ordered_map`), so memory stays bounded by a few
    batches (dense scores a chunk of :data:`DENSE_ENTRIES` at a time); the tables come in the
    users' order, each ordered by user_id, scope, rank. ``item_scopes`` has (item_id, scope)
    rows: an item may sit in several scopes; items the model does not know are ignored.
    ``history`` gives each user's seen items and history size; users absent from it have
    neither.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if history_damping <= 0:
        raise ValueError("history_damping must be positive")
    item_ids = np.asarray(model.item_ids, dtype=str)
    scopes = Scopes.build(item_ids, item_scopes)
    to_model = IdIndex(item_ids).positions(history.items.ids)
    users = IdIndex.from_values(user_ids).ids
    positive = np.append(history.positive_counts, 0).astype(np.float64)
    item_texts, scope_texts = pa.array(item_ids, pa.string()), pa.array(scopes.names, pa.string())
    batches = (users[start : start + batch_size] for start in range(0, len(users), batch_size))

    def rank(batch: np.ndarray) -> tuple[np.ndarray, Picks]:
        return batch, rank_batch(model, batch, history, scopes, to_model, n).ordered()

    for batch, picks in ordered_map(rank, batches):
        h = positive[history.users.positions(batch)]  # -1 (unknown user) reads the appended 0
        # Text columns are gathered by Arrow (a pandas frame of NumPy strings converts each one)
        yield pa.table(
            {
                "user_id": pa.array(batch, pa.string()).take(picks.rows),
                "scope": scope_texts.take(picks.scope_codes),
                "rank": picks.ranks,
                "item_id": item_texts.take(picks.cols),
                "score": picks.scores,
                "confidence": picks.relative * (h / (h + history_damping))[picks.rows],
            }
        )


def user_rankings(
    model: Scorer,
    user_ids: pd.Series | np.ndarray | list[str],
    item_scopes: pd.DataFrame,
    history: InteractionMatrix,
    n: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    history_damping: float = DEFAULT_HISTORY_DAMPING,
) -> pd.DataFrame:
    """All batches of :func:`iter_user_rankings` in one frame, ordered by user, scope, rank."""
    tables = iter_user_rankings(
        model, user_ids, item_scopes, history, n, batch_size=batch_size, history_damping=history_damping
    )
    return pd.concat([_empty_frame(), *(table.to_pandas() for table in tables)], ignore_index=True)


def global_rankings(popularity: Popularity, item_scopes: pd.DataFrame, n: int) -> pd.DataFrame:
    """Top-``n`` popular items per scope (``GLOBAL_COLUMNS``); confidence = relative."""
    item_ids = popularity.item_ids
    scopes = Scopes.build(item_ids, item_scopes)
    picks = _rank_scopes(popularity.scores[np.newaxis, :], scopes, n).ordered()
    return pd.DataFrame(
        {
            "scope": scopes.names[picks.scope_codes],
            "rank": picks.ranks,
            "item_id": item_ids[picks.cols],
            "score": picks.scores,
            "confidence": picks.relative,
        },
        columns=GLOBAL_COLUMNS,
    )


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.empty(0, dtype=str),
            "scope": np.empty(0, dtype=str),
            "rank": np.empty(0, dtype=np.int64),
            "item_id": np.empty(0, dtype=str),
            "score": np.empty(0, dtype=np.float64),
            "confidence": np.empty(0, dtype=np.float64),
        }
    )
