"""Per-user models (weekly) over the serving global model, and the composite the nightly ranks with."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ..recsys.base import Recommender
from ..recsys.matrices import IdIndex, InteractionMatrix, engaged_rows
from ..recsys.per_user import (
    JUDGEMENT_COLUMNS,
    ItemFeatures,
    PerUserComposite,
    PerUserFit,
    PerUserParams,
    fit_per_user,
    ndcg_judgement,
    standardised,
)
from ..recsys.ranking import user_rankings
from ..recsys.registry import build
from .inputs import read_catalog, read_history, read_signals
from .registry import SKIPPED, TRAINED, RegistryEntry, record
from .rerank import refit
from .splitting import split_for_evaluation
from .tables import ITEMS, PER_USER_REPORT, POPULARITY, SIGNALS

NAME = "per_user"
SCORE_BATCH = 1024

_PAIRS_SQL = f"""
SELECT user_id, item_id, CASE WHEN weight > 0 THEN 1 ELSE 0 END AS label, last_at AS occurred_at
FROM {SIGNALS} WHERE weight <> 0 ORDER BY user_id, last_at, item_id
"""
"""Labelled pairs: a positive signal is 1, a negative one (dismissed, rated low) 0."""

_ITEM_SQL = f"""
SELECT i.item_id, i.category, coalesce(p.n_users, 0) AS popularity,
       date_diff('day', coalesce(i.approved_at, i.created_at), (SELECT max(last_at) FROM {SIGNALS})) AS age_days
