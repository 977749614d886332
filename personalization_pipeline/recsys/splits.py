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

USER, ITEM, TIME = "user_id", "item_id", "occurred_at"


def _pair_keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[[USER, ITEM]].astype(str))


def _split_by_pairs(frame: pd.DataFrame, test_pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows whose (user, item) is in ``test_pairs`` go to test, the rest to train."""
    held = _pair_keys(frame).isin(_pair_keys(test_pairs))
    return frame[~held].reset_index(drop=True), frame[held].reset_index(drop=True)


def _held_out(ordered: pd.DataFrame, fraction: float, min_train: int) -> pd.DataFrame:
    """Each user's last pairs by the counting rule; ``ordered`` is grouped by user."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be strictly between 0 and 1")
    if min_train < 1:
        raise ValueError("min_train must be at least 1")
    position = ordered.groupby(USER, sort=False).cumcount().to_numpy()
    size = ordered.groupby(USER, sort=False)[ITEM].transform("size").to_numpy()
    wanted = np.maximum(1, np.floor(fraction * size + 0.5)).astype(np.int64)
    n_test = np.where(size >= 2, np.clip(size - min_train, 0, wanted), 0)
    return ordered[position >= size - n_test]


def _with_str_ids(frame: pd.DataFrame, *required: str) -> pd.DataFrame:
    """``frame`` with string user and item ids, after checking the required columns."""
    for column in (USER, ITEM, *required):
        if column not in frame.columns:
            raise ValueError(f"interaction frame lacks column {column!r}")
    return frame.assign(**{USER: frame[USER].astype(str), ITEM: frame[ITEM].astype(str)})


def temporal_holdout(
    frame: pd.DataFrame, fraction: float = 0.2, min_train: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out each user's most recently discovered items.

    A user's items are ordered by their first ``occurred_at`` (ties by item_id); the
    last ones, by the counting rule in the module docstring, go to test.
    """
    pairs = (
        _with_str_ids(frame, TIME)
        .groupby([USER, ITEM], sort=False, as_index=False)[TIME]
        .min()
        .sort_values([USER, TIME, ITEM], kind="stable")
    )
    return _split_by_pairs(frame, _held_out(pairs, fraction, min_train))


def stratified_random_split(
    frame: pd.DataFrame, fraction: float = 0.2, seed: int = 42, min_train: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a random ``fraction`` of each user's distinct items.

    Deterministic for a seed whatever the input row order: pairs are sorted by
    (user_id, item_id) before drawing one random key each.
    """
    pairs = _with_str_ids(frame)[[USER, ITEM]].drop_duplicates().sort_values([USER, ITEM])
    pairs = pairs.assign(_key=np.random.default_rng(seed).random(len(pairs)))
    ordered = pairs.sort_values([USER, "_key"], kind="stable")
    return _split_by_pairs(frame, _held_out(ordered, fraction, min_train))


def random_folds(frame: pd.DataFrame, k: int, seed: int = 42) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``k`` (train, test) splits in which each user's distinct items are dealt at random into ``k``
    near-equal parts and part ``f`` is the test of split ``f`` (so every pair is tested once).
    Deterministic for a seed whatever the input row order."""
    if k < 2:
        raise ValueError("k must be at least 2")
    pairs = _with_str_ids(frame)[[USER, ITEM]].drop_duplicates().sort_values([USER, ITEM])
    pairs = pairs.assign(_key=np.random.default_rng(seed).random(len(pairs)))
    ordered = pairs.sort_values([USER, "_key"], kind="stable")
    position = ordered.groupby(USER, sort=False).cumcount().to_numpy()
    size = ordered.groupby(USER, sort=False)[ITEM].transform("size").to_numpy()
    fold = position * k // size
    return [_split_by_pairs(frame, ordered[fold == f]) for f in range(k)]
