"""Post-processing of scored candidate lists, each stage a pure function over frames.

Frames hold one row per (user_code, scope_code, item_code) (see :mod:`.candidates`; codes sort
like the ids they stand for) with a ``score`` (higher is better); a list is one (user, scope).
Stages, in serving order:

1. :func:`drop_seen` removes items the user has interacted with.
2. :func:`drop_dismissed_categories` removes items of categories the user consistently
   dismisses: at least ``min_dismissals`` dismissed items there and a dismissed share of at
   least ``share`` of the user's answered items in that category.
3. :func:`diversify` (maximal marginal relevance) picks each next item by
   ``(1 - weight) * relevance - weight * redundancy``; relevance is the score scaled to [0, 1]
   within the list, redundancy is 1 when an item of the same category is already picked. Weight
   0 is the plain score order.
4. :func:`with_confidence` adds ``confidence = exp(score - top score) * support``, support
   ``h / (h + damping)`` for a user with ``h`` positive items (see :mod:`.ranking`).
5. :func:`rationale` names what placed each item (sources that ranked it in their top 10, the
   user's affinity to its category, a move up by diversification): internal tags, never served.

Ties break by item (code, so id) everywhere.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personalization_pipeline.recsys.candidates import list_spans, spans
from personalization_pipeline.recsys.matrices import group_positions

LIST = ["user_code", "scope_code"]
ITEM = "item_code"
SOURCE_TOP = 10
AFFINITY_SHARE = 0.2


def sort_lists(frame: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """Rows ordered by list, score descending, item; ``rank`` 1-based within each list. With
    ``limit``, only the rows ranked up to it (gathered alone, not the whole frame).

    Each list is sorted in its own row of a (lists x longest list) array, not the frame at once:
    lists are a few hundred candidates, so the sorts stay small (padding sorts last)."""
    user, scope = (frame[c].to_numpy(np.int64) for c in LIST)
    grouped = np.arange(len(frame))
    if ((np.diff(user) < 0) | ((np.diff(user) == 0) & (np.diff(scope) < 0))).any():
        grouped = np.lexsort((scope, user))
    starts, sizes = spans(user[grouped], scope[grouped])
    width = int(sizes.max(initial=0))
    lists, slots = np.repeat(np.arange(len(starts)), sizes), group_positions(starts, len(grouped))
    descending = np.full((len(starts), width), np.nan)  # NaN scores sort last, padding after them
    descending[lists, slots] = -frame["score"].to_numpy(np.float64)[grouped]
    items = np.full((len(starts), width), np.iinfo(np.int64).max)
    items[lists, slots] = frame[ITEM].to_numpy(np.int64)[grouped]
    columns = np.lexsort((items, descending), axis=1)[:, :limit]
    lists, places = np.nonzero(columns < sizes[:, np.newaxis])  # each list's rows come first
    order = grouped[starts[lists] + columns[lists, places]]
    return frame.iloc[order].reset_index(drop=True).assign(rank=places + 1)


def drop_seen(frame: pd.DataFrame, seen: sp.csr_matrix, user_rows: np.ndarray, item_cols: np.ndarray) -> pd.DataFrame:
    """Rows whose (user, item) is not in ``seen`` (users x items; ``user_rows`` and ``item_cols``:
    the row of each user code and the column of each item code, -1 when absent)."""
    users = user_rows[frame["user_code"].to_numpy()]
    items = item_cols[frame[ITEM].to_numpy()]
    known = (users >= 0) & (items >= 0)
    dropped = np.zeros(len(frame), dtype=bool)
    dropped[known] = np.asarray(seen[users[known], items[known]]).ravel()
    return frame[~dropped]


def drop_dismissed_categories(
    frame: pd.DataFrame, dismissals: pd.Series, positives: pd.Series, min_dismissals: int, share: float
) -> pd.DataFrame:
    """Rows whose category the user does not consistently dismiss (``dismissals`` and
    ``positives``: the user's counts in the row's category, aligned with ``frame``)."""
    answered = dismissals + positives
    consistent = (dismissals >= min_dismissals) & (dismissals >= share * answered)
    return frame[~consistent.to_numpy()]


def diversify(frame: pd.DataFrame, categories: np.ndarray, weight: float, n: int) -> pd.DataFrame:
    """The top ``n`` of each list by maximal marginal relevance (see the module docstring), ranked;
    ``categories``: integer category codes aligned with ``frame`` (negative: none, an item
    that resembles no other)."""
    if weight <= 0:
        return sort_lists(frame, limit=n)
    ordered = sort_lists(frame.assign(_category=categories))
    starts, sizes = list_spans(ordered)
    lists = np.repeat(np.arange(len(starts)), sizes)
    width = int(sizes.max())
    slot = ordered["rank"].to_numpy() - 1
    score = np.full((len(sizes), width), np.nan)
    score[lists, slot] = ordered["score"].to_numpy(np.float64)
    codes = np.full((len(sizes), width), -1, dtype=np.int64)
    category = ordered["_category"].to_numpy(np.int64)
    unique_item = -(np.arange(len(ordered)) + 2)  # an item without a category resembles no other
    codes[lists, slot] = np.where(category < 0, unique_item, category)
    top = np.nanmax(score, axis=1, keepdims=True)
    low = np.nanmin(score, axis=1, keepdims=True)
    relevance = np.where(top > low, (score - low) / np.where(top > low, top - low, 1.0), 1.0)
    available = ~np.isnan(score)
    redundant = np.zeros_like(available)
    picked = np.full((len(sizes), min(n, width)), -1, dtype=np.int64)
    rows = np.arange(len(sizes))
    for step in range(picked.shape[1]):
        value = np.where(available, (1 - weight) * relevance - weight * redundant, -np.inf)
        choice = np.argmax(value, axis=1)  # the first maximum: the better-scored item on ties
        ok = available[rows, choice]
        picked[ok, step] = choice[ok]
        available[rows[ok], choice[ok]] = False
        redundant |= (codes == codes[rows, choice][:, np.newaxis]) & ok[:, np.newaxis]
    keep_rows, steps = np.nonzero(picked >= 0)
    positions = starts[keep_rows] + picked[keep_rows, steps]
    result = ordered.iloc[positions].assign(rank=steps + 1, diversified=steps + 1 < slot[positions] + 1)
    return result.drop(columns="_category").reset_index(drop=True)


def with_confidence(frame: pd.DataFrame, positives: np.ndarray, damping: float) -> pd.DataFrame:
    """``frame`` (ranked lists) with ``confidence`` in [0, 1] (see the module docstring);
    ``positives``: the user's positive items, aligned with ``frame``."""
    score = frame["score"].to_numpy(np.float64)
    starts, lengths = list_spans(frame)
    top = np.repeat(np.maximum.reduceat(score, starts), lengths)
    relative = np.exp(np.minimum(score - top, 0.0))
    h = np.asarray(positives, dtype=np.float64)
    return frame.assign(confidence=relative * h / (h + damping))


def rationale(frame: pd.DataFrame, sources: list[str], category_share: pd.Series) -> pd.Series:
    """Per row, the sorted tags that explain its place (aligned with ``frame``)."""
    names, flags = [], []
    for source in sources:
        column = f"{source}_rank"
        if column in frame:
            names.append(f"source:{source}")
            flags.append(frame[column].to_numpy(np.float64) <= SOURCE_TOP)
    names.append("boost:category_affinity")
    flags.append(category_share.to_numpy(np.float64) >= AFFINITY_SHARE)
    if "diversified" in frame:
        names.append("boost:diversity")
        flags.append(frame["diversified"].to_numpy(bool))
    bits = (np.column_stack(flags).astype(np.int64) << np.arange(len(flags))).sum(axis=1)
    masks, row_mask = np.unique(bits, return_inverse=True)
    tag_sets = np.empty(len(masks), dtype=object)
    for number, mask in enumerate(masks):
        tag_sets[number] = sorted(name for bit, name in enumerate(names) if mask >> bit & 1)
    return pd.Series(tag_sets[row_mask], index=frame.index, dtype=object)
