"""[similarity] Similar-user maps (weekly): neighbours, what they share, and their accepted items as candidates."""

import time
from datetime import UTC, datetime

import dagster as dg

from ..config import Settings
from ..recsys.similarity import SearchParams
from ..resources import WarehouseResource
from ..steps.similar_users import write_similar_users
from ..steps.tables import SIGNALS, USER_FEATURES
from .metering import metered


@dg.asset(group_name="similarity", deps=["als_model", USER_FEATURES, SIGNALS], pool="warehouse")
@metered
def similar_users(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Top-K most similar opted-in users per opted-in user (cosine of ALS user factors, above a threshold)."""
    settings = Settings.from_env()
    params = SearchParams(k=settings.similar_users_k, threshold=settings.similar_users_threshold)
    started = time.perf_counter()
    with warehouse.connect() as con:
        counts = write_similar_users(con, params, datetime.now(UTC).replace(tzinfo=None))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts.rows,
            "subjects": counts.subjects,
            "candidates": counts.candidates,
            "k": params.k,
            "threshold": params.threshold,
            "search": "exact" if counts.approximate_recall is None else "hnsw",
            "searched_users": counts.searched,
            **({} if counts.approximate_recall is None else {"recall_vs_exact": round(counts.approximate_recall, 4)}),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
