"""Offline evaluation of every registered model on a split of the run's own signals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from ..recsys.beyond_accuracy import intra_list_diversity, novelty
from ..recsys.matrices import InteractionMatrix, engaged_rows
from ..recsys.metrics import evaluate
from ..recsys.ranking import user_rankings
from .inputs import read_catalog, read_signals
from .registry import RegistryEntry
from .rerank import RANKER, load_ranker, refit, rerank
from .splitting import split_for_evaluation
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
    train part and score its top-K on the test part: accuracy and coverage (:func:`evaluate`),
    intra-list diversity and novelty, over at most ``settings.eval_max_users`` users (a seeded
    sample). A model its limits skip on the train part is left out. With a registered re-ranker
    (trained on the same train part) the whole ranking path is replayed over those refitted
    models: ``ranker`` rows score the lists it serves, the ``candidates`` row is the recall of
    the candidate sets (the ceiling of any re-ranking, at K = the candidate count).

    Appends one row per (model, metric) to ``eval_history``, carrying the entry's version, and
    returns this run's rows.
    """
    train, test = split_for_evaluation(read_signals(con), settings)
    truth = test[engaged_rows(test)][["user_id", "item_id"]]
    history = InteractionMatrix.from_frame(train)
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

    def scored(recs: pd.DataFrame) -> dict[str, float]:
        metrics = evaluate(recs, truth, k=k, catalog_size=len(items), n_users_total=len(users))
        metrics["intra_list_diversity"] = intra_list_diversity(recs, categories, k)
        metrics["novelty"] = novelty(recs, item_users, len(history.users), k)
        return metrics

    fitted = refit(entries)(history)
    for name, model in fitted.items():
        add(name, entries[name].model_version, scored(user_rankings(model, users, items, history, k)))
    if RANKER in entries:
        as_of = pd.to_datetime(train["occurred_at"]).max().to_pydatetime()
        batches = list(
            rerank(con, settings, load_ranker(entries[RANKER]), fitted, history, as_of, users.to_numpy(str), items, k)
        )
        add(RANKER, entries[RANKER].model_version, scored(pd.concat([b.lists for b in batches])))
        candidates = pd.concat([b.candidates for b in batches])
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


def metrics_markdown(result: pd.DataFrame) -> str:
    """A models x metrics Markdown table of one evaluation run."""
    table = result.pivot(index="model_name", columns="metric", values="value").sort_index()
    header = "| model | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---|" * len(table.columns)
    body = [f"| {name} | " + " | ".join(f"{v:.4f}" for v in row) + " |" for name, row in table.iterrows()]
    return "\n".join([header, rule, *body])
