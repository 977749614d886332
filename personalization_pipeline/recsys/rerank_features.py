"""Features of (user, item) candidates for the re-ranker.

Per candidate: every source's score, rank and gap to the list's best score in standard
deviations of the list (NaN where the source did not list it), and how many sources listed it.
Of the item: log of its users in the history, age since approval (NaN when unknown), log of its
category's users. Of the user: log of their positive items and the numeric fields of the
privacy-safe feature vector (never a raw user column). Of the pair: the share and the number of
the user's positive items in the item's category, and the user's dismissals (non-positive
items) there. Everything but the feature vector is computed from the history passed in, so a
model trained on a split sees nothing of the split's test part through them.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from personalization_pipeline.recsys.matrices import IdIndex, InteractionMatrix
from personalization_pipeline.recsys.sources import age_days

USER_VECTOR_FEATURES = ("engagement_score", "click_through_rate", "sessions_30d", "avg_session_seconds")
CONTEXT_FEATURES = (
    "n_sources",
    "item_log_users",
    "item_age_days",
    "category_log_users",
    "user_log_items",
    "category_share",
    "category_positives",
    "category_dismissals",
    *USER_VECTOR_FEATURES,
)


def feature_names(sources: list[str]) -> list[str]:
    """Column order of the feature matrix for these source names."""
    return [f"{s}_{part}" for s in sources for part in ("score", "rank", "gap")] + list(CONTEXT_FEATURES)


class FeatureContext:
    """What the features need, built once per history: item and category statistics, the users'
    category counts, and the user feature vectors (``user_vectors``: user_id + numeric columns)."""

    def __init__(
        self, history: InteractionMatrix, catalog: pd.DataFrame, user_vectors: pd.DataFrame, as_of: datetime
    ) -> None:
        self.history = history
        self.items = IdIndex.from_values(catalog["item_id"])
        listed = catalog.drop_duplicates("item_id").set_index("item_id").reindex(self.items.ids)
        category = listed["category"].astype("string").fillna("")
        self._category_codes, categories = pd.factorize(category.to_numpy(str), sort=True)
        self._age = age_days(listed, as_of)
        in_history = self.items.positions(history.items.ids)
        inside = in_history >= 0
        to_catalog = sp.csr_matrix(
            (np.ones(inside.sum()), (np.flatnonzero(inside), in_history[inside])),
            shape=(len(history.items), len(self.items)),
        )
        positive = (history.weights > 0).astype(np.float64)
        negative = (history.seen.astype(np.float64) - positive).maximum(0)
        self._positive = (positive @ to_catalog).tocsr()  # users x catalogue items
        self._negative = (negative @ to_catalog).tocsr()
        self._item_users = np.asarray(self._positive.sum(axis=0)).ravel()
        onehot = sp.csr_matrix(
            (np.ones(len(self.items)), (np.arange(len(self.items)), self._category_codes)),
            shape=(len(self.items), len(categories)),
        )
        self._user_category_pos = (self._positive @ onehot).tocsr()
        self._user_category_neg = (self._negative @ onehot).tocsr()
        self._category_users = np.asarray(self._user_category_pos.astype(bool).sum(axis=0)).ravel()
        self._user_items = np.asarray(self._positive.sum(axis=1)).ravel()
        vectors = user_vectors.drop_duplicates("user_id").set_index("user_id")
        self._vectors = vectors.reindex(columns=list(USER_VECTOR_FEATURES)).astype(np.float64)

    def features(self, candidates: pd.DataFrame, sources: list[str]) -> pd.DataFrame:
        """The feature frame (:func:`feature_names` columns) of ``candidates`` rows, same order."""
        items = self.items.positions(candidates["item_id"])
        users = self.history.users.positions(candidates["user_id"])
        known = users >= 0
        safe_items = np.where(items >= 0, items, 0)
        codes = self._category_codes[safe_items]
        user_rows = np.where(known, users, 0)
        share_num = np.asarray(self._user_category_pos[user_rows, codes]).ravel()
        dismissals = np.asarray(self._user_category_neg[user_rows, codes]).ravel()
        user_items = self._user_items[user_rows]
        out = {}
        lists = candidates.groupby(["user_id", "scope"], sort=False)
        for s in sources:
            score = candidates[f"{s}_score"].astype(np.float64)
            spread = lists[f"{s}_score"].transform("std").to_numpy(np.float64)
            out[f"{s}_score"] = score.to_numpy()
            out[f"{s}_rank"] = candidates[f"{s}_rank"].to_numpy(np.float64)
            out[f"{s}_gap"] = (score - lists[f"{s}_score"].transform("max")).to_numpy(np.float64) / np.where(
                spread > 0, spread, np.nan
            )
        out["n_sources"] = candidates[[f"{s}_rank" for s in sources]].notna().sum(axis=1).to_numpy(np.float64)
        out["item_log_users"] = np.log1p(np.where(items >= 0, self._item_users[safe_items], 0.0))
        out["item_age_days"] = np.where(items >= 0, self._age[safe_items], np.nan)
        out["category_log_users"] = np.log1p(self._category_users[codes])
        out["user_log_items"] = np.log1p(np.where(known, user_items, 0.0))
        out["category_share"] = np.where(known & (user_items > 0), share_num / np.maximum(user_items, 1), 0.0)
        out["category_positives"] = np.where(known, share_num, 0.0)
        out["category_dismissals"] = np.where(known, dismissals, 0.0)
        vectors = self._vectors.reindex(candidates["user_id"].astype(str).to_numpy())
        for name in USER_VECTOR_FEATURES:
            out[name] = vectors[name].to_numpy(np.float64)
        return pd.DataFrame(out, index=candidates.index)[feature_names(sources)]
