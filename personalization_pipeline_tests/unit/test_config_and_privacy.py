"""Settings from the environment, and k-anonymity generalisation on real DuckDB."""

from __future__ import annotations

import duckdb
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.privacy.k_anonymity import generalised


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


def test_bad_numbers_name_the_variable(monkeypatch):
    monkeypatch.setenv("PERSONALIZATION_TOP_N", "fifty")
    with pytest.raises(ValueError, match="PERSONALIZATION_TOP_N"):
        Settings.from_env()


def test_values_held_by_fewer_than_k_users_become_other():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE u AS SELECT * FROM (VALUES ('a', 'DE'), ('b', 'DE'), ('c', 'DE'), ('d', 'FR'), "
        "('e', 'FR'), ('f', 'IS'), ('g', NULL)) t(user_id, country)"
    )
    rows = con.execute(f"SELECT user_id, {generalised('country', 2)} FROM u ORDER BY user_id").fetchall()
    # DE x3 and FR x2 reach k=2; IS x1 and the single unknown do not.
    assert rows == [("a", "DE"), ("b", "DE"), ("c", "DE"), ("d", "FR"), ("e", "FR"), ("f", "other"), ("g", "other")]
    rows = con.execute(f"SELECT user_id, {generalised('country', 3)} FROM u ORDER BY user_id").fetchall()
    assert [r[1] for r in rows] == ["DE", "DE", "DE", "other", "other", "other", "other"]
    with pytest.raises(ValueError):
        generalised("country", 0)
