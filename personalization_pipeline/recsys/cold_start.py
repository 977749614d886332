"""Cold start for users with little history: a rule-based score blended with the model's.

For a user with fewer than ``max_history`` engaged items, an item's score is
``a · z(model) + (1 - a) · rule`` with ``a = h / (h + damping)`` (``h``: the user's engaged
items, so engagement decides how much the personal part weighs) and
``rule = z(log(1 + the item's users)) + category_boost · (the user's share of engaged items in
the item's category) + fresh_boost · [the item was approved within fresh_days]``; ``z``
standardises over the row's items. Users with more history get the model's scores unchanged;
users the model cannot score (a NaN row) get the rule alone. Users with no history at all are
served the popularity ranking of their scope, outside any model.

For users a factor model scores (score = u · v), ``z`` uses the mean and the spread of the
scores over the items from the item factors' mean and covariance (u · mean, sqrt(uᵀ cov u)), so
the blend is an affine map of the dot products (:class:`~.factor_topk.Affine`) and those users'
lists come from the proposal path like the others' (with at most ``MAX_BLEND_CATEGORIES``
categories: each is a dimension of the index).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personalization_pipeline.recsys.factor_topk import Affine, Factored, FactorRows
from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.ranking import DEFAULT_HISTORY_DAMPING, Scorer
from personalization_pipeline.recsys.sources import age_days

MAX_BLEND_CATEGORIES = 64


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
        self._moments: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def item_ids(self) -> np.ndarray:
        return self.model.item_ids

    def _history_sizes(self, user_ids: np.ndarray, history: InteractionMatrix) -> tuple[np.ndarray, np.ndarray]:
        """Each user's row in ``history`` (-1: none) and engaged item count."""
        rows = history.users.positions(user_ids)
        engaged = np.diff(history.engaged.indptr)
        return rows, np.where(rows >= 0, engaged[np.maximum(rows, 0)], 0).astype(np.float64)

    def factor_rows(self, user_ids: np.ndarray, history: InteractionMatrix) -> list[FactorRows] | None:
        """The model's factor-scored users: those with long histories as they are, the blended ones
        (short histories) through their :class:`Affine` map."""
        inner = self.model.factor_rows(user_ids, history) if isinstance(self.model, Factored) else None
        if inner is None:
            return None
        groups = []
        for group in inner:
            rows, h = self._history_sizes(user_ids[group.positions], history)
            cold = (rows >= 0) & (h < self.params.max_history)
            groups.append(group.only(~cold))
            if cold.any() and group.affine is None and self._to_category.shape[1] <= MAX_BLEND_CATEGORIES:
                groups.append(self._affine(group.only(cold), self._shares(history, rows[cold], h[cold]), h[cold]))
        return groups

    def _affine(self, group: FactorRows, shares: np.ndarray, h: np.ndarray) -> FactorRows:
        """``group`` (short histories: category ``shares``, engaged counts ``h``) with its blend."""
        if self._moments is None:  # the item factors' mean and covariance, in float64
            items = group.items.astype(np.float64)
            mean = items.mean(axis=0)
            self._moments = mean, (items - mean).T @ (items - mean) / max(len(items), 1)
        mean, cov = self._moments
        users = group.users.astype(np.float64)
        # row by row (numpy's sum along a row): a user's terms never depend on who shares the batch
        outer = (users[:, :, np.newaxis] * users[:, np.newaxis, :]).reshape(len(users), -1)
        spread = np.sqrt(np.maximum(np.sum(outer * cov.reshape(-1), axis=1), 0.0))
        weight = h / (h + self.params.damping)
        scale = np.where(spread > 0, weight / np.where(spread > 0, spread, 1.0), 0.0)
        rule_weight = 1 - weight
        affine = Affine(
            scale=scale,
            offset=-scale * np.sum(users * mean, axis=1),
            rule_weight=rule_weight,
            category_terms=rule_weight[:, None] * self.params.category_boost * shares,
            item_terms=self._popularity + self.params.fresh_boost * self._fresh,
            categories=self._categories,
        )
        return replace(group, affine=affine)

    def _shares(self, history: InteractionMatrix, rows: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Each user's (``history`` rows ``rows``, engaged counts ``h``) share of engaged items per
        category (users x categories)."""
        per_category = np.asarray((history.engaged[rows].astype(np.float64) @ self._to_category).todense())
        return per_category / np.maximum(h, 1)[:, None]

    def score(self, user_ids: np.ndarray, history: InteractionMatrix) -> np.ndarray:
        scores = np.asarray(self.model.score(user_ids, history), dtype=np.float64)
        rows, h = self._history_sizes(user_ids, history)
        cold = np.flatnonzero((rows >= 0) & (h < self.params.max_history))
        if len(cold) == 0:
            return scores
        blended = [g for g in self.factor_rows(user_ids[cold], history) or [] if g.affine is not None]
        for group in blended:  # the affine map of the dot products, as the proposal path scores them
            scores[cold[group.positions]] = group.scores(np.arange(len(group.positions)))
        cold = np.setdiff1d(cold, cold[np.concatenate([g.positions for g in blended] or [np.empty(0, int)])])
        if len(cold) == 0:
            return scores
        share = self._shares(history, rows[cold], h[cold])[:, self._categories]
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
