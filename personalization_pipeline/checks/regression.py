"""The regression gate as a blocking check on ``user_rankings``: a failure stops the publish, so the
rankings serving now keep serving, and the UI shows both figures."""

import dagster as dg

from ..resources import RunSettings, ServingDatabaseResource, WarehouseResource
from ..steps.gate import challenger_figure, champion_figure, decide
from ..steps.tables import USER_RANKINGS

GATE_CHECK = "regression_gate"


@dg.asset_check(
    asset=USER_RANKINGS,
    name=GATE_CHECK,
    blocking=True,
    pool="warehouse",
    description="The new rankings' NDCG@K is not worse than the serving model's by more than the tolerance.",
)
def regression_gate(
    warehouse: WarehouseResource, serving_db: ServingDatabaseResource, run_settings: RunSettings
) -> dg.AssetCheckResult:
    settings = run_settings.resolve()
    with warehouse.connect(read_only=True) as con:
        challenger = challenger_figure(con, settings.eval_k)
    result = decide(challenger, champion_figure(serving_db.get_url(), settings.eval_k), settings.regression_tolerance)
    metadata: dict[str, str | float] = {"tolerance": result.tolerance}
    for role, figure in (("challenger", result.challenger), ("champion", result.champion)):
        if figure is not None:
            metadata[f"{role}_model_version"] = figure.model_version
            metadata[f"{role}_ndcg@{settings.eval_k}"] = round(figure.ndcg, 4)
    return dg.AssetCheckResult(
        passed=result.passed, severity=dg.AssetCheckSeverity.ERROR, description=result.reason, metadata=metadata
    )
