"""Sparse user x item matrices built from interaction frames, with string id indexes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


def _as_str_ids(values: pd.Series | Iterable[object], what: str) -> pd.Series:
    series = pd.Series(values, copy=False) if not isinstance(values, pd.Series) else values
    if series.isna().any():
        raise ValueError(f"{what} contains null ids")
    return series.astype(str)


@dataclass(frozen=True)
class IdIndex:
    """Sorted unique string ids; an id's position is its row or column number."""

    ids: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=str)
        if ids.ndim != 1 or (len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1]))):
            raise ValueError("ids must be a one-dimensional, strictly increasing array")
        object.__setattr__(self, "ids", ids)

    @classmethod
    def from_values(cls, values: pd.Series | Iterable[object]) -> IdIndex:
        """Index over the distinct values (converted to str), in ascending order."""
        return cls(np.unique(np.asarray(_as_str_ids(values, "values"), dtype=str)))

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, values: pd.Series | Iterable[object]) -> np.ndarray:
        """Position of each value (int64), -1 for values not in the index."""
        query = np.asarray(_as_str_ids(values, "values"), dtype=str)
        if len(self.ids) == 0 or len(query) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        pos = np.searchsorted(self.ids, query)
        clipped = np.minimum(pos, len(self.ids) - 1)
        return np.where(self.ids[clipped] == query, clipped, -1).astype(np.int64)


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for int64 values, by one argsort (equal values
    share their number whatever their order; NumPy's own takes seconds where this takes a fraction
    of one, at tens of millions)."""
    order = np.argsort(values)
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]] if len(values) else np.empty(0, dtype=bool)
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


MARKS_PER_STEP = 1 << 25
"""Places of the range :func:`marked_unique_inverse` marks at a time (32 MB of flags, 128 MB of numbers)."""


def marked_unique_inverse(values: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unique_inverse` of int64 ``values`` in ``[0, bound)`` without sorting them: each value
    flags its place in the range, :data:`MARKS_PER_STEP` places at a time, and the flagged places,
    read in order, are the distinct values. Time grows with the values and the range; memory does
    not grow with the range."""
    step = MARKS_PER_STEP
    inverse = np.empty(len(values), dtype=np.int64)
    numbers = np.int32 if len(values) < 2**31 else np.int64
    found: list[np.ndarray] = []
    count = 0
    for low in range(0, bound, step):
        high = min(low + step, bound)
        inside = np.flatnonzero((values >= low) & (values < high)) if bound > step else slice(None)
        local = values[inside] - low
        flags = np.zeros(high - low, dtype=bool)
        flags[local] = True
        distinct = np.flatnonzero(flags)
        number = np.empty(high - low, dtype=numbers)
        number[distinct] = np.arange(count, count + len(distinct))
        inverse[inside] = number[local]
        found.append(distinct + low)
        count += len(distinct)
    return (np.concatenate(found) if found else np.empty(0, dtype=np.int64)), inverse


def group_positions(starts: np.ndarray, total: int) -> np.ndarray:
    """The 0-based position of each of ``total`` rows within its group, groups of consecutive rows
    starting at ``starts`` (ascending, the first 0)."""
    return np.arange(total) - np.repeat(starts, np.diff(np.r_[starts, total]))


def engaged_rows(frame: pd.DataFrame, weight_col: str = "weight", dismissed_col: str = "dismissed") -> np.ndarray:
    """Rows the user chose to engage with: a positive weight, or an answer that is not a dismissal
    (a low rating still says the user watched the item). Without a dismissal column, every row."""
    positive = frame[weight_col].to_numpy(dtype=np.float64, na_value=0.0) > 0
    if dismissed_col not in frame:
        return np.ones(len(frame), dtype=np.bool_)
    return positive | ~frame[dismissed_col].to_numpy(dtype=np.bool_, na_value=False)


def _time_order(users: np.ndarray, items: np.ndarray, times: np.ndarray, n_items: int) -> np.ndarray:
    """Item codes of each distinct (user, item) pair, grouped by user ascending and ordered by
    the pair's latest time, then item (see :attr:`InteractionMatrix.sequence`)."""
    order = np.lexsort((items, times, users))
    key = users[order].astype(np.int64) * n_items + items[order]
    _, last = np.unique(key[::-1], return_index=True)  # a pair's latest row comes last in ``order``
    return items[order][np.sort(len(key) - 1 - last)].astype(np.int32)


