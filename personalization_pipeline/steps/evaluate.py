"""Offline evaluation of every registered model on a split of the run's own signals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ..recsys.beyond_accuracy import intra_list_diversity, novelty
from ..recsys.cold_start import with_cold_start
from ..recsys.metrics import evaluate, evaluate_per_user, paired_stderr
from ..recsys.ranking import user_rankings
from ..recsys.registry import PERSONAL_MODELS
from .gate import GAIN_STDERR
from .inputs import read_catalog
from .registry import RegistryEntry
from .rerank import RANKER, cold_start_params, load_ranker, refit, rerank
from .splitting import read_evaluation_split
from .tables import EVAL_HISTORY

EVAL_SCOPE = "all"
CANDIDATES = "candidates"
"""Evaluation rows of the candidate sets (their recall) carry this model name."""
EVAL_COLUMNS = ["run_id", "model_name", "model_version", "metric", "k", "value", "computed_at"]


def evaluate_registered(
    con: duckdb.DuckDBPyConnection,
    settings: Any,
    entries: dict[str, RegistryEntry],
    run_id: str,
    computed_at: datetime,
) -> pd.DataFrame:
    """Refit each registered global model (same kind and parameters as its entry) on the split's
    train part and score its top-K on the test part, personal models with the cold-start blend
    they are served with: accuracy and coverage (:func:`evaluate`),
    intra-list diversity and novelty, over at most ``settings.eval_max_users`` users (a seeded
    sample). A model its limits skip on the train part is left out. With a registered re-ranker
    (trained on the same train part) the whole ranking path is replayed over those refitted
    models: ``ranker`` rows score the lists it serves, the ``candidates`` row is the recall of
    the candidate sets (the ceiling of any re-ranking, at K = the candidate count), and the
    ranker's ``ndcg_gain_stderr`` the standard error of its per-user NDCG gain over the best
    personal model (:func:`paired_stderr`).

    Appends one row per (model, metric) to ``eval_history``, carrying the entry's version, and
    returns this run's rows.
    """
    split = read_evaluation_split(con, settings)
    truth, history = split.truth, split.train
    catalog = read_catalog(con)
    items = catalog[["item_id", "category"]].assign(scope=EVAL_SCOPE)  # one list over the whole catalog
    categories = catalog.set_index("item_id")["category"]
    item_users = pd.Series(np.asarray((history.weights > 0).sum(axis=0)).ravel(), index=history.items.ids)
    k = settings.eval_k
    users = truth["user_id"].drop_duplicates().sort_values()
    if len(users) > settings.eval_max_users:  # a bounded, seeded sample of the users with a holdout
        users = users.sample(settings.eval_max_users, random_state=settings.seed).sort_values()
        truth = truth[truth["user_id"].isin(users)]
    rows: list[list[Any]] = []

    def add(name: str, version: str | None, metrics: dict[str, float], at: int = k) -> None:
        rows.extend([run_id, name, version, metric, at, float(value), computed_at] for metric, value in metrics.items())

    ndcg_by_user: dict[str, pd.Series] = {}

    def scored(name: str, recs: pd.DataFrame) -> dict[str, float]:
        metrics, per_user = evaluate_per_user(recs, truth, k=k, catalog_size=len(items), n_users_total=len(users))
        ndcg_by_user[name] = per_user["ndcg"]
        metrics["intra_list_diversity"] = intra_list_diversity(recs, categories, k)
        metrics["novelty"] = novelty(recs, item_users, len(history.users), k)
        return metrics

    fitted = refit(entries)(history)
    as_of = split.as_of
    blend = cold_start_params(settings)
    for name, model in fitted.items():
        served = with_cold_start(model, catalog, history, as_of, blend) if name in PERSONAL_MODELS else model
        add(name, entries[name].model_version, scored(name, user_rankings(served, users, items, history, k)))
    if RANKER in entries:
        batches = list(
            rerank(con, settings, load_ranker(entries[RANKER]), fitted, history, as_of, users.to_numpy(str), items, k)
        )
        ranked = scored(RANKER, pd.concat([b.lists for b in batches]))
        personal = [name for name in PERSONAL_MODELS if name in ndcg_by_user]
        if personal:  # the noise of its gain over the best personal model, on the same users
            best = max(personal, key=lambda name: (ndcg_by_user[name].mean(), -personal.index(name)))
            ranked[GAIN_STDERR] = paired_stderr(ndcg_by_user[RANKER], ndcg_by_user[best])
        add(RANKER, entries[RANKER].model_version, ranked)
        candidates = pd.concat([b.codes.keyed(b.candidates) for b in batches])
        recall = evaluate(
            candidates.assign(rank=1), truth, k=len(candidates), catalog_size=len(items), n_users_total=len(users)
        )["recall"]
        add(CANDIDATES, entries[RANKER].model_version, {"recall": recall}, settings.ranker_candidates)
    result = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {EVAL_HISTORY} (run_id VARCHAR, model_name VARCHAR, model_version VARCHAR, "
        "metric VARCHAR, k INTEGER, value DOUBLE, computed_at TIMESTAMP)"
    )
    con.execute(f"DELETE FROM {EVAL_HISTORY} WHERE run_id = ?", [run_id])
    con.append(EVAL_HISTORY, result)
    return result


def _wide(frame: pd.DataFrame, index: str | list[str], columns: str, digits: int) -> pd.DataFrame:
    """``frame``'s values pivoted to one column per ``columns`` value, rounded, ``index`` first."""
    table = frame.pivot_table(index=index, columns=columns, values="value", aggfunc="first")
    table = table.round(digits).sort_index().reset_index()
    table.columns.name = None
    return table


def metrics_table(result: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """One evaluation run as a models x metrics frame (``model`` first, values rounded)."""
    return _wide(result, "model_name", "metric", digits).rename(columns={"model_name": "model"})


def metric_over_runs(
    con: duckdb.DuckDBPyConnection, metric: str = "ndcg", runs: int = 10, digits: int = 4
) -> pd.DataFrame:
    """``metric`` of every model over the last ``runs`` evaluation runs, oldest first: one row per
    run (``evaluated_at``, ``run_id``), one column per model (empty where it was not evaluated)."""
    frame = con.execute(
        f"""WITH recent AS (
              SELECT run_id, max(computed_at) AS evaluated_at FROM {EVAL_HISTORY}
              GROUP BY run_id ORDER BY evaluated_at DESC, run_id LIMIT ?)
            SELECT r.evaluated_at, r.run_id, h.model_name, h.value FROM recent r
            JOIN {EVAL_HISTORY} h USING (run_id) WHERE h.metric = ?""",
        [runs, metric],
    ).df()
    return _wide(frame, ["evaluated_at", "run_id"], "model_name", digits)
