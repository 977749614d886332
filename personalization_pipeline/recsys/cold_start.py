"""Cold start for users with little history: a rule-based score blended with the model's.

For a user with fewer than ``max_history`` engaged items, an item's score is
``a · z(model) + (1 - a) · rule`` with ``a = h / (h + damping)`` (``h``: the user's engaged
items, so engagement decides how much the personal part weighs) and
``rule = z(log(1 + the item's users)) + category_boost · (the user's share of engaged items in
the item's category) + fresh_boost · [the item was approved within fresh_days]``; ``z``
standardises over the row's items. Users with more history get the model's scores unchanged;
users the model cannot score (a NaN row) get the rule alone. Users with no history at all are
served the popularity ranking of their scope, outside any model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personalization_pipeline.recsys.factor_topk import Factored, FactorRows
from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.ranking import DEFAULT_HISTORY_DAMPING, Scorer
from personalization_pipeline.recsys.sources import age_days


@dataclass(frozen=True)
class ColdStartParams:
    max_history: int = 5
    category_boost: float = 1.0
    fresh_boost: float = 0.5
    fresh_days: float = 14.0
    damping: float = DEFAULT_HISTORY_DAMPING


def _standardised(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean over finite values, over its standard deviation (0 where constant or empty)."""
    finite = np.isfinite(scores)
    count = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    filled = np.where(finite, scores, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / count
    spread = np.sqrt((np.where(finite, scores - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count)
    return np.where(finite, (filled - mean) / np.where(spread > 0, spread, 1.0), 0.0)


class ColdStartBlend:
    """``model``'s scores with the cold-start blend (see the module docstring) for short histories;
    ``catalog`` has item_id, category and optionally approved_at; ``as_of`` dates freshness."""

    def __init__(
        self, model: Scorer, catalog: pd.DataFrame, history: InteractionMatrix, as_of: datetime, params: ColdStartParams
    ) -> None:
        self.model = model
        self.params = params
        items = np.asarray(model.item_ids, dtype=str)
        listed = catalog.assign(item_id=catalog["item_id"].astype(str)).drop_duplicates("item_id")
        listed = listed.set_index("item_id").reindex(items)
        codes, _ = pd.factorize(listed["category"].astype("string").fillna("").to_numpy(str), sort=True)
        self._categories = codes
        users_per_item = np.asarray(history.engaged.sum(axis=0)).ravel()
        in_history = history.items.positions(items)
        popularity = np.log1p(np.where(in_history >= 0, users_per_item[np.maximum(in_history, 0)], 0.0))
        self._popularity = _standardised(popularity[None, :])[0]
        age = age_days(listed, as_of)
        self._fresh = ((age >= 0) & (age <= params.fresh_days)).astype(np.float64)
        # history item -> category of the model's items (items the model lacks have no category here)
        inside = in_history >= 0
        self._to_category = sp.csr_matrix(
            (np.ones(int(inside.sum())), (in_history[inside], codes[inside])),
            shape=(len(history.items), int(codes.max(initial=-1)) + 1),
        )

    @property
    def item_ids(self) -> np.ndarray:
        return self.model.item_ids

    def _history_sizes(self, user_ids: np.ndarray, history: InteractionMatrix) -> tuple[np.ndarray, np.ndarray]:
        """Each user's row in ``history`` (-1: none) and engaged item count."""
        rows = history.users.positions(user_ids)
        engaged = np.diff(history.engaged.indptr)
        return rows, np.where(rows >= 0, engaged[np.maximum(rows, 0)], 0).astype(np.float64)

    def factor_rows(self, user_ids: np.ndarray, history: InteractionMatrix) -> FactorRows | None:
        """The model's factor-scored users minus the blended ones (short histories)."""
        inner = self.model.factor_rows(user_ids, history) if isinstance(self.model, Factored) else None
        if inner is None:
            return None
        rows, h = self._history_sizes(user_ids[inner.positions], history)
        return inner.only((rows < 0) | (h >= self.params.max_history))

    def score(self, user_ids: np.ndarray, history: InteractionMatrix) -> np.ndarray:
        scores = np.asarray(self.model.score(user_ids, history), dtype=np.float64)
        rows, h = self._history_sizes(user_ids, history)
        cold = np.flatnonzero((rows >= 0) & (h < self.params.max_history))
        if len(cold) == 0:
            return scores
        per_category = np.asarray((history.engaged[rows[cold]].astype(np.float64) @ self._to_category).todense())
        share = per_category[:, self._categories] / np.maximum(h[cold], 1)[:, None]
        rule = self._popularity + self.params.category_boost * share + self.params.fresh_boost * self._fresh
        personal = scores[cold]
        weight = np.where(np.isfinite(personal).any(axis=1), h[cold] / (h[cold] + self.params.damping), 0.0)[:, None]
        scores[cold] = weight * _standardised(personal) + (1 - weight) * rule
        return scores


def with_cold_start(
    model: Scorer, catalog: pd.DataFrame, history: InteractionMatrix, as_of: datetime, params: ColdStartParams
) -> Scorer:
    """``model`` blended for short histories, or ``model`` itself when the blend is off (``max_history`` 0)."""
    return model if params.max_history <= 0 else ColdStartBlend(model, catalog, history, as_of, params)
