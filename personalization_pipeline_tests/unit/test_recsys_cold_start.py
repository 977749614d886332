"""The cold-start blend for short histories."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.cold_start import ColdStartBlend, ColdStartParams, with_cold_start
from personalization_pipeline.recsys.matrices import InteractionMatrix

AS_OF = datetime(2024, 6, 1)
CATALOG = pd.DataFrame(
    {
        "item_id": ["a1", "a2", "a3", "b1", "b2", "b3", "b4", "new"],
        "category": ["A", "A", "A", "B", "B", "B", "B", "B"],
        "approved_at": pd.to_datetime(["2020-01-01"] * 7 + ["2024-05-30"]),
    }
)


class Fixed:
    """A model whose scores are given: item b1 first for everyone it knows, NaN for 'unknown'."""

    item_ids = CATALOG["item_id"].to_numpy(str)

    def score(self, user_ids, history):
        out = np.tile(np.array([0.1, 0.2, 0.3, 0.9, 0.4, 0.5, 0.0, 0.0]), (len(user_ids), 1))
        out[np.asarray(user_ids) == "unknown"] = np.nan
        return out


def _history() -> InteractionMatrix:
    rows = [("crowd", item) for item in ("b1", "b2", "b3", "a1")] + [("crowd2", "b1"), ("crowd2", "b2")]
    rows += [("fan", "a1"), ("unknown", "a2")]  # one item each: cold
    rows += [("regular", item) for item in ("a1", "a2", "a3", "b2", "b3")]  # five: not cold
    return InteractionMatrix.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(weight=1.0))


def test_a_short_history_is_blended_with_its_category_popularity_and_fresh_items():
    history = _history()
    blend = ColdStartBlend(Fixed(), CATALOG, history, AS_OF, ColdStartParams(max_history=5))
    users = np.array(["fan", "regular", "unknown"])
    scores = blend.score(users, history)
    items = list(Fixed.item_ids)
    fan, regular, unknown = scores
    np.testing.assert_array_equal(regular, Fixed().score(["regular"], history)[0])  # five items: the model alone
    # fan holds one item of A: a weight of 1 / (1 + 3) on the model, the rest on the rule
    assert fan[items.index("a2")] > fan[items.index("b2")]  # own category beats a more popular other one
    assert np.argmax(fan) != items.index("b1")  # the model's favourite no longer leads on its own
    assert np.isfinite(unknown).all()  # the model cannot score it: the rule alone
    assert unknown[items.index("new")] > unknown[items.index("b4")]  # both without users: the fresh one first


def test_more_engagement_weighs_the_model_more():
    history = _history()
    one = ColdStartBlend(Fixed(), CATALOG, history, AS_OF, ColdStartParams(max_history=10))
    model = Fixed().score(["x"], history)[0]
    fan, regular = one.score(np.array(["fan", "regular"]), history)
    agreement = [np.corrcoef(row, model)[0, 1] for row in (fan, regular)]
    assert agreement[1] > agreement[0]  # five items agree with the model more than one item does


def test_the_blend_can_be_turned_off():
    model = Fixed()
    assert with_cold_start(model, CATALOG, _history(), AS_OF, ColdStartParams(max_history=0)) is model
