"""Catalogue screening on real DuckDB, the operator allowlist, and the detectors' recall and false positives."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pytest

from personalization_pipeline.privacy.catalog import record_screening, screen_catalog
from personalization_pipeline.privacy.detector_eval import PLANTED, false_positives, product_names, recall
from personalization_pipeline.privacy.pii import RawPii, operator_allowlist


@pytest.fixture
def catalog():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE raw_items AS SELECT * FROM (VALUES "
        "('i1', 'music', 'rock', 'The 5.6.7.8''s'), "
        "('i2', 'music', 'ann.lee@example.com', 'Plain'), "
        "('i3', 'music', 'Adele', 'Adele'), "
        "('i4', 'music', 'v 1.2.10.4', 'Firmware 1.2.10.4'), "
        "('i5', 'music', 'pop', NULL)) t(item_id, scope, category, title)"
    )
    con.execute(
        "CREATE TABLE raw_interactions AS SELECT * FROM (VALUES ('u1', 'i1'), ('u1', '10.0.0.1'), ('u2', 'i9')) "
        "t(user_id, item_id)"
    )
    con.execute(
        "CREATE TABLE quarantine (batch_id VARCHAR, table_name VARCHAR, source_file VARCHAR, "
        "reason VARCHAR, row_json VARCHAR, quarantined_at TIMESTAMP)"
    )
    yield con


RAW = RawPii(None, ("first_name",), frozenset({"adele"}))


def test_served_findings_withhold_the_item_and_unserved_ones_are_reported(catalog):
    screening = screen_catalog(catalog, RAW, operator_allowlist(["V 1.2.10.4"], None))
    rows = {(r.item_id, r.column_name, r.finding, r.served, r.allowed) for r in screening.findings.itertuples()}
    assert rows == {
        ("10.0.0.1", "item_id", "ipv4", True, False),  # an item id seen only in interactions
        ("i1", "title", "ipv4", False, False),  # a band name: reported, not withheld
        ("i2", "category", "email", True, False),
        ("i3", "category", "raw users value", True, False),  # a user's first name, served as a category
        ("i3", "title", "raw users value", False, False),
        ("i4", "category", "ipv4", True, True),  # allowlisted by the operator (normalised: case)
        ("i4", "title", "ipv4", False, False),
    }
    assert screening.withheld == ["10.0.0.1", "i2", "i3"]
    assert "ann.lee" not in screening.findings.to_string() and "adele" not in screening.findings.to_string().lower()


def test_recording_writes_the_withheld_list_and_quarantines_them_masked(catalog):
    screening = screen_catalog(catalog, RAW, frozenset())
    record_screening(catalog, screening, "b1", datetime(2024, 1, 1))
    assert catalog.execute("SELECT item_id FROM withheld_items ORDER BY 1").fetchall() == [
        ("10.0.0.1",),
        ("i2",),
        ("i3",),
        ("i4",),
    ]
    evidence = [
        json.loads(r[0])
        for r in catalog.execute(
            "SELECT row_json FROM quarantine WHERE reason = 'withheld_pii' ORDER BY row_json"
        ).fetchall()
    ]
    assert {
        "item_id": "i2",
        "column_name": "category",
        "finding": "email",
        "masked_value": "a***@example.com",
    } in evidence
    assert "ann.lee@example.com" not in json.dumps(evidence)


def test_the_allowlist_reads_values_and_a_file(tmp_path):
    path = tmp_path / "allow.txt"
    path.write_text("# confirmed false positives\nThe 5.6.7.8's\n\n  Firmware  1.2.10.4 \n")
    assert operator_allowlist(["ＡＢＣ"], path) == {"abc", "the 5.6.7.8's", "firmware 1.2.10.4"}
    with pytest.raises(ValueError, match="PERSONALIZATION_PII_ALLOW_FILE"):
        operator_allowlist([], tmp_path / "missing.txt")


def test_every_planted_value_is_found_with_its_kind():
    result = recall()
    assert result.missed == () and result.rate == 1.0
    assert result.total == {kind: len(values) for kind, values in PLANTED.items()}
    assert recall({"phone": ("+44 20 7946 0958", "not a number")}).missed == ("not a number",)


def test_false_positives_are_counted_on_distinct_values():
    result = false_positives(["Firmware 1.2.10.4", "Firmware 1.2.10.4", "Episode 12", "Model X200", "2024-05-01"])
    assert result.scanned == 4 and result.flagged == (("Firmware 1.2.10.4", ("ipv4",)),)
    assert product_names(50, seed=3) == product_names(50, seed=3) != product_names(50, seed=4)
