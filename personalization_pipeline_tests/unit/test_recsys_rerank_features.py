"""Candidate features against values worked out by hand."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from personalization_pipeline.recsys.candidates import CandidateCodes
from personalization_pipeline.recsys.matrices import InteractionMatrix
from personalization_pipeline.recsys.rerank_features import FeatureContext, feature_names


def test_features_carry_each_users_own_vector_and_nan_without_one():
    history = InteractionMatrix.from_frame(
        pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "a"], "weight": [1.0, 1.0, -1.0]})
    )
    catalog = pd.DataFrame({"item_id": ["a", "b"], "category": ["x", "y"]})
    vectors = pd.DataFrame(  # out of id order, u2 has none, a user outside the candidates
        {"user_id": ["u3", "u9", "u1"], "engagement_score": [0.3, 0.9, 0.1], "sessions_30d": [3, 9, 1]}
    )
    context = FeatureContext(history, catalog, vectors, datetime(2026, 1, 1))
    codes = CandidateCodes.build(["u1", "u2", "u3"], catalog.assign(scope="all"))
    candidates = pd.DataFrame(
        {
            "user_code": [0, 0, 1, 2],
            "scope_code": 0,
            "item_code": [0, 1, 0, 1],
            "als_score": [2.0, 1.0, 0.5, 0.7],
            "als_rank": [1.0, 2.0, 1.0, 1.0],
        }
    )
    features = context.features(candidates, codes, ["als"])
    assert list(features.columns) == feature_names(["als"])
    np.testing.assert_array_equal(features["engagement_score"], [0.1, 0.1, np.nan, 0.3])
    np.testing.assert_array_equal(features["sessions_30d"], [1.0, 1.0, np.nan, 3.0])
    assert features["click_through_rate"].isna().all()  # a column the vectors lack
    np.testing.assert_array_equal(features["category_positives"], [1.0, 0.0, 0.0, 0.0])  # u1 likes a (x)
    np.testing.assert_array_equal(features["category_dismissals"], [0.0, 0.0, 0.0, 0.0])  # u3 dismissed a, not b
    np.testing.assert_array_equal(features["item_log_users"], np.log1p([1.0, 1.0, 1.0, 1.0]))
