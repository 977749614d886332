"""Implicit-feedback ALS (the ``implicit`` library) with a portable, pickle-free model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix


@dataclass(frozen=True)
class ALSParams:
    """Hyper-parameters; ``alpha`` scales weights into implicit's confidences."""

    factors: int = 64
    iterations: int = 20
    regularization: float = 0.05
    alpha: float = 10.0
    seed: int = 42
    num_threads: int = 0


@dataclass(frozen=True)
class ALSModel:
    """User and item factors with their id indexes; score = user . item."""

    users: IdIndex
    items: IdIndex
    user_factors: np.ndarray
    item_factors: np.ndarray
    params: ALSParams

    @property
    def item_ids(self) -> np.ndarray:
        return self.items.ids

    def score(self, user_ids: pd.Series | np.ndarray | list[str]) -> np.ndarray:
        """Scores (len(user_ids) x items, float32); rows of unknown users are NaN."""
        rows = self.users.positions(user_ids)
        out = np.full((len(rows), len(self.items)), np.nan, dtype=np.float32)
        known = rows >= 0
        out[known] = self.user_factors[rows[known]] @ self.item_factors.T
        return out

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` of factors, ids and params to exactly ``path``."""
        with open(path, "wb") as handle:
            np.savez(
                handle,
                user_ids=self.users.ids,
                item_ids=self.items.ids,
                user_factors=self.user_factors,
                item_factors=self.item_factors,
                params=np.array(json.dumps(asdict(self.params))),
            )

    @classmethod
    def load(cls, path: str | Path) -> ALSModel:
        """Read a model written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                users=IdIndex(data["user_ids"]),
                items=IdIndex(data["item_ids"]),
                user_factors=data["user_factors"],
                item_factors=data["item_factors"],
                params=ALSParams(**json.loads(str(data["params"]))),
            )


def train_als(interactions: InteractionMatrix, params: ALSParams = ALSParams()) -> ALSModel:
    """Fit ALS on ``interactions.weights``; deterministic for ``params.seed``.

    Users and items without any positive weight carry no signal and are left out
    of the model (their scores are NaN / they are never scored).
    """
    if interactions.weights.nnz == 0:
        raise ValueError("no positive interactions to train ALS on")
    with threadpool_limits(1, "blas"):  # implicit threads itself; a BLAS thread pool under it only slows it
        model = AlternatingLeastSquares(
            factors=params.factors,
            iterations=params.iterations,
            regularization=params.regularization,
            alpha=params.alpha,
            num_threads=params.num_threads,
            random_state=params.seed,
        )
        model.fit(interactions.weights, show_progress=False)
    user_keep = np.diff(interactions.weights.indptr) > 0
    item_keep = np.bincount(interactions.weights.indices, minlength=len(interactions.items)) > 0
    return ALSModel(
        users=IdIndex(interactions.users.ids[user_keep]),
        items=IdIndex(interactions.items.ids[item_keep]),
        user_factors=np.ascontiguousarray(model.user_factors[user_keep]),
        item_factors=np.ascontiguousarray(model.item_factors[item_keep]),
        params=params,
    )
