"""Beyond-accuracy metrics of top-K lists: intra-list diversity and novelty.

- intra-list diversity@k: per user, the share of item pairs in the first k items whose
  categories differ (an item without a category is its own category "unknown"); users
  with fewer than two items are left out. The mean over users is reported.
- novelty@k: per user, the mean self-information -log2(p) of the first k items, where
  p = (users who had the item in training + 1) / (training users + 1) (add-one smoothing,
  so an item nobody had is the most novel but finite). The mean over users is reported.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _top_k(recs: pd.DataFrame, k: int) -> pd.DataFrame:
    if k < 1:
        raise ValueError("k must be at least 1")
    top = recs[["user_id", "item_id", "rank"]].astype({"user_id": str, "item_id": str})
    top = top.sort_values(["user_id", "rank"], kind="stable")
    return top[top.groupby("user_id", sort=False).cumcount() < k]


def intra_list_diversity(recs: pd.DataFrame, item_categories: pd.Series, k: int) -> float:
    """Mean share of top-k item pairs with different categories; ``item_categories`` maps item_id -> category."""
    top = _top_k(recs, k)
    category = top["item_id"].map(item_categories.astype(str)).fillna("unknown")
    sizes = top.groupby("user_id").size()
    same = pd.DataFrame({"user_id": top["user_id"], "category": category}).groupby(["user_id", "category"]).size()
    same_pairs = (same * (same - 1) / 2).groupby(level="user_id").sum()
    pairs = sizes * (sizes - 1) / 2
    eligible = pairs[pairs > 0]
    if eligible.empty:
        return 0.0
    return float((1.0 - same_pairs.reindex(eligible.index) / eligible).mean())


def novelty(recs: pd.DataFrame, item_users: pd.Series, n_users: int, k: int) -> float:
    """Mean over users of the mean -log2 popularity share of their top-k items.

    ``item_users`` maps item_id -> number of training users who had the item.
    """
    top = _top_k(recs, k)
    if top.empty:
        return 0.0
    counts = top["item_id"].map(item_users).fillna(0).to_numpy(dtype=np.float64)
    information = -np.log2((counts + 1.0) / (n_users + 1.0))
    return float(pd.Series(information, index=top["user_id"].to_numpy()).groupby(level=0).mean().mean())
