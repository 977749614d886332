"""Settings from the environment, the evaluation split, k-anonymity on real DuckDB, the run summary's notes."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest

from personalization_pipeline.assets.dbt import dbt_resource, dbt_vars
from personalization_pipeline.config import Settings
from personalization_pipeline.definitions import build_definitions
from personalization_pipeline.privacy.k_anonymity import generalised_sql, kept_values
from personalization_pipeline.runner import run_notes
from personalization_pipeline.steps.buckets import staged_warehouse
from personalization_pipeline.steps.splitting import split_for_evaluation


def test_settings_read_typed_overrides_and_keep_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONALIZATION_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("PERSONALIZATION_TOP_N", "7")
    monkeypatch.setenv("PERSONALIZATION_RANKING_TTL_HOURS", "1.5")
    monkeypatch.setenv("PERSONALIZATION_EVENT_WEIGHTS", '{"dismiss": -9, "share": 6}')
    settings = Settings.from_env()
    assert settings.top_n == 7 and settings.ranking_ttl_hours == 1.5
    assert settings.warehouse_path == tmp_path / "warehouse.duckdb"
    assert settings.data_dir == tmp_path / "raw"
    assert settings.event_weights["dismiss"] == -9 and settings.event_weights["share"] == 6
    assert settings.event_weights["view"] == 1.0
    assert settings.eval_k == 10  # untouched default


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOP_N", "fifty"),
        ("STRICT_ITEMS", "maybe"),  # a boolean that does not parse is an error, not False
        ("EVAL_SPLIT", "weekly"),
        ("EVENT_WEIGHTS", "{not json"),
        ("HOLDOUT_FRACTION", "1.5"),
        ("DUCKDB_MEMORY_LIMIT", "1GB'; DROP TABLE x; --"),  # a size, nothing else reaches SET
        ("DUCKDB_MEMORY_LIMIT", "0%"),
        ("DUCKDB_MEMORY_LIMIT", "101%"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(f"PERSONALIZATION_{name}", value)
    with pytest.raises(ValueError, match=f"PERSONALIZATION_{name}"):
        Settings.from_env()


def test_a_bad_secret_setting_is_named_but_never_echoed(monkeypatch):
    monkeypatch.setenv("PERSONALIZATION_DATABASE_URL", "postgresql://u:hunter2@h/db")
    monkeypatch.setenv("PERSONALIZATION_TOP_N", "0")
    with pytest.raises(ValueError, match="PERSONALIZATION_TOP_N") as info:
        Settings.from_env()
    assert "hunter2" not in str(info.value)


def test_values_held_by_fewer_than_k_users_become_other():
    counts = {"DE": 3, "FR": 2, "IS": 1, "unknown": 1}
    # k=2: IS and unknown (1 each) form an 'other' group of 2 >= k; DE and FR stay.
    assert kept_values(counts, 2) == {"DE", "FR"}
    # k=3: FR, IS, unknown -> 'other' of 4; DE (3) stays.
    assert kept_values(counts, 3) == {"DE"}
    with pytest.raises(ValueError):
        kept_values(counts, 0)


def test_the_other_group_is_never_smaller_than_k():
    # k=2: only C is rare, so 'other' would hold 1 user; the rarest kept value (B) joins it.
    assert kept_values({"A": 5, "B": 3, "C": 1}, 2) == {"A"}
    # ties among the rarest kept values go by value: B before D
    assert kept_values({"A": 5, "B": 3, "D": 3, "C": 1}, 2) == {"A", "D"}
    # nothing rare: nothing generalised
    assert kept_values({"A": 5, "B": 3}, 2) == {"A", "B"}
    # everything rare and 'other' still below k: everyone is 'other'
    assert kept_values({"A": 1}, 2) == set()


def test_generalised_sql_on_real_duckdb():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE u AS SELECT * FROM (VALUES ('a', 'DE'), ('b', 'DE'), ('c', 'FR'), ('d', NULL), "
        "('e', 'O''Neil')) t(user_id, country)"
    )
    sql = generalised_sql("country", {"DE", "unknown", "O'Neil"})
    rows = con.execute(f"SELECT user_id, {sql} FROM u ORDER BY user_id").fetchall()
    assert rows == [("a", "DE"), ("b", "DE"), ("c", "other"), ("d", "unknown"), ("e", "O'Neil")]
    assert con.execute(f"SELECT DISTINCT {generalised_sql('country', set())} FROM u").fetchall() == [("other",)]


def test_evaluation_split_is_configurable():
    frame = pd.DataFrame(
        {
            "user_id": ["u"] * 5,
            "item_id": list("abcde"),
            "weight": 1.0,
            "occurred_at": pd.date_range("2024-01-01", periods=5, freq="D"),
        }
    )
    settings = Settings.from_env().model_copy(update={"holdout_fraction": 0.4})
    _, temporal = split_for_evaluation(frame, settings.model_copy(update={"eval_split": "temporal"}))
    assert sorted(temporal["item_id"]) == ["d", "e"]  # the two latest of five
    _, random = split_for_evaluation(frame, settings)  # the default
    assert len(random) == 2 and random["item_id"].isin(list("abcde")).all()


def test_the_run_summary_says_what_ingest_and_screening_withheld():
    metadata = {
        "raw_interactions": {"expired_by_retention": 12, "newest_expired_event": "2018-09-24 10:00:00"},
        "raw_settings": {"opted_out_fail_closed_by_cause": {"unreadable": 2, "conflicting": 1}},
        "withheld_items": {"withheld_items": 2, "first_withheld": ["i7", "i9"], "full_list": "catalog_findings"},
    }
    notes = run_notes(Settings.from_env(), metadata)
    assert notes["events older than the raw retention (not loaded)"].startswith("12 (newest 2018-09-24 10:00:00;")
    assert "PERSONALIZATION_RAW_RETENTION_DAYS=730" in notes["events older than the raw retention (not loaded)"]
    assert notes["opted out for this run: consent unreadable or conflicting"] == "conflicting: 1, unreadable: 2"
    assert notes["catalogue items withheld (a served value looked like PII)"] == (
        "2 (first: i7, i9; full list: catalog_findings)"
    )
    assert run_notes(Settings.from_env(), {}) == {}


def _memory_limit(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


@pytest.mark.parametrize("limit", ["512MiB", "40%", None])
def test_every_duckdb_connection_takes_the_memory_limit(monkeypatch, tmp_path, limit):
    """The warehouse's, a ranking bucket's and dbt's connections; unset, a quarter of RAM."""
    if limit:
        monkeypatch.setenv("PERSONALIZATION_DUCKDB_MEMORY_LIMIT", limit)
    monkeypatch.setenv("PERSONALIZATION_RUNTIME_DIR", str(tmp_path))
    settings = Settings.from_env()
    assert settings.duckdb_memory_limit == (limit or "25%")
    expected = duckdb.connect()
    expected.execute(f"SET memory_limit = '{settings.duckdb_memory_limit}'")
    shown = _memory_limit(expected)
    assert shown != _memory_limit(duckdb.connect())  # differs from DuckDB's own default (80% of RAM)
    with build_definitions().resources["warehouse"].connect() as con:
        assert _memory_limit(con) == shown
    users = tmp_path / "bucketed_users.parquet"  # what staging writes for a ranking bucket
    duckdb.connect().execute(f"COPY (SELECT 'u1' AS user_id, 0 AS bucket) TO '{users}' (FORMAT parquet)")
    with staged_warehouse(tmp_path, 0, settings.duckdb_memory_limit) as con:
        assert _memory_limit(con) == shown
        assert con.execute("SELECT current_setting('temp_directory')").fetchone()[0] == str(tmp_path / "spill-0")
    dbt_vars_json = json.dumps(dbt_vars(settings, str(tmp_path / "warehouse.duckdb")))
    query = "SELECT current_setting('memory_limit') AS m"
    args = ["show", "--inline", query, "--vars", dbt_vars_json, "--output", "json", "--log-format", "json"]
    events = dbt_resource.cli(args, target_path=tmp_path / "dbt-target").stream_raw_events()
    previews = [e.raw_event["data"]["preview"] for e in events if "preview" in e.raw_event.get("data", {})]
    assert json.loads(previews[0]) == [{"m": shown}]
