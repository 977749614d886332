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

from personalization_pipeline.recsys.candidates import CandidateCodes, list_spans
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
        vectors = user_vectors.drop_duplicates("user_id")
        self._vector_users = IdIndex.from_values(vectors["user_id"])
        table = np.full((len(self._vector_users) + 1, len(USER_VECTOR_FEATURES)), np.nan)  # last row: no vector
        table[self._vector_users.positions(vectors["user_id"])] = vectors.reindex(
            columns=list(USER_VECTOR_FEATURES)
        ).to_numpy(np.float64)
        self._vectors = table

    def features(self, candidates: pd.DataFrame, codes: CandidateCodes, sources: list[str]) -> pd.DataFrame:
        """The feature frame (:func:`feature_names` columns) of ``candidates`` rows (a frame of
        :func:`~.candidates.merge_candidates` over ``codes``: grouped by list), same order."""
        items = self.items.positions(codes.items)[candidates["item_code"].to_numpy()]
        user_codes, user_of_row = np.unique(candidates["user_code"].to_numpy(), return_inverse=True)
        users = self.history.users.positions(codes.users[user_codes])[user_of_row]
        known = users >= 0
        safe_items = np.where(items >= 0, items, 0)
        codes_of_category = self._category_codes[safe_items]
        user_rows = np.where(known, users, 0)
        share_num = np.asarray(self._user_category_pos[user_rows, codes_of_category]).ravel()
        dismissals = np.asarray(self._user_category_neg[user_rows, codes_of_category]).ravel()
        user_items = self._user_items[user_rows]
        out = {}
        lists = list_spans(candidates)
        for s in sources:
            score = candidates[f"{s}_score"].to_numpy(np.float64)
            top, spread = _list_max_std(score, lists)
            out[f"{s}_score"] = score
            out[f"{s}_rank"] = candidates[f"{s}_rank"].to_numpy(np.float64)
            out[f"{s}_gap"] = (score - top) / np.where(spread > 0, spread, np.nan)
        out["n_sources"] = candidates[[f"{s}_rank" for s in sources]].notna().sum(axis=1).to_numpy(np.float64)
        out["item_log_users"] = np.log1p(np.where(items >= 0, self._item_users[safe_items], 0.0))
        out["item_age_days"] = np.where(items >= 0, self._age[safe_items], np.nan)
        out["category_log_users"] = np.log1p(self._category_users[codes_of_category])
        out["user_log_items"] = np.log1p(np.where(known, user_items, 0.0))
        out["category_share"] = np.where(known & (user_items > 0), share_num / np.maximum(user_items, 1), 0.0)
        out["category_positives"] = np.where(known, share_num, 0.0)
        out["category_dismissals"] = np.where(known, dismissals, 0.0)
        vectors = self._vectors[self._vector_users.positions(codes.users[user_codes])][user_of_row]
        for number, name in enumerate(USER_VECTOR_FEATURES):
            out[name] = vectors[:, number]
        names = feature_names(sources)
        matrix = np.empty((len(candidates), len(names)), order="F")  # one block, a column at a time
        for number, name in enumerate(names):
            matrix[:, number] = out[name]
        return pd.DataFrame(matrix, index=candidates.index, columns=names, copy=False)


def _list_max_std(values: np.ndarray, lists: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the maximum and the sample standard deviation of its list's non-NaN ``values``
    (NaN for a list with none, the deviation also for one with a single value); ``lists``: the
    lists' starts and lengths (:func:`~.candidates.list_spans`)."""
    starts, lengths = lists
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    count = np.add.reduceat(present.astype(np.float64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        top = np.maximum.reduceat(np.where(present, values, -np.inf), starts)
        top = np.where(count > 0, top, np.nan)
        mean = np.add.reduceat(filled, starts) / count
        deviation = np.where(present, values - np.repeat(mean, lengths), 0.0)
        variance = np.add.reduceat(deviation * deviation, starts) / (count - 1)
        spread = np.where(count > 1, np.sqrt(variance), np.nan)
    return np.repeat(top, lengths), np.repeat(spread, lengths)
