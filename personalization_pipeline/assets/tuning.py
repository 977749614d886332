"""[tuning] Weekly search of signal settings and model hyper-parameters on the run's own data."""

import time
from datetime import UTC, datetime

import dagster as dg

from ..resources import RunSettings, WarehouseResource
from ..steps.tables import CONSENTED_EVENTS, ITEMS, SIGNALS, USER_FEATURES
from ..steps.tuning import tune
from .metering import metered


@dg.asset(group_name="tuning", deps=[SIGNALS, CONSENTED_EVENTS, ITEMS, USER_FEATURES], pool="warehouse")
@metered
def tuned_settings(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_settings: RunSettings
) -> dg.MaterializeResult:
    """A seeded random search, within ``PERSONALIZATION_TUNING_BUDGET_SECONDS``, of the time decay
    with ALS's parameters, of EASE's and of the re-ranker's, scored on a validation part of the
    evaluation split's train part. The chosen values are registered as the ``tuning`` entry and used by the
    model training and the signals of later runs, except where the environment sets them."""
    with warehouse.connect() as con:
        entry, results = tune(
            con, run_settings.resolve(), context.run_id, datetime.now(UTC).replace(tzinfo=None), time.monotonic
        )
    rows = [
        dg.TableRecord(
            {
                "model": name,
                "trial": t.number,
                "settings": str(t.config),
                "ndcg": round(t.score, 4),
                "seconds": round(t.seconds, 1),
            }
        )
        for name, result in results.items()
        for t in result.trials
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("model", "string"),
            dg.TableColumn("trial", "int"),
            dg.TableColumn("settings", "string"),
            dg.TableColumn("ndcg", "float"),
            dg.TableColumn("seconds", "float"),
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "version": entry.model_version,
            "chosen": dg.MetadataValue.json(entry.params_dict),
            "validation": entry.detail,
            "stopped_by": {name: r.stopped_by for name, r in results.items()},
            "dagster/row_count": len(rows),
            "trials": dg.MetadataValue.table(rows, schema),
        }
    )
