"""Train one registered model on the warehouse signals, store it and register its version."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from ..recsys.base import Recommender
from ..recsys.registry import MODELS, build
from .inputs import read_history
from .registry import SKIPPED, TRAINED, RegistryEntry, record, with_tuned


def train_and_register(
    con: duckdb.DuckDBPyConnection, name: str, settings: Any, store: Path, run_id: str, trained_at: datetime
) -> tuple[RegistryEntry, Recommender | None]:
    """Fit model ``name`` with the settings in force (the last tuned values where the environment
    sets none, see :func:`~.registry.with_tuned`) (or skip it, with the reason, when it does not fit the data or the
    limits), save it under ``store/<name>/<version>/`` and record it in the registry.

    Raises ``ValueError`` when the model has nothing to learn: the run fails and the last good
    version stays registered and serving.
    """
    history = read_history(con)
    model = build(name, with_tuned(con, settings))
    reason = model.skip_reason(history)
    if reason is not None:
        entry = RegistryEntry(run_id, name, None, model.kind, model.params_json(), trained_at, SKIPPED, reason)
    else:
        model.fit(history)
        path = model.save(store / name / model.version)
        entry = RegistryEntry(
            run_id, name, model.version, model.kind, model.params_json(), trained_at, TRAINED, None, str(path.parent)
        )
    record(con, entry)
    return entry, None if reason is not None else model


def load(entry: RegistryEntry) -> Recommender:
    """The model a registry entry names, from the model store."""
    if entry.path is None:
        raise ValueError(f"{entry.model_name} was not trained in run {entry.run_id}: {entry.detail}")
    return MODELS[entry.model_name].load(entry.path)