FROM {ITEMS} i LEFT JOIN {POPULARITY} p USING (item_id)
"""


def with_global_z(pairs: pd.DataFrame, base: Recommender, users: list[str], history: Any) -> pd.DataFrame:
    """The pairs of ``users`` with ``global_z``: the base model's score of the item, standardised
    within the user's row (scored ``SCORE_BATCH`` users at a time, only the pairs' cells kept)."""
    pairs = pairs[pairs["user_id"].isin(users)]
    columns = IdIndex(np.asarray(base.item_ids, dtype=str)).positions(pairs["item_id"])
    rows = IdIndex(np.asarray(users, dtype=str)).positions(pairs["user_id"])
    z = np.full(len(pairs), np.nan)
    for start in range(0, len(users), SCORE_BATCH):
        batch = np.asarray(users[start : start + SCORE_BATCH], dtype=str)
        scores = standardised(np.asarray(base.score(batch, history), np.float64))
        inside = (rows >= start) & (rows < start + len(batch)) & (columns >= 0)
        z[inside] = scores[rows[inside] - start, columns[inside]]
    return pairs.assign(global_z=z)


def judge_on_holdout(
    con: duckdb.DuckDBPyConnection,
    settings: Any,
    base_entry: RegistryEntry,
    pairs: pd.DataFrame,
    items: pd.DataFrame,
    params: PerUserParams,
) -> pd.DataFrame:
    """JUDGEMENT_COLUMNS of the users whose model is kept when everything is refitted on the
    evaluation split's train part (the global model too, same kind and parameters as
    ``base_entry``): the served NDCG@K on the split's engaged held-out items with their model
    over the refitted global one, and without (:func:`~..recsys.per_user.ndcg_judgement`)."""
    train, test = split_for_evaluation(read_signals(con), settings)
    history = InteractionMatrix.from_frame(train)
    base = refit({base_entry.model_name: base_entry})(history).get(base_entry.model_name)
    if base is None:  # its limits skip it on the train part: nothing can be judged
        return pd.DataFrame(columns=JUDGEMENT_COLUMNS)
    pairs = pairs.merge(train[["user_id", "item_id"]].astype(str), on=["user_id", "item_id"])
    counts = pairs.groupby("user_id").size()
    eligible = sorted(counts[counts >= params.min_interactions].index)
    features = ItemFeatures.build(base.item_ids, items, params.max_categories)
    fitted = fit_per_user(with_global_z(pairs, base, eligible, history), features, params)
    truth = test[engaged_rows(test) & test["user_id"].isin(fitted.user_ids)][["user_id", "item_id"]]
    users = np.sort(truth["user_id"].astype(str).unique())
    catalog = read_catalog(con)[["item_id", "category"]].assign(scope="all")
    composite = PerUserComposite.from_fit(params, fitted, features, base)
    k = settings.eval_k
    return ndcg_judgement(
        user_rankings(composite, users, catalog, history, k), user_rankings(base, users, catalog, history, k), truth, k
    )


def train_per_user(
    con: duckdb.DuckDBPyConnection,
    settings: Any,
    base_entry: RegistryEntry,
    base: Recommender,
    store: Path,
    run_id: str,
    trained_at: datetime,
) -> tuple[RegistryEntry, PerUserFit]:
    """Fit and judge a model per eligible user over ``base``; store the kept ones as one bundle and
    register it (skipped, with the reason, when no model is kept). The models are kept only if
    they also raise their users' served NDCG on the evaluation holdout (:func:`judge_on_holdout`).
    The per-user report goes to ``per_user_report``."""
    composite = build(NAME, settings)
    params = composite.params
    pairs = con.execute(_PAIRS_SQL).df().astype({"user_id": str, "item_id": str})
    counts = pairs.groupby("user_id").size()
    eligible = sorted(counts[counts >= params.min_interactions].index)
    items = con.execute(_ITEM_SQL).df()
    features = ItemFeatures.build(base.item_ids, items, params.max_categories)
    fitted = fit_per_user(with_global_z(pairs, base, eligible, read_history(con)), features, params)
    if len(fitted.user_ids):
        fitted = fitted.judged(judge_on_holdout(con, settings, base_entry, pairs, items, params), params.margin_stderrs)
    report = fitted.report.assign(run_id=run_id, base_version=base_entry.model_version)
    con.register("report_df", report)
    con.execute(f"CREATE OR REPLACE TABLE {PER_USER_REPORT} AS SELECT * FROM report_df")
    con.unregister("report_df")
    if len(fitted.user_ids) == 0:
        reason = (
            f"no model of {len(eligible)} eligible users beat the global model on the user's holdout"
            if eligible
            else (f"no user has {params.min_interactions} labelled pairs")
        )
        entry = RegistryEntry(run_id, NAME, None, NAME, composite.params_json(), trained_at, SKIPPED, reason)
    else:
        bundle = PerUserComposite.from_fit(params, fitted, features, base)
        path = bundle.save(store / NAME / bundle.version)
        entry = RegistryEntry(
            run_id, NAME, bundle.version, NAME, bundle.params_json(), trained_at, TRAINED, None, str(path.parent)
        )
    record(con, entry)
    return entry, fitted


def report_summary(fitted: PerUserFit, seconds: float) -> dict[str, float | int]:
    """Counts, mean AUCs and the held-out NDCG gain of one per-user training, and its time per 10k
    eligible users."""
    report = fitted.report
    trained = report[report["auc"].notna()]
    kept = trained[trained["kept"]]
    return {
        "eligible_users": len(report),
        "models_trained": len(trained),
        "models_kept": len(kept),
        "mean_auc_kept": round(float(kept["auc"].mean()), 4) if len(kept) else 0.0,
        "mean_global_auc_of_kept_users": round(float(kept["global_auc"].mean()), 4) if len(kept) else 0.0,
        "mean_auc_trained": round(float(trained["auc"].mean()), 4) if len(trained) else 0.0,
        "mean_global_auc_trained": round(float(trained["global_auc"].mean()), 4) if len(trained) else 0.0,
        "users_judged_on_ndcg": int(report["ndcg"].notna().sum()),
        "held_out_ndcg_gain": round(fitted.ndcg_gain, 4),
        "held_out_ndcg_gain_stderr": round(fitted.ndcg_gain_stderr, 4),
        "seconds": round(seconds, 2),
        "seconds_per_10k_eligible": round(seconds / len(report) * 10_000, 1) if len(report) else 0.0,
    }
