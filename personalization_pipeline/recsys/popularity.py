"""Non-personalised popularity: the baseline and the cold-start fallback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.base import Recommender, UserIds
from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix


@dataclass(frozen=True)
class PopularityParams:
    """``weight``: summed positive weight per item; ``users``: distinct users with a positive weight."""

    by: Literal["weight", "users"] = "weight"


class Popularity(Recommender):
    """One score per item, the same for every user; ties rank by item id."""

    kind = "popularity"
    Params = PopularityParams

    items: IdIndex
    scores: np.ndarray

    def fit(self, history: InteractionMatrix) -> Self:
        """Score every item of ``history``; items with only non-positive rows score 0."""
        if self.params.by not in ("weight", "users"):
            raise ValueError(f"unknown popularity measure {self.params.by!r}")
        matrix = history.weights if self.params.by == "weight" else history.weights.astype(bool)
        self.restore(
            {"item_ids": history.items.ids, "scores": np.asarray(matrix.sum(axis=0, dtype=np.float64)).ravel()}
        )
        return self

    @property
    def item_ids(self) -> np.ndarray:
        return self.items.ids

    def score(self, user_ids: UserIds, history: InteractionMatrix | None = None) -> np.ndarray:
        """The popularity row repeated for each user (a read-only view)."""
        return np.broadcast_to(self.scores, (len(user_ids), len(self.scores)))

    def state(self) -> dict[str, np.ndarray]:
        return {"item_ids": self.items.ids, "scores": self.scores}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.items = IdIndex(state["item_ids"])
        self.scores = np.asarray(state["scores"], dtype=np.float64)

    def to_frame(self) -> pd.DataFrame:
        """(item_id, score), best first, ties by item_id."""
        order = np.lexsort((self.items.ids, -self.scores))
        return pd.DataFrame({"item_id": self.items.ids[order], "score": self.scores[order]})
