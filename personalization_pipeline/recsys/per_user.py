"""Per-user models: a small logistic model of one user's response, kept only when it beats the global one.

For each user with at least ``min_interactions`` labelled pairs (positive signal 1, negative 0,
from the decayed signals), a logistic regression over item features — the global model's score
for the item (standardised within the user's row), log popularity, age and the item's category
(one-hot over the ``max_categories`` most common) — is fitted on the user's earlier pairs and
judged on the user's own temporal holdout (the last ``holdout_fraction``, which must hold both
classes). The measure is AUC, which a constant cannot game; the global model's score gives its
AUC on the same pairs. The model is kept when its AUC is at least ``min_auc`` and at least the
global AUC; otherwise the global model serves that user.

AUC measures how well a model tells a user's likes from dislikes, not how well it ranks what the
user will engage with, which is what is served. :meth:`PerUserFit.judged` adds that test: the
models, refitted without an evaluation holdout (and the global model with them), must raise the
mean NDCG@K of their users on that holdout beyond its noise (:func:`ndcg_judgement`), or none
serves.

:class:`PerUserComposite` is the recommender contract over a global model: a kept user's scores
are the model's probabilities, everyone else's the global scores.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Self

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import rankdata

from personalization_pipeline.recsys.base import Recommender, UserIds
from personalization_pipeline.recsys.factor_topk import Factored, FactorRows
from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix
from personalization_pipeline.recsys.metrics import evaluate_per_user, paired_stderr

REPORT_COLUMNS = ["user_id", "pairs", "auc", "global_auc", "ndcg", "global_ndcg", "kept", "reason"]
JUDGEMENT_COLUMNS = ["user_id", "ndcg", "global_ndcg"]


@dataclass(frozen=True)
class PerUserParams:
    min_interactions: int = 50
    min_auc: float = 0.70
    holdout_fraction: float = 0.2
    regularization: float = 1.0  # inverse of scikit-learn's C
    max_categories: int = 20
    candidates: int = 200  # a kept user's model re-scores the global model's best unseen items, no others
    margin_stderrs: float = 1.0  # the models' held-out NDCG gain must exceed this many standard errors


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
    """Each row's scores as z-scores over its finite entries (NaN stays NaN; a flat row is 0).
    Without a NaN, NumPy's plain mean and deviation give the same values as its NaN-aware ones,
    which copy the scores first (eight times slower on a batch of 1024 x 50,000)."""
    plain = not np.isnan(scores).any()
    mean = scores.mean(axis=1, keepdims=True) if plain else np.nanmean(scores, axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True) if plain else np.nanstd(scores, axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


@dataclass(frozen=True)
class PerUserFit:
    """Kept models (rows aligned with ``user_ids``) and one report row per eligible user."""

    user_ids: np.ndarray
    coefficients: np.ndarray  # users x (1 + item features): global score first
    intercepts: np.ndarray
    report: pd.DataFrame  # REPORT_COLUMNS

    ndcg_gain: float = float("nan")  # mean held-out NDCG gain over the global model (see judged)
    ndcg_gain_stderr: float = float("nan")

    def judged(self, judgement: pd.DataFrame, margin_stderrs: float) -> PerUserFit:
        """The kept models as a whole when, over the users ``judgement`` covers (JUDGEMENT_COLUMNS,
        see :func:`ndcg_judgement`), their mean NDCG beats the global model's by more than
        ``margin_stderrs`` standard errors of the per-user gain; else none. A single user's
        holdout is too small to judge their own model: keeping the users whose model won there
        keeps the lucky ones. With no user judged nothing shows the models help: none is kept.
        The report gains each user's two figures."""
        figures = judgement.set_index("user_id")[["ndcg", "global_ndcg"]].astype(np.float64)
        report = self.report.drop(columns=["ndcg", "global_ndcg"]).join(figures, on="user_id")
        gain = figures["ndcg"] - figures["global_ndcg"]
        stderr = paired_stderr(figures["ndcg"], figures["global_ndcg"])
        mean = float(gain.mean()) if len(gain) else float("nan")
        if len(gain) and mean > margin_stderrs * stderr:
            return replace(self, report=report[REPORT_COLUMNS], ndcg_gain=mean, ndcg_gain_stderr=stderr)
        kept = report["kept"].to_numpy(bool)
        report.loc[kept, "reason"] = (
            f"the models lower held-out NDCG (mean gain {mean:+.4f}, SE {stderr:.4f})"
            if len(gain)
            else "no held-out engagement to judge the models on"
        )
        report.loc[kept, "kept"] = False
        none = np.zeros(len(self.user_ids), dtype=bool)
        return PerUserFit(
            self.user_ids[none], self.coefficients[none], self.intercepts[none], report[REPORT_COLUMNS], mean, stderr
        )


