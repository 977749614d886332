"""Weekly tuning: signal settings and model hyper-parameters chosen by validation on the run's own
data, registered, and applied by later runs where the environment does not set them.

Validation never touches the evaluation holdout: trials fit on the evaluation split's train part
less a seeded random ``holdout_fraction`` of each user's items, and are scored by NDCG@K on that
part (every engaged answer relevant), for a seeded sample of at most ``tuning_max_users`` users.
ALS is tuned together with the time decay of the signals it learns from (recomputed from the
consented events for each half-life tried); EASE learns from binary history, so its own
parameters are tuned on the run's signals. The re-ranker's LightGBM parameters are tuned on one
set of its training lists (folds of the same train part), by LightGBM's NDCG on the users held
out for early stopping. The models take turns, each with an equal share of the time budget left.
A setting given in the environment is not tuned: it wins (see :func:`~.registry.with_tuned`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

import duckdb
import pandas as pd

from ..recsys.matrices import InteractionMatrix, engaged_rows
from ..recsys.metrics import evaluate_per_user
from ..recsys.ranking import user_rankings
from ..recsys.registry import PERSONAL_MODELS, build
from ..recsys.rerank import TrainingLists
from ..recsys.reranker import Reranker
from ..recsys.splits import stratified_random_split
from ..recsys.tuning import Config, SearchResult, dimension_fields, random_search
from .inputs import read_catalog, read_signals
from .registry import TRAINED, TUNING, RegistryEntry, latest_trained, record, with_tuned
from .rerank import RANKER, read_training_lists, rerank_cost_reason, reranker_params
from .splitting import split_for_evaluation
from .tables import CONSENTED_EVENTS, TUNING_TRIALS

GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    "als": {
        "als_factors": [16, 32, 64, 128],
        "als_regularization": [0.1, 1.0, 10.0, 30.0],
        "als_alpha": [1.0, 3.0, 10.0, 30.0],
        "decay": [  # half-life as a share of the data's span, or no decay
            {"half_life_days": None, "half_life_span_fraction": 0.25},
            {"half_life_days": None, "half_life_span_fraction": 0.5},
            {"half_life_days": None, "half_life_span_fraction": 1.0},
            {"half_life_days": 0.0},
        ],
    },
    "ease": {
        "ease_regularization": [100.0, 250.0, 500.0, 1000.0],
        "ease_sequence_weight": [0.0, 0.25, 0.5, 1.0],
        "ease_sequence_regularization": [25.0, 50.0, 100.0],
    },
    RANKER: {
        "ranker_num_leaves": [7, 15, 31, 63],
        "ranker_learning_rate": [0.01, 0.03, 0.1],
        "ranker_min_child_samples": [50, 200, 800],
        "ranker_lambda_l2": [1.0, 10.0, 100.0],
    },
}
"""Settings tried per model (values of :class:`~personalization_pipeline.config.Settings` fields)."""


def read_signals_decayed(con: duckdb.DuckDBPyConnection, half_life_days: float | None, span_fraction: float):
    """The signals as :func:`~.inputs.read_signals` gives them, with the time decay recomputed from
    the consented events for this half-life (days; None: ``span_fraction`` of the data's span, at
    least a day; 0: no decay), measured back from the newest event as the signals mart does."""
    decay = "1.0" if half_life_days == 0 else "pow(0.5, date_diff('second', e.occurred_at, a.t) / 86400.0 / a.h)"
    half_life = (
        "greatest(date_diff('second', min(occurred_at), max(occurred_at)) / 86400.0 * ?, 1.0)"
        if half_life_days is None
        else "CAST(? AS DOUBLE)"
    )
    return con.execute(
        f"WITH a AS (SELECT max(occurred_at) AS t, {half_life} AS h FROM {CONSENTED_EVENTS}) "
        f"SELECT e.user_id, e.item_id, sum(e.signal * {decay}) AS weight, max(e.occurred_at) AS occurred_at, "
        f"count(*) FILTER (WHERE e.event_type = 'dismiss') > 0 AS dismissed FROM {CONSENTED_EVENTS} e, a "
        "GROUP BY e.user_id, e.item_id ORDER BY e.user_id, e.item_id",
        [span_fraction if half_life_days is None else half_life_days],
    ).df()


def validation_scorer(
    frame: pd.DataFrame, catalog: pd.DataFrame, settings: Any
) -> Callable[[str, Any], float | pd.Series]:
    """Per-user NDCG@K on the validation part of ``frame`` (see the module docstring) of model
    ``name`` built from ``settings`` (-inf when its limits skip it)."""
    train, _ = split_for_evaluation(frame, settings)
    fit, valid = stratified_random_split(train, fraction=settings.holdout_fraction, seed=settings.seed + 1)
    truth = valid[engaged_rows(valid)][["user_id", "item_id"]].astype(str)
    users = truth["user_id"].drop_duplicates().sort_values()
    if len(users) > settings.tuning_max_users:
        users = users.sample(settings.tuning_max_users, random_state=settings.seed).sort_values()
        truth = truth[truth["user_id"].isin(users)]
    history = InteractionMatrix.from_frame(fit)
    items = catalog[["item_id", "category"]].assign(scope="all")
    k = settings.eval_k

    def score(name: str, trial_settings: Any) -> float:
        model = build(name, trial_settings)
        if model.skip_reason(history) is not None:
            return float("-inf")
        recs = user_rankings(model.fit(history), users, items, history, k)
        _, per_user = evaluate_per_user(recs, truth, k=k, catalog_size=len(items), n_users_total=len(users))
        return per_user["ndcg"]

    return score


def tune(
    con: duckdb.DuckDBPyConnection, settings: Any, run_id: str, trained_at: datetime, clock: Callable[[], float]
) -> tuple[RegistryEntry, dict[str, SearchResult]]:
    """Search :data:`GRIDS` (less the settings the environment sets) model by model, starting from
    the settings in force (``settings`` with the last tuned values); record every trial in
    ``tuning_trials`` and the chosen values, with their validation NDCG, as the ``tuning`` entry.
    The budget counts from here: reading the signals and building the re-ranker's lists spend it."""
    started = clock()
    current = with_tuned(con, settings)
    catalog = read_catalog(con)
    signals = read_signals(con)

    @lru_cache(maxsize=2)  # a history per decay: keep few
    def scorer(half_life_days: float | None, span_fraction: float) -> Callable[[str, Any], float | pd.Series]:
        if (half_life_days, span_fraction) == (current.half_life_days, current.half_life_span_fraction):
            frame = signals
        else:
            frame = read_signals_decayed(con, half_life_days, span_fraction)
        return validation_scorer(frame, catalog, current)

    def model_trial(name: str) -> Callable[[Config], float | pd.Series]:
        def score(config: Config) -> float | pd.Series:
            trial_settings = current.model_copy(update=config)
            return scorer(trial_settings.half_life_days, trial_settings.half_life_span_fraction)(name, trial_settings)

        return score

    trials: dict[str, Callable[[Config], float | pd.Series] | None] = {
        name: model_trial(name) for name in GRIDS if name != RANKER
    }
    trials[RANKER] = ranker_trial(con, current)
    results: dict[str, SearchResult] = {}
    chosen: Config = {}
    for number, (name, grid) in enumerate(GRIDS.items()):
        free = {
            dim: values for dim, values in grid.items() if not dimension_fields(dim, values) & settings.model_fields_set
        }
        score = trials[name]
        if not free or score is None:
            continue
        remaining = settings.tuning_budget_seconds - (clock() - started)
        start = _in_force(
            current, name, {field for dim, values in free.items() for field in dimension_fields(dim, values)}
        )
        results[name] = random_search(
            free,
            start,
            score,
            seed=settings.seed + number,
            max_trials=settings.tuning_max_trials,
            budget_seconds=remaining / (len(GRIDS) - number),
            clock=clock,
        )
        chosen.update(results[name].chosen(settings.tuning_significance).config)
    _record_trials(con, run_id, results, settings.tuning_significance)
    params = json.dumps(chosen, sort_keys=True)
    entry = RegistryEntry(
        run_id,
        TUNING,
        f"{TUNING}-{hashlib.sha256(params.encode()).hexdigest()[:12]}",
        "random_search",
        params,
        trained_at,
        TRAINED,
        _summary(results, settings.tuning_significance),
    )
    record(con, entry)
    return entry, results


