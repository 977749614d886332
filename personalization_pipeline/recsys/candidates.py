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
    ``size`` rows per (user, scope), ordered by user, scope, best rank, item."""
    if size < 1:
        raise ValueError("candidate size must be at least 1")
    merged: pd.DataFrame | None = None
    for name, frame in lists.items():
        part = frame[[*KEYS, "score", "rank"]].rename(columns={"score": f"{name}_score", "rank": f"{name}_rank"})
        part[f"{name}_rank"] = part[f"{name}_rank"].astype(np.float64)
        merged = part if merged is None else merged.merge(part, on=KEYS, how="outer")
    if merged is None:
        raise ValueError("no candidate source")
    ranks = merged[[f"{name}_rank" for name in lists]]
    merged = merged.assign(_best=ranks.min(axis=1), _listed=ranks.notna().sum(axis=1))
    merged = merged.sort_values(["user_id", "scope", "_best", "_listed", "item_id"], ascending=[1, 1, 1, 0, 1])
    merged = merged[merged.groupby(["user_id", "scope"], sort=False).cumcount() < size]
    return merged.drop(columns=["_best", "_listed"]).reset_index(drop=True)


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
