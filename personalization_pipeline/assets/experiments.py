"""[experiments] A/B experiments: exposure history into the warehouse, assignment of the running
experiment's users, per-variant outcome analysis published for admins."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from ..experiments import store
from ..experiments.analysis import analyse, winner
from ..experiments.assignment import assign
from ..resources import RunSettings, ServingDatabaseResource, WarehouseResource
from ..steps.experiments import variant_counts, write_assignments, write_exposures
from ..steps.tables import ACTIVITY, EXPERIMENT_OUTCOMES
from .hygiene import DB_RETRY, transient_only
from .metadata import table_metadata
from .metering import metered


@dg.asset(group_name="experiments", pool="warehouse", retry_policy=DB_RETRY)
@metered
@transient_only
def experiment_exposures(warehouse: WarehouseResource, serving_db: ServingDatabaseResource) -> dg.MaterializeResult:
    """The experiments' exposure history (which variant each user was served, first and last), copied
    from the serving database, where every publish records it, for the outcome model."""
    exposures = store.read_exposures(serving_db.get_url())
    with warehouse.connect() as con:
        rows = write_exposures(con, exposures)
    per_experiment = exposures.groupby("experiment")["user_id"].count().to_dict() if rows else {}
    return dg.MaterializeResult(metadata={"dagster/row_count": rows, "users_per_experiment": per_experiment})


@dg.asset(group_name="experiments", deps=[ACTIVITY], pool="warehouse", retry_policy=DB_RETRY)
@metered
@transient_only
def experiment_assignments(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, serving_db: ServingDatabaseResource
) -> dg.MaterializeResult:
    """The running experiment's variant for every opted-in user with history: a salted hash of user
    and experiment against the traffic split, recorded the first time the user is assigned and
    never changed; users opted out in the serving database are never assigned."""
    url = serving_db.get_url()
    now = datetime.now(UTC)
    experiment = store.running(url, now)
    recorded = pd.DataFrame({"user_id": pd.Series(dtype=object), "variant": pd.Series(dtype=object)})
    with warehouse.connect() as con:
        if experiment is not None:
            assigned = assign(con, experiment, f"SELECT user_id FROM {ACTIVITY}", now)
            recorded = store.record_assignments(url, experiment.name, assigned)
        rows = write_assignments(con, experiment, recorded)
    if experiment is None:
        context.log.info("no experiment is running: every user gets the default ranking")
    return dg.MaterializeResult(
        metadata={
            "experiment": experiment.name if experiment is not None else "(none running)",
            "users_per_variant": recorded.groupby("variant")["user_id"].count().to_dict(),
            "dagster/row_count": rows,
        }
    )


@dg.asset(group_name="experiments", deps=[EXPERIMENT_OUTCOMES], pool="warehouse", retry_policy=DB_RETRY)
@metered
@transient_only
def experiment_results(
    warehouse: WarehouseResource, serving_db: ServingDatabaseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """Per experiment and variant: sample size, acceptance, completion, engagement and dismissal
    rates, lift over control on the success metric with its confidence interval, the z-test's p-value
    and the verdict (:mod:`experiments.analysis`); published to ``personalization_experiment_results``."""
    url = serving_db.get_url()
    alpha = run_settings.resolve().experiment_significance
    experiments = {experiment.name: experiment for experiment in store.list_all(url)}
    with warehouse.connect(read_only=True) as con:
        counts = variant_counts(con)
    now = datetime.now(UTC)
    analysed = [
        analyse(experiments[name], group, alpha).assign(name=name, computed_at=now)
        for name, group in counts.groupby("experiment", sort=True)
        if name in experiments
    ]
    if not analysed:
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "experiments": 0})
    results = pd.concat(analysed, ignore_index=True)
    store.publish_results(url, results)
    shown = results.drop(columns="computed_at").round(4)
    winners = {name: winner(group) or "(none yet)" for name, group in results.groupby("name", sort=True)}
    return dg.MaterializeResult(
        metadata={
            "results": table_metadata(shown[["name", *shown.columns.drop("name")]]),
            "winners": winners,
            "experiments": len(winners),
            "dagster/row_count": len(results),
        }
    )
