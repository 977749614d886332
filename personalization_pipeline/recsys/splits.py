"""Train/test splits of an interaction frame for offline evaluation.

The per-user splits work on a user's distinct items: every row of a held-out
(user, item) pair goes to test, so test never repeats an item the user has in train.
A user takes part only with at least 2 distinct items; of n items,
``max(1, round_half_up(fraction * n))`` are held out, capped so that at least
``min_train`` stay in train (users who cannot spare one keep everything in train).
Every split returns ``(train, test)`` with the input's columns, rows in input order;
no (user, item) pair is in both ("seen" items are never test items).
Weights are not interpreted here: callers decide which test rows count as relevant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.matrices import unique_inverse

USER, ITEM, TIME = "user_id", "item_id", "occurred_at"


def _pairs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (user_id, item_id) pairs in that order, as each one's user and item codes
    (codes sort as the ids do), and each row's pair."""
    users, _ = pd.factorize(frame[USER], sort=True)
    items, item_ids = pd.factorize(frame[ITEM], sort=True)
    width = max(len(item_ids), 1)
    pairs, inverse = unique_inverse(users.astype(np.int64) * width + items)
    return pairs // width, pairs % width, inverse


def _split_by_pairs(frame: pd.DataFrame, inverse: np.ndarray, held: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows whose pair (``inverse``: one per row) is ``held`` (a mask over the pairs) go to test,
    the rest to train."""
    test = held[inverse]
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


def _within_users(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's position among its user's pairs and their count; ``users`` is grouped (a
    user's pairs adjacent)."""
    starts = np.r_[True, users[1:] != users[:-1]] if len(users) else np.empty(0, dtype=bool)
    first = np.flatnonzero(starts)
    group = np.cumsum(starts) - 1
    return np.arange(len(users)) - first[group], np.diff(np.r_[first, len(users)])[group]


def _last_ones(users: np.ndarray, fraction: float, min_train: int) -> np.ndarray:
    """Whether each pair is one of its user's last by the counting rule; ``users`` is grouped
    (a user's pairs adjacent, in their order)."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be strictly between 0 and 1")
    if min_train < 1:
        raise ValueError("min_train must be at least 1")
    position, size = _within_users(users)
    wanted = np.maximum(1, np.floor(fraction * size + 0.5)).astype(np.int64)
    n_test = np.where(size >= 2, np.clip(size - min_train, 0, wanted), 0)
    return position >= size - n_test


def _with_str_ids(frame: pd.DataFrame, *required: str) -> pd.DataFrame:
    """``frame`` with string user and item ids, after checking the required columns."""
    for column in (USER, ITEM, *required):
        if column not in frame.columns:
            raise ValueError(f"interaction frame lacks column {column!r}")
    return frame.assign(**{USER: frame[USER].astype(str), ITEM: frame[ITEM].astype(str)})


def _held(order: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """A mask over the pairs of those ``chosen`` (a mask over ``order``, a permutation of them)."""
    held = np.zeros(len(order), dtype=bool)
    held[order[chosen]] = True
    return held


def temporal_holdout(
    frame: pd.DataFrame, fraction: float = 0.2, min_train: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's most recently discovered items.

    A user's items are ordered by their first ``occurred_at`` (ties by item_id); the
    last ones, by the counting rule in the module docstring, go to test.
    """
    users, items, inverse = _pairs(_with_str_ids(frame, TIME))
    first = pd.Series(frame[TIME].to_numpy()).groupby(inverse).min()
    ordered = pd.DataFrame({"user": users, TIME: first.to_numpy(), "item": items}).sort_values(
        ["user", TIME, "item"], kind="stable"
    )
    order = ordered.index.to_numpy()
    return _split_by_pairs(frame, inverse, _held(order, latest_pairs_held(users[order], fraction, min_train)))


def latest_pairs_held(users: np.ndarray, fraction: float = 0.2, min_train: int = 1) -> np.ndarray:
    """Which distinct pairs :func:`temporal_holdout` holds out, the pairs given as their user
    codes in (user, time, item) order."""
    return _last_ones(users, fraction, min_train)


def _shuffled(users: np.ndarray, seed: int) -> np.ndarray:
    """The pairs (of these ``users``, in (user_id, item_id) order) ordered by user, then by a
    random key drawn per pair in that order: deterministic for a seed whatever the row order."""
    keys = np.random.default_rng(seed).random(len(users))
    by_key = np.argsort(keys)
    if np.any(keys[by_key[1:]] == keys[by_key[:-1]]):  # rare: equal keys keep their order
        by_key = np.argsort(keys, kind="stable")
    rank = np.empty(len(users), dtype=np.int64)  # each key's place among all
    rank[by_key] = np.arange(len(users))
    # the order of np.lexsort((keys, users)) by one sort of unique numbers, a third of its time
    return np.argsort(users.astype(np.int64) * len(users) + rank)


def stratified_random_split(
    frame: pd.DataFrame, fraction: float = 0.2, seed: int = 42, min_train: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a random ``fraction`` of each user's distinct items.

    Deterministic for a seed whatever the input row order: pairs are sorted by
    (user_id, item_id) before drawing one random key each.
    """
    users, items, inverse = _pairs(_with_str_ids(frame))
    return _split_by_pairs(frame, inverse, random_pairs_held(users, items, fraction, seed, min_train))


def random_pairs_held(
    users: np.ndarray, items: np.ndarray, fraction: float = 0.2, seed: int = 42, min_train: int = 1
) -> np.ndarray:
    """Which distinct pairs :func:`stratified_random_split` holds out, the pairs given in any order
    as user and item codes that sort as their ids do."""
    by_id = np.argsort(users.astype(np.int64) * (int(items.max(initial=0)) + 1) + items)  # (user_id, item_id)
    order = by_id[_shuffled(users[by_id], seed)]
    return _held(order, _last_ones(users[order], fraction, min_train))


def random_folds(frame: pd.DataFrame, k: int, seed: int = 42) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``k`` (train, test) splits in which each user's distinct items are dealt at random into ``k``
    near-equal parts and part ``f`` is the test of split ``f`` (so every pair is tested once).
    Deterministic for a seed whatever the input row order."""
    if k < 2:
        raise ValueError("k must be at least 2")
    users, _, inverse = _pairs(_with_str_ids(frame))
    order = _shuffled(users, seed)
    position, size = _within_users(users[order])
    fold = position * k // size
    return [_split_by_pairs(frame, inverse, _held(order, fold == f)) for f in range(k)]
