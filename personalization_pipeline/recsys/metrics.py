"""Top-K ranking metrics with binary relevance.

Conventions, shared by the per-user functions and :func:`evaluate`:

- Only the first ``k`` positions of a list count. A repeated item still takes its
  position but is relevant only at its first occurrence.
- precision@k = hits / k (a list shorter than k is not rewarded for it).
- recall@k = hits / |relevant|.
- NDCG@k = DCG / IDCG, DCG = sum over hits at position i (1-based) of 1 / log2(i + 1),
  IDCG = the DCG of min(|relevant|, k) hits at the top.
- AP@k = (sum of precision@i at each hit position i) / min(|relevant|, k); MAP@k is
  its mean over users.
- hit rate@k = 1 if any of the first k items is relevant, else 0.
- An empty list scores 0. An empty relevant set leaves every metric undefined: the
  per-user functions return 0.0 for it and :func:`evaluate` leaves such users out.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd

METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")


def _hit_positions(ranked: Sequence[str], relevant: Collection[str], k: int) -> list[int]:
    """1-based positions, within the first k, of first occurrences of relevant items."""
    if k < 1:
        raise ValueError("k must be at least 1")
    found: set[str] = set()
    positions = []
    for position, item in enumerate(ranked[:k], start=1):
        if item in relevant and item not in found:
            found.add(item)
            positions.append(position)
    return positions


def precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the k slots holding a relevant item."""
    if not relevant:
        return 0.0
    return len(_hit_positions(ranked, relevant, k)) / k


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant items found in the first k."""
    if not relevant:
        return 0.0
    return len(_hit_positions(ranked, relevant, k)) / len(set(relevant))


def ndcg_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Normalised discounted cumulative gain (log2 discount)."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / np.log2(p + 1) for p in _hit_positions(ranked, relevant, k))
    ideal = float(np.sum(1.0 / np.log2(np.arange(2, min(len(set(relevant)), k) + 2))))
    return float(dcg / ideal)


def average_precision_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Mean of precision@i over hit positions i, normalised by min(|relevant|, k)."""
    if not relevant:
        return 0.0
    hits = _hit_positions(ranked, relevant, k)
    return sum((n + 1) / p for n, p in enumerate(hits)) / min(len(set(relevant)), k)


def hit_rate_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1.0 if any of the first k items is relevant."""
    if not relevant:
        return 0.0
    return 1.0 if _hit_positions(ranked, relevant, k) else 0.0


def evaluate(
    recs: pd.DataFrame,
    truth: pd.DataFrame,
    k: int,
    catalog_size: int,
    n_users_total: int,
) -> dict[str, float]:
    """Mean metrics@k over users with a relevant item, plus coverage: :func:`evaluate_per_user`'s summary."""
    return evaluate_per_user(recs, truth, k, catalog_size, n_users_total)[0]


def paired_stderr(a: pd.Series, b: pd.Series) -> float:
    """Standard error of the mean per-user difference ``a - b`` (same users in both; 0 below two).
    Two lists scored on the same users differ far less from user to user than either varies, so
    this is the noise to weigh a difference between two models by."""
    diff = (a - b.reindex(a.index)).to_numpy(np.float64)
    return float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0


def evaluate_per_user(
    recs: pd.DataFrame,
    truth: pd.DataFrame,
    k: int,
    catalog_size: int,
    n_users_total: int,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Mean metrics@k over users with a relevant item, plus coverage, and the per-user frame they
    are the means of (index user_id, columns ``METRICS``).

    ``recs`` has (user_id, item_id, rank): one list per user, ordered by rank. ``truth``
    has the relevant (user_id, item_id) pairs. Users in ``truth`` without recommendations
    score 0. Returns ``METRICS`` (means), ``catalog_coverage`` (distinct items in any
    top-k / catalog_size), ``user_coverage`` (users with a recommendation /
    n_users_total), ``users_evaluated`` and ``ndcg_stderr`` (the standard error of the NDCG
    mean). With no user to evaluate the means are 0.0.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    top = recs[["user_id", "item_id", "rank"]].astype({"user_id": str, "item_id": str})
    top = top.sort_values(["user_id", "rank"], kind="stable")
    top = top.assign(position=top.groupby("user_id", sort=False).cumcount().to_numpy() + 1)
    top = top[top["position"] <= k]

    relevant = truth[["user_id", "item_id"]].astype(str).drop_duplicates()
    n_relevant = relevant.groupby("user_id").size()

    first = ~top.duplicated(["user_id", "item_id"])
    hits = top[first].merge(relevant, on=["user_id", "item_id"], how="inner")
    hits = hits.sort_values(["user_id", "position"], kind="stable")
    hit_number = hits.groupby("user_id", sort=False).cumcount().to_numpy() + 1
    position = hits["position"].to_numpy()
    per_hit = pd.DataFrame(
        {
            "user_id": hits["user_id"].to_numpy(),
            "hits": 1.0,
            "dcg": 1.0 / np.log2(position + 1),
            "ap": hit_number / position,
        }
    )
    sums = per_hit.groupby("user_id").sum().reindex(n_relevant.index, fill_value=0.0)

    n_rel = n_relevant.to_numpy(dtype=np.float64)
    cutoff = np.minimum(n_rel, k)
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[cutoff.astype(np.int64) - 1]
    per_user = {
        "precision": sums["hits"].to_numpy() / k,
        "recall": sums["hits"].to_numpy() / n_rel,
        "ndcg": sums["dcg"].to_numpy() / ideal,
        "map": sums["ap"].to_numpy() / cutoff,
        "hit_rate": (sums["hits"].to_numpy() > 0).astype(np.float64),
    }
    result = {name: float(values.mean()) if len(values) else 0.0 for name, values in per_user.items()}
    result["catalog_coverage"] = top["item_id"].nunique() / catalog_size if catalog_size > 0 else 0.0
    result["user_coverage"] = top["user_id"].nunique() / n_users_total if n_users_total > 0 else 0.0
    result["users_evaluated"] = float(len(n_relevant))
    ndcg = per_user["ndcg"]
    result["ndcg_stderr"] = float(ndcg.std(ddof=1) / np.sqrt(len(ndcg))) if len(ndcg) > 1 else 0.0
    return result, pd.DataFrame(per_user, index=n_relevant.index)
