"""Implicit-feedback ALS (the ``implicit`` library): global collaborative filtering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from personalization_pipeline.recsys.base import Recommender, UserIds
from personalization_pipeline.recsys.dots import dots
from personalization_pipeline.recsys.factor_topk import FactorRows
from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix


@dataclass(frozen=True)
class ALSParams:
    """Hyper-parameters, with the defaults the pipeline uses; ``alpha`` scales weights into
    implicit's confidences."""

    factors: int = 16
    iterations: int = 20
    regularization: float = 10.0
    alpha: float = 3.0
    seed: int = 42
    num_threads: int = 0


class ALS(Recommender):
    """User and item factors with their id indexes; score = user . item."""

    kind = "als"
    Params = ALSParams

    users: IdIndex
    items: IdIndex
    user_factors: np.ndarray
    item_factors: np.ndarray

    def fit(self, history: InteractionMatrix) -> Self:
        """Fit on ``history.weights``; deterministic for ``params.seed``.

        Users and items without any positive weight carry no signal and are left out of the
        model (their scores are NaN / they are never scored).
        """
        if history.weights.nnz == 0:
            raise ValueError("no positive interactions to train ALS on")
        params = self.params
        with threadpool_limits(1, "blas"):  # implicit threads itself; a BLAS thread pool under it only slows it
            model = AlternatingLeastSquares(
                factors=params.factors,
                iterations=params.iterations,
                regularization=params.regularization,
                alpha=params.alpha,
                num_threads=params.num_threads,
                random_state=params.seed,
            )
            model.fit(history.weights, show_progress=False)
        user_keep = np.diff(history.weights.indptr) > 0
        item_keep = np.bincount(history.weights.indices, minlength=len(history.items)) > 0
        self.restore(
            {
                "user_ids": history.users.ids[user_keep],
                "item_ids": history.items.ids[item_keep],
                "user_factors": np.ascontiguousarray(model.user_factors[user_keep]),
                "item_factors": np.ascontiguousarray(model.item_factors[item_keep]),
            }
        )
        return self

    @property
    def item_ids(self) -> np.ndarray:
        return self.items.ids

    def score(self, user_ids: UserIds, history: InteractionMatrix | None = None) -> np.ndarray:
        """Scores (float32, :func:`~.dots.dots`: the same for a user whichever users are scored
        with them); rows of users without factors are NaN. ``history`` is not needed."""
        rows = self.users.positions(user_ids)
        out = np.full((len(rows), len(self.items)), np.nan, dtype=np.float32)
        known = rows >= 0
        out[known] = dots(self.user_factors[rows[known]], self.item_factors)
        return out

    def factor_rows(self, user_ids: np.ndarray, history: InteractionMatrix | None = None) -> list[FactorRows]:
        """Every user with factors: all scores are dot products."""
        rows = self.users.positions(user_ids)
        known = np.flatnonzero(rows >= 0)
        return [FactorRows(known, self.user_factors[rows[known]], self.item_factors)]

    def state(self) -> dict[str, np.ndarray]:
        return {
            "user_ids": self.users.ids,
            "item_ids": self.items.ids,
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.users = IdIndex(state["user_ids"])
        self.items = IdIndex(state["item_ids"])
        self.user_factors = state["user_factors"]
        self.item_factors = state["item_factors"]
