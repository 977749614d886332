"""The evaluation's metadata frames: one run's models x metrics, and a metric over runs."""

from datetime import datetime

import duckdb
import pytest

from personalization_pipeline.assets.metadata import table_metadata
from personalization_pipeline.steps.evaluate import metric_over_runs, metrics_table


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE eval_history (run_id VARCHAR, model_name VARCHAR, model_version VARCHAR, metric VARCHAR, "
        "k INTEGER, value DOUBLE, computed_at TIMESTAMP)"
    )
    rows = [
        (run, model, "v1", metric, 10, base + day * 0.0123456, datetime(2026, 1, day))
        for day, run in ((1, "r1"), (2, "r2"), (3, "r3"))
        for model, base in (("als", 0.3), ("popularity", 0.2))
        for metric in ("ndcg", "precision")
    ]
    rows.append(("r3", "ranker", "v1", "ndcg", 10, 0.41234567, datetime(2026, 1, 3)))
    con.executemany("INSERT INTO eval_history VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return con


def test_one_run_is_a_rounded_models_by_metrics_table(con):
    run = con.execute("SELECT * FROM eval_history WHERE run_id = 'r3'").df()
    table = metrics_table(run)
    assert list(table.columns) == ["model", "ndcg", "precision"]
    assert table.to_dict("records")[0] == {"model": "als", "ndcg": 0.337, "precision": 0.337}  # 0.3 + 3 x 0.0123456
    meta = table_metadata(table)
    assert [(c.name, c.type) for c in meta.schema.columns] == [
        ("model", "string"),
        ("ndcg", "float"),
        ("precision", "float"),
    ]
    assert meta.records[2].data == {"model": "ranker", "ndcg": 0.4123, "precision": None}  # not evaluated: empty


def test_a_metric_over_the_last_runs_has_one_column_per_model_oldest_run_first(con):
    table = metric_over_runs(con, "ndcg", runs=2)
    assert list(table.columns) == ["evaluated_at", "run_id", "als", "popularity", "ranker"]
    assert table["run_id"].tolist() == ["r2", "r3"]
    assert table["popularity"].tolist() == [0.2247, 0.237]  # 0.2 + 2 x 0.0123456, 0.2 + 3 x 0.0123456
    records = table_metadata(table).records
    assert records[0].data["evaluated_at"] == "2026-01-02T00:00:00" and records[0].data["ranker"] is None
