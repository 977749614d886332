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
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix, group_positions, marked_unique_inverse
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

    @cached_property
    def _texts(self) -> dict[str, tuple[str, pa.Array]]:
        """Per id column, its code column and the ids as Arrow strings."""
        columns = {"user_id": ("user_code", self.users), "scope": ("scope_code", self.scopes)}
        columns["item_id"] = ("item_code", self.items)
        return {name: (code, pa.array(ids, pa.string())) for name, (code, ids) in columns.items()}

    def keyed(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with user_id, scope and item_id in place of its codes, first. The ids are
        gathered by Arrow (turning NumPy strings into a pandas column builds each one)."""
        ids = {
            name: texts.take(frame[code].to_numpy()).to_pandas().array for name, (code, texts) in self._texts.items()
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
    """Merge per-source ranked lists (``user_code, scope_code, item_code, rank, score``; ranks
    1-based integers) into one candidate frame: ``KEYS`` + ``<source>_score`` / ``<source>_rank``
    per source in ``lists`` order, at most ``size`` rows per (user, scope), ordered by user, scope,
    best rank, more sources listing the item first, item.

    No sort of the stacked lists: every (user, scope, item) gets a place in a range (users x the
    (scope, item) pairs listed), so the distinct ones come out in that order by flagging places
    (:func:`~.matrices.marked_unique_inverse`), grouped by list, each list in item order."""
    if size < 1:
        raise ValueError("candidate size must be at least 1")
    if not lists:
        raise ValueError("no candidate source")
    frames = list(lists.values())
    user, scope, item = (np.concatenate([frame[key].to_numpy(np.int64) for frame in frames]) for key in KEYS)
    n_scopes, n_items = int(scope.max(initial=0)) + 1, int(item.max(initial=0)) + 1
    first_user = int(user.min(initial=0))
    user = user - first_user
    # the listed (scope, item) pairs, numbered in that order, are the columns of a user's places
    scope_items, column = marked_unique_inverse(scope * n_items + item, n_scopes * n_items)
    width = len(scope_items)
    pairs, row = marked_unique_inverse(user * width + column, (int(user.max(initial=0)) + 1) * width)
    ranks = [frame["rank"].to_numpy(np.float64) for frame in frames]
    bounds = np.cumsum([0, *map(len, frames)])
    best = np.full(len(pairs), np.inf)
    for rank, low, high in zip(ranks, bounds[:-1], bounds[1:], strict=True):
        best[row[low:high]] = np.fmin(best[row[low:high]], rank)
    sources_missing = len(frames) - np.bincount(row, minlength=len(pairs))
    pair_user = pairs // width
    pair_scope, pair_item = np.divmod(scope_items[pairs - pair_user * width], n_items)
    list_code = pair_user * n_scopes + pair_scope
    within = (best.astype(np.int64) - 1) * len(frames) + sources_missing  # best rank, then more sources
    # pairs come grouped by list in item order: a stable sort (runs of sorted lists merged) keeps it
    order = np.argsort(list_code * (int(within.max(initial=0)) + 1) + within, kind="stable")
    ordered_lists = list_code[order]
    first = np.r_[0, np.flatnonzero(np.diff(ordered_lists)) + 1]
    keep = order[group_positions(first, len(order)) < size]
    columns = {"user_code": pair_user[keep] + first_user, "scope_code": pair_scope[keep], "item_code": pair_item[keep]}
    slot = np.full(len(pairs), -1, dtype=np.int64)
    slot[keep] = np.arange(len(keep))
    for name, source, rank, low, high in zip(lists, frames, ranks, bounds[:-1], bounds[1:], strict=True):
        at = slot[row[low:high]]
        inside = at >= 0
        for column_name, values in ((f"{name}_score", source["score"].to_numpy(np.float64)), (f"{name}_rank", rank)):
            columns[column_name] = np.full(len(keep), np.nan)
            columns[column_name][at[inside]] = values[inside]
    return pd.DataFrame(columns, copy=False)  # fresh arrays: no copy into one block


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
