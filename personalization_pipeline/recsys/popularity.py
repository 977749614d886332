"""Non-personalised popularity baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix

PopularityBy = Literal["weight", "users"]


@dataclass(frozen=True)
class PopularityModel:
    """One score per item, the same for every user; ties rank by item id."""

    items: IdIndex
    scores: np.ndarray

    @classmethod
    def fit(cls, interactions: InteractionMatrix, by: PopularityBy = "weight") -> PopularityModel:
        """Score items by summed positive weight (``weight``) or distinct users (``users``).

        Every item of the frame is kept; items with only non-positive rows score 0.
        """
        if by == "weight":
            matrix = interactions.weights
        elif by == "users":
            matrix = interactions.weights.astype(bool)
        else:
            raise ValueError(f"unknown popularity measure {by!r}")
        scores = np.asarray(matrix.sum(axis=0, dtype=np.float64)).ravel()
        return cls(items=interactions.items, scores=scores)

    @property
    def item_ids(self) -> np.ndarray:
        return self.items.ids

    def score(self, user_ids: pd.Series | np.ndarray | list[str]) -> np.ndarray:
        """The popularity row repeated for each user (read-only view)."""
        return np.broadcast_to(self.scores, (len(user_ids), len(self.scores)))

    def to_frame(self) -> pd.DataFrame:
        """(item_id, score), best first, ties by item_id."""
        order = np.lexsort((self.items.ids, -self.scores))
        return pd.DataFrame({"item_id": self.items.ids[order], "score": self.scores[order]})
