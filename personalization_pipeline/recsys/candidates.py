"""Multi-source candidates: each source's top items per user and scope, merged with their scores and ranks.

A source is any :class:`~.ranking.Scorer` (ALS, EASE, popularity, the neighbour and freshness
scorers of :mod:`.sources`). For a batch of users each source lists its top ``size`` items per
scope, seen items removed (:func:`~.ranking.rank_batch`); the lists are merged on (user, scope,
item), keeping ``<source>_score`` and ``<source>_rank`` (NaN where a source did not list the
item), and cut to ``size`` per (user, scope) by the best rank any source gave the item (ties: more
sources listing it first, then item id). So every source places its leaders in the set,
interleaved by rank.

Candidate frames are keyed by integer codes (:data:`KEYS`), positions in the ascending ids of a
:class:`CandidateCodes`, so merging, features and post-processing sort and group numbers, not
strings; :meth:`CandidateCodes.keyed` turns codes back into ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix, group_positions, unique_inverse
from personalization_pipeline.recsys.ranking import Scopes, Scorer, rank_batch

KEYS = ["user_code", "scope_code", "item_code"]


@dataclass(frozen=True)
class CandidateCodes:
    """What the codes of candidate frames stand for: a code is a position in ``users``,
    ``scopes`` or ``items`` (each ascending, distinct)."""

    users: np.ndarray
    scopes: np.ndarray
    items: np.ndarray

    @classmethod
    def build(cls, user_ids: pd.Series | np.ndarray | list[str], item_scopes: pd.DataFrame) -> CandidateCodes:
        """Codes of ``user_ids`` and of the scopes and items of ``item_scopes`` (item_id, scope)."""
        scopes = IdIndex.from_values(item_scopes["scope"]).ids
        return cls(IdIndex.from_values(user_ids).ids, scopes, IdIndex.from_values(item_scopes["item_id"]).ids)

    def keyed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with user_id, scope and item_id in place of its codes, first."""
        ids = {
            "user_id": self.users[frame["user_code"].to_numpy()],
            "scope": self.scopes[frame["scope_code"].to_numpy()],
            "item_id": self.items[frame["item_code"].to_numpy()],
        }
        rest = frame.drop(columns=KEYS)
        return pd.concat([pd.DataFrame(ids, index=frame.index), rest], axis=1)


def list_spans(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Where each (user, scope) list of ``frame`` (grouped by list) starts, and its length."""
    return spans(frame["user_code"].to_numpy(), frame["scope_code"].to_numpy())


def spans(user: np.ndarray, scope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`list_spans` of rows given by their user and scope codes."""
    change = (np.diff(user) != 0) | (np.diff(scope) != 0)
    starts = np.r_[0, np.flatnonzero(change) + 1] if len(user) else np.empty(0, dtype=np.int64)
    return starts, np.diff(np.r_[starts, len(user)])


def merge_candidates(lists: Mapping[str, pd.DataFrame], size: int) -> pd.DataFrame:
    """Merge per-source ranked lists (``user_code, scope_code, item_code, rank, score``) into one
    candidate frame: ``KEYS`` + ``<source>_score`` / ``<source>_rank`` per source in ``lists``
    order, at most ``size`` rows per (user, scope), ordered by user, scope, best rank, item."""
    if size < 1:
        raise ValueError("candidate size must be at least 1")
    if not lists:
        raise ValueError("no candidate source")
    stacked = {key: np.concatenate([frame[key].to_numpy(np.int64) for frame in lists.values()]) for key in KEYS}
    n_scopes, n_items = (int(stacked[key].max(initial=0)) + 1 for key in KEYS[1:])
    combined = (stacked["user_code"] * n_scopes + stacked["scope_code"]) * n_items + stacked["item_code"]
    pairs, row_of = unique_inverse(combined)
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
    list_code = pairs // n_items  # (user, scope) as one number, in key order
    key = _sort_key(list_code - list_code.min(initial=0), best, len(lists) - listed, pairs % n_items)
    order = np.argsort(key)  # keys are distinct, so any sort gives this order
    ordered_lists = list_code[order]
    first = np.r_[0, np.flatnonzero(np.diff(ordered_lists)) + 1]
    position = group_positions(first, len(order))
    keep = order[position < size]
    frame = pd.DataFrame(
        {
            "user_code": list_code[keep] // n_scopes,
            "scope_code": list_code[keep] % n_scopes,
            "item_code": pairs[keep] % n_items,
        }
    )
    for column, values in merged.items():
        frame[column] = values[keep]
    return frame


def _sort_key(*parts: np.ndarray) -> np.ndarray:
    """One int64 per row ordering like the tuple of ``parts`` (non-negative integers, most
    significant first)."""
    key = np.zeros(len(parts[0]), dtype=np.int64)
    span = 1
    for part in parts:
        width = int(part.max(initial=0)) + 1
        span *= width
        if span >= 2**63:
            raise ValueError("candidate lists too large to order by one key: use smaller user batches")
        key = key * width + part.astype(np.int64)
    return key


class CandidateBatches:
    """Candidate frames (:func:`merge_candidates`) of the users of ``codes``, ``batch_size`` users
    at a time: ``batches(start)`` is the batch of the users from position ``start``, one of
    :attr:`starts`. Batches share nothing they change, so several threads may build them at once
    (:func:`~.threads.ordered_map`), and memory is bounded by the batches in flight, not the user count."""

    def __init__(
        self,
        sources: Mapping[str, Scorer],
        codes: CandidateCodes,
        item_scopes: pd.DataFrame,
        history: InteractionMatrix,
        size: int,
        batch_size: int = 2048,
    ) -> None:
        self.codes = codes
        self.history = history
        self.size = size
        self.batch_size = batch_size
        self.plans: dict[str, tuple[Scorer, Scopes, np.ndarray, np.ndarray]] = {}
        for name, scorer in sources.items():
            item_ids = np.asarray(scorer.item_ids, dtype=str)
            scopes = Scopes.build(item_ids, item_scopes, codes.scopes)
            to_model = IdIndex(item_ids).positions(history.items.ids)
            self.plans[name] = (scorer, scopes, to_model, IdIndex(codes.items).positions(item_ids))

    @property
    def starts(self) -> range:
        return range(0, len(self.codes.users), self.batch_size)

    def __call__(self, start: int) -> pd.DataFrame:
        batch = self.codes.users[start : start + self.batch_size]
        lists = {}
        for name, (scorer, scopes, to_model, to_code) in self.plans.items():
            picks = rank_batch(scorer, batch, self.history, scopes, to_model, self.size)
            lists[name] = pd.DataFrame(
                {
                    "user_code": picks.rows + start,
                    "scope_code": picks.scope_codes,
                    "item_code": to_code[picks.cols],
                    "rank": picks.ranks,
                    "score": picks.scores,
                }
            )
        return merge_candidates(lists, self.size)