def ndcg_judgement(composite_lists: pd.DataFrame, global_lists: pd.DataFrame, truth: pd.DataFrame, k: int):
    """Per user of ``truth`` (relevant user_id, item_id pairs): NDCG@k of the per-user composite's
    lists and of the global model's (frames of user_id, item_id, rank), as JUDGEMENT_COLUMNS."""
    users = truth["user_id"].nunique()
    ndcg = {
        name: evaluate_per_user(lists, truth, k=k, catalog_size=1, n_users_total=users)[1]["ndcg"]
        for name, lists in (("ndcg", composite_lists), ("global_ndcg", global_lists))
    }
    return pd.DataFrame(ndcg).rename_axis("user_id").reset_index()[JUDGEMENT_COLUMNS]


FIT_BATCH_CELLS = 250_000  # users x padded pairs per batch
NEWTON_STEPS = 30


def fit_logistic_batch(
    x: np.ndarray, y: np.ndarray, mask: np.ndarray, l2: float, steps: int = NEWTON_STEPS
) -> tuple[np.ndarray, np.ndarray]:
    """L2-regularised logistic regressions, one per row of a padded batch, fitted together by Newton's
    method: ``x`` (users, pairs, features), ``y`` and ``mask`` (users, pairs). Minimises, per user,
    the log loss of the unmasked pairs plus ``l2 / 2 * |w|²`` (the intercept is not penalised), the
    objective of scikit-learn's ``LogisticRegression(C=1 / l2)``. Returns (weights, intercepts)."""
    users, _, width = x.shape
    xa = np.concatenate([x, np.ones((*x.shape[:2], 1))], axis=2) * mask[..., np.newaxis]
    penalty = np.append(np.full(width, l2), 0.0)
    theta = np.zeros((users, width + 1))
    ridge = np.diag(penalty + 1e-9)
    xt = xa.transpose(0, 2, 1)
    for _ in range(steps):
        p = expit((xa @ theta[..., np.newaxis])[..., 0])
        gradient = (xt @ ((p - y) * mask)[..., np.newaxis])[..., 0] + penalty * theta
        hessian = (xt * (p * (1 - p) * mask)[:, np.newaxis, :]) @ xa + ridge
        step = np.linalg.solve(hessian, gradient[..., np.newaxis])[..., 0]
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta[:, :width], theta[:, width]


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve of ``scores`` for 0/1 ``labels`` (both present): the share of
    (positive, negative) pairs the scores order correctly, ties counting half (Mann-Whitney)."""
    positive = labels == 1
    pos, neg = int(positive.sum()), int((~positive).sum())
    return float((rankdata(scores)[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


@dataclass(frozen=True)
class _Candidate:
    user: str
    x: np.ndarray
    y: np.ndarray
    cut: int


def _batches(candidates: list[_Candidate]) -> list[list[_Candidate]]:
    """Consecutive runs of candidates (sorted by length) whose padded size stays within the budget."""
    batches: list[list[_Candidate]] = []
    for candidate in candidates:
        if batches and (len(batches[-1]) + 1) * candidate.cut <= FIT_BATCH_CELLS:
            batches[-1].append(candidate)
        else:
            batches.append([candidate])
    return batches


def fit_per_user(pairs: pd.DataFrame, features: ItemFeatures, params: PerUserParams) -> PerUserFit:
    """Fit and judge one model per eligible user (the fits batched, :func:`fit_logistic_batch`).

    ``pairs``: (user_id, item_id, label, occurred_at, global_z) of labelled pairs, ``global_z`` being
    the global model's score of the item standardised within the user's row (:func:`standardised`).
    """
    column = pd.Index(features.item_ids).get_indexer(pairs["item_id"])
    known = pairs.assign(column=column)[column >= 0].sort_values(["user_id", "occurred_at", "item_id"], kind="stable")
    users = known["user_id"].to_numpy(str)
    columns, labels = known["column"].to_numpy(np.int64), known["label"].to_numpy(np.float64)
    z = np.nan_to_num(known["global_z"].to_numpy(np.float64))
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else np.empty(0, np.int64)
    stops = np.append(starts[1:], len(users)) if len(starts) else starts
    report: dict[str, list[object]] = {}
    candidates = []
    for start, stop in zip(starts, stops, strict=True):  # each user's pairs, in time order
        if stop - start < params.min_interactions:
            continue
        user = str(users[start])
        x = np.column_stack([z[start:stop], features.matrix[columns[start:stop]]])
        y = labels[start:stop]
        cut = len(y) - max(1, round(len(y) * params.holdout_fraction))
        report[user] = [user, len(y), *[np.nan] * 4, False, "one class in train or holdout"]
        if len(set(y[:cut])) == 2 and len(set(y[cut:])) == 2:
            candidates.append(_Candidate(user, x, y, cut))
    candidates.sort(key=lambda c: (c.cut, c.user))  # similar lengths share a batch: little padding
    kept: dict[str, tuple[np.ndarray, float]] = {}
    width = 1 + features.matrix.shape[1]
    for batch in _batches(candidates):
        longest = batch[-1].cut
        x = np.zeros((len(batch), longest, width))
        y = np.zeros((len(batch), longest))
        mask = np.zeros((len(batch), longest))
        for b, c in enumerate(batch):
            x[b, : c.cut], y[b, : c.cut], mask[b, : c.cut] = c.x[: c.cut], c.y[: c.cut], 1.0
        weights, intercepts = fit_logistic_batch(x, y, mask, params.regularization)
        for c, w, b0 in zip(batch, weights, intercepts, strict=True):
            auc = _auc(c.y[c.cut :], c.x[c.cut :] @ w + b0)
            global_auc = _auc(c.y[c.cut :], c.x[c.cut :, 0])
            keep = auc >= params.min_auc and auc >= global_auc
            reason = "" if keep else ("below the AUC floor" if auc < params.min_auc else "the global model is better")
            report[c.user] = [c.user, len(c.y), auc, global_auc, np.nan, np.nan, keep, reason]
            if keep:
                kept[c.user] = (w, b0)
    users = sorted(kept)
    return PerUserFit(
        np.asarray(users, dtype=str),
        np.asarray([kept[u][0] for u in users], dtype=np.float32).reshape(len(users), width),
        np.asarray([kept[u][1] for u in users], dtype=np.float32),
        pd.DataFrame([report[u] for u in sorted(report)], columns=REPORT_COLUMNS),
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

    def factor_rows(self, user_ids: np.ndarray, history: InteractionMatrix) -> list[FactorRows] | None:
        """The global model's factor-scored users without a model of their own, when the global
        model knows all of these models' items."""
        inner = self.base.factor_rows(user_ids, history) if isinstance(self.base, Factored) else None
        if inner is None:
            return None
        base_cols = self._base_cols()
        if (base_cols < 0).any():
            return None
        return [self._unkept(group, user_ids).columns(base_cols) for group in inner]

    def _unkept(self, group: FactorRows, user_ids: np.ndarray) -> FactorRows:
        return group.only(self.users.positions(np.asarray(user_ids, dtype=str)[group.positions]) < 0)

    def score(self, user_ids: UserIds, history: InteractionMatrix) -> np.ndarray:
        """Global scores (on its items); for kept users, the model's probabilities over their
        candidates: the global model's ``candidates`` best unseen items (the others are not
        listed). A model of how a user answers what they engage with re-orders what the global
        model proposes; over the whole catalogue it would favour items the user would like if they
        ever met them, which the user mostly never does."""
        if self.base is None:
            raise ValueError("attach the global model with over() before scoring")
        base_cols = self._base_cols()
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
            candidate = self._candidates(scores[kept], np.asarray(user_ids, dtype=str)[kept], history)
            scores[kept] = np.where(candidate, 1.0 / (1.0 + np.exp(-logits)), np.nan)
        return scores

    def _base_cols(self) -> np.ndarray:
        """The global model's column of each of these models' items (-1: it lacks the item)."""
        assert self.base is not None
        return IdIndex(np.asarray(self.base.item_ids, dtype=str)).positions(self.item_ids)

    def _candidates(self, base: np.ndarray, user_ids: np.ndarray, history: InteractionMatrix) -> np.ndarray:
        """Mask of each row's ``params.candidates`` best-scored items the user has not seen."""
        free = np.where(np.isnan(base), -np.inf, base)
        seen = history.seen[np.maximum(history.users.positions(user_ids), 0)].tocoo()
        known = history.users.positions(user_ids)[seen.row] >= 0
        columns = IdIndex(np.asarray(self.item_ids, dtype=str)).positions(history.items.ids)[seen.col]
        mine = known & (columns >= 0)
        free[seen.row[mine], columns[mine]] = -np.inf
        n = min(self.params.candidates, free.shape[1])
        top = np.argpartition(-free, n - 1, axis=1)[:, :n]
        mask = np.zeros(free.shape, dtype=bool)
        np.put_along_axis(mask, top, True, axis=1)
        return mask & np.isfinite(free)

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
