"""Multi-source candidates: each source's top items per user and scope, merged with their scores and ranks.

A source is any :class:`~.ranking.Scorer` (ALS, EASE, popularity, the neighbour and freshness
scorers of :mod:`.sources`). For a batch of users each source lists its top ``size`` items per
scope, seen items removed (:func:`~.ranking.iter_user_rankings`); the lists are merged on
(user, scope, item), keeping ``<source>_score`` and ``<source>_rank`` (NaN where a source did not
list the item), and cut to ``size`` per (user, scope) by the best rank any source gave the item
(ties: more sources listing it first, then item id). So every source places its leaders in the
set, interleaved by rank.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix
from personalization_pipeline.recsys.ranking import Scorer, iter_user_rankings

KEYS = ["user_id", "scope", "item_id"]


def merge_candidates(lists: Mapping[str, pd.DataFrame], size: int) -> pd.DataFrame:
    """Merge per-source ranked lists (``user_id, scope, item_id, rank, score``) into one candidate
    frame: ``KEYS`` + ``<source>_score`` / ``<source>_rank`` per source in ``lists`` order, at most
    ``size`` rows per (user, scope), ordered by user, scope, best rank, item.

    The union is taken on integer codes of the keys (one factorisation of the concatenated lists),
    not by joining string columns, so its cost is a sort of the rows."""
    if size < 1:
        raise ValueError("candidate size must be at least 1")
    if not lists:
        raise ValueError("no candidate source")
    stacked = pd.concat([frame[KEYS] for frame in lists.values()], ignore_index=True)
    codes = [pd.factorize(stacked[key], sort=True) for key in KEYS]
    combined = np.zeros(len(stacked), dtype=np.int64)
    for numbers, uniques in codes:
        combined = combined * len(uniques) + numbers
    pairs, row_of = np.unique(combined, return_inverse=True)
    merged: dict[str, np.ndarray] = {}
    best = np.full(len(pairs), np.inf)
    listed = np.zeros(len(pairs), dtype=np.int64)
    start = 0
    for name, frame in lists.items():
        rows = row_of[start : start + len(frame)]
        start += len(frame)
        score, rank = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
        score[rows] = frame["score"].to_numpy(np.float64)
        rank[rows] = frame["rank"].to_numpy(np.float64)
        merged[f"{name}_score"], merged[f"{name}_rank"] = score, rank
        best = np.fmin(best, rank)
        listed += ~np.isnan(rank)
    keys = {}
    remaining = pairs
    for key, (_, uniques) in reversed(list(zip(KEYS, codes, strict=True))):
        keys[key] = np.asarray(uniques)[remaining % len(uniques)]
        remaining = remaining // len(uniques)
    list_code = pairs // len(codes[2][1])  # (user, scope) as one number, in key order
    order = np.lexsort((pairs, -listed, best, list_code))
    list_code = list_code[order]
    first = np.r_[0, np.flatnonzero(np.diff(list_code)) + 1]
    position = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    keep = order[position < size]
    frame = pd.DataFrame({key: keys[key][keep] for key in KEYS})
    for column, values in merged.items():
        frame[column] = values[keep]
    return frame


def iter_candidates(
    sources: Mapping[str, Scorer],
    user_ids: pd.Series | np.ndarray | list[str],
    item_scopes: pd.DataFrame,
    history: InteractionMatrix,
    size: int,
    batch_size: int = 2048,
) -> Iterator[pd.DataFrame]:
    """Candidate frames (:func:`merge_candidates`) for ``user_ids`` (ascending, de-duplicated),
    ``batch_size`` users at a time, so memory is bounded by the batch, not the user count."""
    users = IdIndex.from_values(user_ids).ids
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        lists = {
            name: pd.concat(list(iter_user_rankings(scorer, batch, item_scopes, history, size, batch_size=len(batch))))
            for name, scorer in sources.items()
        }
        yield merge_candidates(lists, size)