def ranker_trial(con: duckdb.DuckDBPyConnection, settings: Any) -> Callable[[Config], float] | None:
    """LightGBM's validation NDCG (on the users held out for early stopping) of the re-ranker with
    a trial's parameters, every trial on one set of training lists over the registered models
    (built at the first trial); -inf when they cannot train it; None when no personal model is
    registered or re-ranking is over its cost budget (:func:`~.rerank.rerank_cost_reason`)."""
    entries = latest_trained(con)
    if not any(name in entries for name in PERSONAL_MODELS) or rerank_cost_reason(con, settings) is not None:
        return None

    @cache
    def lists() -> TrainingLists:
        return read_training_lists(con, settings, entries)[0]

    def score(config: Config) -> float:
        params = reranker_params(settings.model_copy(update=config))
        try:
            data = lists()
            return Reranker.fit(data.features, data.labels, data.groups, data.users, params)[1].valid_ndcg
        except ValueError:
            return float("-inf")

    return score


def _in_force(settings: Any, name: str, fields: set[str]) -> Config:
    """The values of ``fields`` in force: a model setting left unset is the model's own default."""
    defaults = asdict(reranker_params(settings) if name == RANKER else build(name, settings).params)
    prefix = f"{name}_"
    return {
        field: defaults[field.removeprefix(prefix)] if field.startswith(prefix) else getattr(settings, field)
        for field in sorted(fields)
    }


def _summary(results: Mapping[str, SearchResult], significance: float) -> str:
    """Validation NDCG of the chosen, of the best and of the configuration in force, per model."""
    return "; ".join(
        f"{name}: validation NDCG {r.chosen(significance).score:.4f} chosen (best {r.best.score:.4f}, "
        f"in force {r.trials[0].score:.4f}, {len(r.trials)} trials)"
        for name, r in results.items()
    )


def _record_trials(
    con: duckdb.DuckDBPyConnection, run_id: str, results: Mapping[str, SearchResult], significance: float
) -> None:
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {TUNING_TRIALS} (run_id VARCHAR, model_name VARCHAR, trial INTEGER, "
        "settings VARCHAR, ndcg DOUBLE, seconds DOUBLE, chosen BOOLEAN)"
    )
    con.execute(f"DELETE FROM {TUNING_TRIALS} WHERE run_id = ?", [run_id])
    rows = [
        [
            run_id,
            name,
            t.number,
            json.dumps(t.config, sort_keys=True),
            t.score,
            t.seconds,
            t is r.chosen(significance),
        ]
        for name, r in results.items()
        for t in r.trials
    ]
    if rows:
        con.executemany(f"INSERT INTO {TUNING_TRIALS} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
