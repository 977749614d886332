"""Per-user models: a small logistic model of one user's response, kept only when it beats the global one.

For each user with at least ``min_interactions`` labelled pairs (positive signal 1, negative 0,
from the decayed signals), a logistic regression over item features — the global model's score
for the item (standardised within the user's row), log popularity, age and the item's category
(one-hot over the ``max_categories`` most common) — is fitted on the user's earlier pairs and
judged on the user's own temporal holdout (the last ``holdout_fraction``, which must hold both
classes). The measure is AUC, which a constant cannot game; the global model's score gives its
AUC on the same pairs. The model is kept when its AUC is at least ``min_auc`` and at least the
global AUC; otherwise the global model serves that user.

:class:`PerUserComposite` is the recommender contract over a global model: a kept user's scores
are the model's probabilities, everyone else's the global scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from personalization_pipeline.recsys.base import Recommender, UserIds
from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix

REPORT_COLUMNS = ["user_id", "pairs", "auc", "global_auc", "kept", "reason"]


@dataclass(frozen=True)
class PerUserParams:
    min_interactions: int = 50
    min_auc: float = 0.70
    holdout_fraction: float = 0.2
    regularization: float = 1.0  # inverse of scikit-learn's C
    max_categories: int = 20
    seed: int = 42


@dataclass(frozen=True)
class ItemFeatures:
    """Per item of the global model (rows in ``item_ids`` order): log popularity, age and category one-hot."""

    item_ids: np.ndarray
    matrix: np.ndarray  # items x (2 + categories), float32
    categories: tuple[str, ...]

    @classmethod
    def build(cls, item_ids: np.ndarray, catalog: pd.DataFrame, max_categories: int) -> ItemFeatures:
        """From ``catalog`` (item_id, category, popularity, age_days); missing items get zeros."""
        frame = catalog.set_index("item_id").reindex(item_ids)
        top = frame["category"].value_counts().sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        categories = tuple(str(c) for c in top.index[:max_categories])
        one_hot = np.zeros((len(frame), len(categories)), np.float32)
        for j, category in enumerate(categories):
            one_hot[:, j] = (frame["category"] == category).to_numpy(np.float32)
        numeric = np.stack(
            [np.log1p(frame[name].fillna(0).clip(lower=0).to_numpy(np.float32)) for name in ("popularity", "age_days")],
            axis=1,
        )
        return cls(np.asarray(item_ids, dtype=str), np.hstack([numeric, one_hot]).astype(np.float32), categories)


def standardised(scores: np.ndarray) -> np.ndarray:
    """Each row's scores as z-scores over its finite entries (NaN stays NaN; a flat row is 0)."""
    mean = np.nanmean(scores, axis=1, keepdims=True)
    std = np.nanstd(scores, axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


@dataclass(frozen=True)
class PerUserFit:
    """Kept models (rows aligned with ``user_ids``) and one report row per eligible user."""

    user_ids: np.ndarray
    coefficients: np.ndarray  # users x (1 + item features): global score first
    intercepts: np.ndarray
    report: pd.DataFrame  # REPORT_COLUMNS


def fit_per_user(pairs: pd.DataFrame, features: ItemFeatures, params: PerUserParams) -> PerUserFit:
    """Fit and judge one model per eligible user.

    ``pairs``: (user_id, item_id, label, occurred_at, global_z) of labelled pairs, ``global_z`` being
    the global model's score of the item standardised within the user's row (:func:`standardised`).
    """
    column = {item: i for i, item in enumerate(features.item_ids)}
    kept_users, coefs, intercepts, report = [], [], [], []
    known = pairs[pairs["item_id"].isin(column)].sort_values(["user_id", "occurred_at", "item_id"], kind="stable")
    for user, rows in known.groupby("user_id", sort=True):
        if len(rows) < params.min_interactions:
            continue
        cols = rows["item_id"].map(column).to_numpy()
        x = np.column_stack([np.nan_to_num(rows["global_z"].to_numpy(np.float64)), features.matrix[cols]])
        y = rows["label"].to_numpy(int)
        cut = len(rows) - max(1, round(len(rows) * params.holdout_fraction))
        if len(set(y[:cut])) < 2 or len(set(y[cut:])) < 2:
            report.append([user, len(rows), np.nan, np.nan, False, "one class in train or holdout"])
            continue
        model = LogisticRegression(C=1.0 / params.regularization, max_iter=500, random_state=params.seed)
        model.fit(x[:cut], y[:cut])
        auc = float(roc_auc_score(y[cut:], model.decision_function(x[cut:])))
        global_auc = float(roc_auc_score(y[cut:], x[cut:, 0]))
        kept = auc >= params.min_auc and auc >= global_auc
        reason = "" if kept else ("below the AUC floor" if auc < params.min_auc else "the global model is better")
        report.append([user, len(rows), auc, global_auc, kept, reason])
        if kept:
            kept_users.append(user)
            coefs.append(model.coef_[0].astype(np.float32))
            intercepts.append(np.float32(model.intercept_[0]))
    width = 1 + features.matrix.shape[1]
    return PerUserFit(
        np.asarray(kept_users, dtype=str),
        np.asarray(coefs, dtype=np.float32).reshape(len(kept_users), width),
        np.asarray(intercepts, dtype=np.float32),
        pd.DataFrame(report, columns=REPORT_COLUMNS),
    )


class PerUserComposite(Recommender):
    """Per-user overrides over a global model (attach it with :meth:`over` before scoring)."""

    kind = "per_user"
    Params = PerUserParams

    users: IdIndex
    coefficients: np.ndarray
    intercepts: np.ndarray
    item_features: ItemFeatures
    base_version: str
    base: Recommender | None = None

    def fit(self, history: InteractionMatrix) -> Self:
        raise NotImplementedError("per-user models are fitted by fit_per_user (they need item features and a base)")

    @classmethod
    def from_fit(cls, params: PerUserParams, fitted: PerUserFit, features: ItemFeatures, base: Recommender) -> Self:
        model = cls(params)
        model.restore(
            {
                "user_ids": fitted.user_ids,
                "coefficients": fitted.coefficients,
                "intercepts": fitted.intercepts,
                "item_ids": features.item_ids,
                "item_matrix": features.matrix,
                "categories": np.asarray(features.categories, dtype=str),
                "base_version": np.array(base.version),
            }
        )
        return model.over(base)

    def over(self, base: Recommender) -> Self:
        """Score on top of ``base`` (the global model whose items these models were fitted over)."""
        self.base = base
        return self

    def without(self, users: set[str]) -> Self:
        """The same models minus those of ``users`` (e.g. who opted out since)."""
        keep = ~np.isin(self.users.ids, list(users))
        state = {**self.state(), "user_ids": self.users.ids[keep], "coefficients": self.coefficients[keep]}
        state["intercepts"] = self.intercepts[keep]
        pruned = type(self)(self.params)
        pruned.restore(state)
        return pruned.over(self.base) if self.base is not None else pruned

    @property
    def item_ids(self) -> np.ndarray:
        return self.item_features.item_ids

    def score(self, user_ids: UserIds, history: InteractionMatrix) -> np.ndarray:
        """Global scores (on its items), replaced by the model's probabilities for kept users."""
        if self.base is None:
            raise ValueError("attach the global model with over() before scoring")
        base_cols = IdIndex(np.asarray(self.base.item_ids, dtype=str)).positions(self.item_ids)
        scores = np.full((len(user_ids), len(self.item_ids)), np.nan, dtype=np.float32)
        base = self.base.score(user_ids, history)
        inside = base_cols >= 0
        scores[:, inside] = base[:, base_cols[inside]]
        rows = self.users.positions(user_ids)
        kept = np.flatnonzero(rows >= 0)
        if len(kept):
            z = np.nan_to_num(standardised(scores[kept]))
            w = self.coefficients[rows[kept]]
            logits = z * w[:, :1] + w[:, 1:] @ self.item_features.matrix.T + self.intercepts[rows[kept], np.newaxis]
            scores[kept] = np.where(np.isnan(scores[kept]), np.nan, 1.0 / (1.0 + np.exp(-logits)))
        return scores

    def state(self) -> dict[str, np.ndarray]:
        return {
            "user_ids": self.users.ids,
            "coefficients": self.coefficients,
            "intercepts": self.intercepts,
            "item_ids": self.item_features.item_ids,
            "item_matrix": self.item_features.matrix,
            "categories": np.asarray(self.item_features.categories, dtype=str),
            "base_version": np.array(self.base_version),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.users = IdIndex(state["user_ids"])
        self.coefficients = state["coefficients"]
        self.intercepts = state["intercepts"]
        self.item_features = ItemFeatures(
            state["item_ids"], state["item_matrix"], tuple(str(c) for c in state["categories"])
        )
        self.base_version = str(state["base_version"])
