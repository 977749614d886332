"""The evaluation split of the run's signals, shared by the evaluation and the re-ranker's training."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ..recsys.matrices import IdIndex, InteractionMatrix
from ..recsys.splits import latest_pairs_held, random_pairs_held, stratified_random_split, temporal_holdout
from .inputs import coded_engaged, coded_history, read_coded_signals


def split_for_evaluation(frame: pd.DataFrame, settings: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The configured split: per-user temporal holdout (default) or per-user stratified random."""
    if settings.eval_split == "random":
        return stratified_random_split(frame, fraction=settings.holdout_fraction, seed=settings.seed)
    return temporal_holdout(frame, fraction=settings.holdout_fraction)


@dataclass(frozen=True)
class EvaluationSplit:
    """:func:`split_for_evaluation` of the run's signals as the evaluation uses it: the train part
    as a matrix, the engaged test pairs (``user_id``, ``item_id``, ordered by them) and the time of
    the newest train event."""

    train: InteractionMatrix
    truth: pd.DataFrame
    as_of: datetime


def read_evaluation_split(con: duckdb.DuckDBPyConnection, settings: Any) -> EvaluationSplit:
    """The configured split of the signals, computed on ids coded in DuckDB: the same parts as
    :func:`split_for_evaluation` of :func:`read_signals` (whose string ids cost a tier L run a
    minute of factorising), with the train matrix :meth:`InteractionMatrix.from_frame` builds."""
    users, items, rows = read_coded_signals(con)
    u, i = rows["u"], rows["i"]
    if settings.eval_split == "random":
        held = random_pairs_held(u, i, settings.holdout_fraction, settings.seed)
    else:  # rows come in (user, time, item) order, a pair without a time first; the split takes it as the latest
        untimed = np.isnat(rows["last_at"])
        order = np.lexsort((untimed, u)) if untimed.any() else np.arange(len(u))
        held = np.zeros(len(u), dtype=bool)
        held[order] = latest_pairs_held(u[order], settings.holdout_fraction)
    train = {name: values[~held] for name, values in rows.items()}
    kept_users, kept_items = (_recode(train, name, index) for name, index in (("u", users), ("i", items)))
    tested = held & coded_engaged(rows)
    order = np.lexsort((i[tested], u[tested]))
    truth = pd.DataFrame({"user_id": users.ids[u[tested][order]], "item_id": items.ids[i[tested][order]]})
    as_of = pd.Series(train["last_at"]).max().to_pydatetime()
    return EvaluationSplit(coded_history(kept_users, kept_items, train), truth, as_of)


def _recode(rows: dict[str, np.ndarray], column: str, index: IdIndex) -> IdIndex:
    """Renumber ``rows[column]`` over the ids it still holds (in place); return their index."""
    present = np.zeros(len(index), dtype=bool)
    present[rows[column]] = True
    rows[column] = (np.cumsum(present) - 1)[rows[column]].astype(rows[column].dtype)
    return IdIndex(index.ids[present])