@dataclass(frozen=True)
class InteractionMatrix:
    """Users x items view of an interaction frame.

    ``weights`` holds the summed positive weights (rows with weight <= 0 are left
    out): the training signal. ``seen`` marks every (user, item) pair present in the
    frame whatever its weight, so dismissed items count as seen and are never
    recommended again. ``engaged`` marks the pairs the user chose to engage with: a
    positive weight, or any answer that is not a dismissal (a low rating still says the
    user watched it). All share the ``users`` and ``items`` indexes.

    ``sequence`` (when the frame has a time column) lists each user's items, as column
    positions, in the order of the pair's latest event (ties by item), row after row with
    the row bounds of ``seen.indptr``: what items follow each other in a user's history.
    """

    users: IdIndex
    items: IdIndex
    weights: sp.csr_matrix
    seen: sp.csr_matrix
    engaged: sp.csr_matrix
    sequence: np.ndarray | None = None

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user_id",
        item_col: str = "item_id",
        weight_col: str = "weight",
        time_col: str = "occurred_at",
        dismissed_col: str = "dismissed",
    ) -> InteractionMatrix:
        """Build from rows of (user, item, weight), with optional event time and dismissal flag
        columns; repeated pairs are summed, and a pair is engaged when any of its rows is."""
        missing = [c for c in (user_col, item_col, weight_col) if c not in frame.columns]
        if missing:
            raise ValueError(f"interaction frame lacks column(s): {', '.join(missing)}")
        user_codes, user_ids = pd.factorize(_as_str_ids(frame[user_col], user_col), sort=True)
        item_codes, item_ids = pd.factorize(_as_str_ids(frame[item_col], item_col), sort=True)
        sequence = None
        if time_col in frame:
            times = pd.to_datetime(frame[time_col], utc=True).dt.tz_localize(None).to_numpy().astype(np.int64)
            sequence = _time_order(user_codes, item_codes, times, len(item_ids))
        return cls.from_codes(
            IdIndex(np.asarray(user_ids, dtype=str)),
            IdIndex(np.asarray(item_ids, dtype=str)),
            user_codes,
            item_codes,
            frame[weight_col].to_numpy(dtype=np.float64, na_value=0.0),
            engaged_rows(frame, weight_col, dismissed_col),
            sequence,
        )

    @classmethod
    def from_codes(
        cls,
        users: IdIndex,
        items: IdIndex,
        user_codes: np.ndarray,
        item_codes: np.ndarray,
        weight: np.ndarray,
        chose: np.ndarray,
        sequence: np.ndarray | None = None,
    ) -> InteractionMatrix:
        """Build from rows already coded as positions in ``users`` and ``items``, with their weights
        and whether the user engaged (:func:`engaged_rows`); repeated pairs are summed.
        ``sequence``: see the class docstring (one entry per distinct pair)."""
        shape = (len(users), len(items))
        positive = weight > 0
        # float32 for the solvers, floored at its smallest normal number: a positive signal decayed
        # below float32's range (an old event) stays a positive entry instead of becoming 0.
        values = np.maximum(weight[positive], np.finfo(np.float32).tiny).astype(np.float32)
        weights = sp.csr_matrix((values, (user_codes[positive], item_codes[positive])), shape=shape)
        seen = sp.csr_matrix((np.ones(len(user_codes), dtype=np.bool_), (user_codes, item_codes)), shape=shape)
        engaged = sp.csr_matrix(
            (np.ones(int(chose.sum()), dtype=np.bool_), (user_codes[chose], item_codes[chose])), shape=shape
        )
        for matrix in (weights, seen, engaged):
            matrix.sum_duplicates()
            matrix.sort_indices()
        if sequence is not None and len(sequence) != seen.nnz:
            raise ValueError(f"the sequence lists {len(sequence)} pairs, the rows {seen.nnz} distinct pairs")
        return cls(users=users, items=items, weights=weights, seen=seen, engaged=engaged, sequence=sequence)

    @property
    def positive_counts(self) -> np.ndarray:
        """Distinct items with positive weight per user, aligned with ``users.ids``."""
        return np.diff(self.weights.indptr)

    def seen_items(self, user_id: str) -> np.ndarray:
        """Ids of every item the user interacted with (any weight), ascending."""
        row = self.users.positions([user_id])[0]
        if row < 0:
            return np.empty(0, dtype=str)
        start, end = self.seen.indptr[row], self.seen.indptr[row + 1]
        return self.items.ids[self.seen.indices[start:end]]
