"""The warehouse's view of experiments: who is served which variant, the exposure history, the
per-variant outcome counts the analysis reads."""

from __future__ import annotations

import duckdb
import pandas as pd

from ..experiments.analysis import RATE_OF
from ..experiments.definition import Experiment
from ..sqlutil import scalar
from .tables import EXPERIMENT_ASSIGNMENTS, EXPERIMENT_EXPOSURES, EXPERIMENT_OUTCOMES

_OUTCOMES = tuple(RATE_OF.values())


def write_assignments(con: duckdb.DuckDBPyConnection, experiment: Experiment | None, recorded: pd.DataFrame) -> int:
    """Replace ``experiment_assignments`` (user_id, experiment, variant, ranking) by the ``recorded``
    (user_id, variant) of the running ``experiment`` (none: empty); its row count."""
    rankings = {v.name: v.ranking for v in experiment.variants} if experiment is not None else {}
    frame = recorded[["user_id", "variant"]].astype(object)
    frame = frame.assign(
        experiment=experiment.name if experiment is not None else None, ranking=frame["variant"].map(rankings)
    )
    con.register("assigned_df", frame)
    con.execute(
        f"CREATE OR REPLACE TABLE {EXPERIMENT_ASSIGNMENTS} AS SELECT user_id::VARCHAR AS user_id, "
        "experiment::VARCHAR AS experiment, variant::VARCHAR AS variant, ranking::VARCHAR AS ranking "
        "FROM assigned_df ORDER BY user_id"
    )
    con.unregister("assigned_df")
    return scalar(con, f"SELECT count(*) FROM {EXPERIMENT_ASSIGNMENTS}")


def write_exposures(con: duckdb.DuckDBPyConnection, exposures: pd.DataFrame) -> int:
    """Replace ``experiment_exposures`` by ``exposures`` (:func:`experiments.store.read_exposures`;
    times as naive UTC); its row count."""
    frame = exposures.copy()
    for column in ("first_served_at", "last_served_at", "last_valid_until"):
        frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_localize(None)
    con.register("exposures_df", frame)
    con.execute(
        f"CREATE OR REPLACE TABLE {EXPERIMENT_EXPOSURES} AS SELECT experiment::VARCHAR AS experiment, "
        "user_id::VARCHAR AS user_id, variant::VARCHAR AS variant, first_served_at::TIMESTAMP AS first_served_at, "
        "last_served_at::TIMESTAMP AS last_served_at, last_valid_until::TIMESTAMP AS last_valid_until, "
        "publishes::INTEGER AS publishes FROM exposures_df ORDER BY experiment, user_id"
    )
    con.unregister("exposures_df")
    return scalar(con, f"SELECT count(*) FROM {EXPERIMENT_EXPOSURES}")


def variant_counts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per experiment and variant: exposed users and how many of them accepted, completed, engaged
    and dismissed (``mart_experiment_outcomes``)."""
    sums = ", ".join(f"count(*) FILTER (WHERE {outcome})::BIGINT AS {outcome}" for outcome in _OUTCOMES)
    return con.execute(
        f"SELECT experiment, variant, count(*)::BIGINT AS users, {sums} FROM {EXPERIMENT_OUTCOMES} "
        "GROUP BY experiment, variant ORDER BY experiment, variant"
    ).df()
