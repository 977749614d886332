"""Raw ingest against a real DuckDB: contract, column mapping, quarantine with reasons."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from personalization_pipeline.ingest import IngestOptions, InputError, load_mapping, load_raw_tables
from personalization_pipeline_tests.pipeline_support import warehouse_checksums

NOW = datetime(2024, 6, 1, 12, 0, 0)


def _write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def _load(data_dir: Path, mapping=None, strict=False, con=None, override=None):
    con = con or duckdb.connect()
    options = IngestOptions(now=NOW, future_tolerance=timedelta(hours=1), strict_items=strict)
    report = load_raw_tables(con, data_dir, mapping or {}, options, settings_override=override)
    return con, report


def _database_settings(rows: list[tuple[str, bool, bool | None]], updated_at: str = "2024-05-20") -> pd.DataFrame:
    """Rows of the serving database's settings table: (user_id, enabled, data sharing)."""
    frame = pd.DataFrame(rows, columns=["user_id", "personalization_enabled", "data_sharing_consent"])
    return frame.assign(updated_at=pd.Timestamp(updated_at))


def test_bad_rows_are_quarantined_with_reasons_and_good_rows_typed(tmp_path):
    _write(
        tmp_path / "interactions.csv",
        """
user_id,item_id,occurred_at,event_type,value,session_id
u1,i1,2024-01-01T10:00:00Z,view,,s1
u1,i1,2024-01-01T10:00:00Z,view,,s1
u2,i2,1704103200,click,,s2
,i2,2024-01-01T10:00:00Z,view,,s3
u3,,2024-01-01T10:00:00Z,view,,s3
u3,i3,yesterday-ish,view,,s3
u3,i3,2024-06-01T14:00:00Z,view,,s3
u4,i1,2024-01-02,rate,five,s4
u4,i1,2024-01-02,,4.5,s4
u5,i1,2024-01-02,view,,s5,unexpected,extra
""",
    )
    con, report = _load(tmp_path)
    assert report.quarantined["interactions"] == {
        "duplicate": 1,
        "future_occurred_at": 1,
        "malformed_line": 1,
        "null_item_id": 1,
        "null_user_id": 1,
        "unparseable_occurred_at": 1,
        "unparseable_value": 1,
    }
    assert report.rows["interactions"] == 3
    rows = con.execute(
        "SELECT user_id, item_id, occurred_at, event_type, value FROM raw_interactions ORDER BY user_id"
    ).fetchall()
    assert rows == [
        ("u1", "i1", datetime(2024, 1, 1, 10), "view", None),
        ("u2", "i2", datetime(2024, 1, 1, 10), "click", None),  # epoch seconds 1704103200
        ("u4", "i1", datetime(2024, 1, 2), "rate", 4.5),  # numeric value without type -> rate
    ]
    stored = dict(
        con.execute(
            "SELECT reason, row_json FROM quarantine WHERE table_name = 'interactions' "
            "AND reason IN ('null_user_id', 'duplicate')"
        ).fetchall()
    )
    assert json.loads(stored["null_user_id"])["item_id"] == "i2"
    assert json.loads(stored["duplicate"])["occurred_at"] == "2024-01-01T10:00:00Z"  # the raw text, as read


def test_repeated_keys_keep_the_first_good_row_in_source_order(tmp_path):
    """Duplicates are judged among good rows only (a bad row never shadows a good one), each key
    keeps its first row whatever the spelling of its time or event type, the later rows are
    quarantined with their raw text."""
    _write(
        tmp_path / "interactions.csv",
        """
user_id,item_id,occurred_at,event_type,value,session_id
u9,i1,2024-01-03,view,,s1
u1,i1,2024-01-01T10:00:00Z,view,oops,s0
u1,i1,2024-01-01T10:00:00Z,view,,s1
u2,i2,2024-01-02,view,,s2
u1,i1,1704103200,VIEW,,s3
u1,i1,2024-01-01T10:00:00Z,click,,s4
u1,i1,2024-01-01 10:00:00,View,,s5
u0,i3,2024-01-04,view,,s6
""",
    )
    con, report = _load(tmp_path)
    assert report.quarantined["interactions"] == {"duplicate": 2, "unparseable_value": 1}
    kept = con.execute("SELECT user_id, session_id, event_type FROM raw_interactions ORDER BY session_id").fetchall()
    assert kept == [("u9", "s1", "view"), ("u1", "s1", "view"), ("u2", "s2", "view"),
                    ("u1", "s4", "click"), ("u0", "s6", "view")]  # fmt: skip
    repeated = con.execute(
        "SELECT row_json FROM quarantine WHERE reason = 'duplicate' ORDER BY row_json->>'session_id'"
    ).fetchall()
    assert [(json.loads(r)["session_id"], json.loads(r)["occurred_at"]) for (r,) in repeated] == [
        ("s3", "1704103200"),
        ("s5", "2024-01-01 10:00:00"),
    ]


def test_the_first_row_in_the_file_wins_in_a_file_read_in_parallel(tmp_path):
    """A file large enough to be read in many parallel chunks still keeps each key's first row
    by line: the later copy is quarantined whichever chunk either lands in."""
    lines = ["user_id,item_id,occurred_at,event_type,session_id"]
    lines += [f"u{n},i{n % 97},2024-01-01T10:00:00Z,view,s{n}" for n in range(1_500_000)]
    copies = [(first, first + gap) for first in range(11, 1_500_000, 50_000) for gap in (1, 40_003, 190_007, 400_009)]
    copies = [(first, later) for first, later in copies if later < 1_500_000]
    for first, later in copies:  # the later line repeats the first's key
        lines[1 + later] = lines[1 + first].replace(f",s{first}", f",late{later}")
    (tmp_path / "interactions.csv").write_text("\n".join(lines) + "\n")
    con, report = _load(tmp_path)
    assert report.quarantined["interactions"] == {"duplicate": len(copies)}
    quarantined = con.execute("SELECT row_json->>'session_id' FROM quarantine ORDER BY 1").fetchall()
    assert sorted(s for (s,) in quarantined) == sorted(f"late{later}" for _, later in copies)


def test_the_latest_setting_of_a_user_wins_and_the_rest_are_superseded(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01")
    _write(
        tmp_path / "settings.csv",
        """
user_id,personalization_enabled,updated_at
u1,false,2024-03-01
u1,true,2024-04-01
u1,false,
u2,true,2024-01-01
u2,false,2024-01-01
u3,true,
""",
    )
    con, report = _load(tmp_path)
    assert report.quarantined["settings"] == {"superseded_setting": 3}
    assert con.execute("SELECT user_id, personalization_enabled FROM raw_settings ORDER BY user_id").fetchall() == [
        ("u1", True),
        ("u2", False),
        ("u3", True),
    ]  # u2: disagreeing at one time, fails closed


def test_missing_required_column_names_file_and_column(tmp_path):
    path = _write(tmp_path / "interactions.csv", "userid,item_id,occurred_at\nu1,i1,2024-01-01")
    con = duckdb.connect()
    with pytest.raises(InputError) as info:
        _load(tmp_path, con=con)
    assert info.value.column == "user_id"
    assert str(path) in str(info.value) and "user_id" in str(info.value)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'raw_%'").fetchall() == [(0,)]


def test_missing_interactions_file_and_unreadable_parquet_are_errors(tmp_path):
    with pytest.raises(InputError, match="interactions"):
        _load(tmp_path)
    (tmp_path / "interactions.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="unreadable") as info:
        _load(tmp_path)
    assert info.value.path.endswith("interactions.parquet")


def test_csv_and_parquet_of_one_table_is_ambiguous(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01")
    pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"], "occurred_at": ["2024-01-01"]}).to_parquet(
        tmp_path / "interactions.parquet"
    )
    with pytest.raises(InputError, match="ambiguous"):
        _load(tmp_path)


def test_failed_ingest_keeps_previous_raw_tables(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    _write(good / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01\nu2,i1,2024-01-02")
    con, _ = _load(good)
    bad = tmp_path / "bad"
    bad.mkdir()
    _write(bad / "interactions.csv", "user_id,item_id,occurred_at\nu9,i9,2024-01-01")
    _write(bad / "users.csv", "id,email\nu9,x@y.z")  # users without user_id
    with pytest.raises(InputError, match=r"users\.csv"):
        _load(bad, con=con)
    assert con.execute("SELECT user_id FROM raw_interactions ORDER BY 1").fetchall() == [("u1",), ("u2",)]


def test_column_mapping_reads_an_explicit_ratings_export(tmp_path):
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,11,2.5,964982224")
    _write(tmp_path / "movies.csv", "movieId,title,genres\n10,Heat (1995),Action|Crime\n11,Up (2009),Animation")
    mapping_file = _write(
        tmp_path / "mapping.yaml",
        """
interactions:
  file: ratings.csv
  columns: {userId: user_id, movieId: item_id, timestamp: occurred_at, rating: value}
  defaults: {event_type: rate}
items:
  file: movies.csv
  columns: {movieId: item_id, genres: category}
""",
    )
    con, report = _load(tmp_path, mapping=load_mapping(mapping_file))
    assert report.rows == {"items": 2, "interactions": 2, "users": 0, "settings": 0}
    assert con.execute(
        "SELECT user_id, item_id, event_type, value FROM raw_interactions ORDER BY item_id"
    ).fetchall() == [("1", "10", "rate", 4.0), ("1", "11", "rate", 2.5)]
    assert con.execute("SELECT category, title FROM raw_items WHERE item_id = '10'").fetchall() == [
        ("Action|Crime", "Heat (1995)")
    ]


def test_mapping_errors_name_the_problem(tmp_path):
    bad_target = _write(tmp_path / "m1.yaml", "interactions:\n  columns: {userId: customer}")
    with pytest.raises(InputError, match="customer"):
        load_mapping(bad_target)
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01")
    missing_source = _write(tmp_path / "m2.yaml", "interactions:\n  columns: {userId: user_id}")
    with pytest.raises(InputError) as info:
        _load(tmp_path, mapping=load_mapping(missing_source))
    assert info.value.column == "userId"


def test_pii_and_unknown_columns_never_reach_the_warehouse(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01")
    _write(
        tmp_path / "users.csv",
        """
user_id,email,full_name,phone,country_code,birth_date,postal_code
u1,ann@example.com,Ann Lee,+1 555 0100,de,1990-02-03,10115
""",
    )
    con, report = _load(tmp_path)
    assert report.dropped_columns["users"] == ["birth_date", "email", "full_name", "phone", "postal_code"]
    columns = [r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE raw_users)").fetchall()]
    assert columns == ["user_id", "signup_at", "country_code", "timezone_offset", "device_type"]
    dump = con.execute("SELECT * FROM raw_users").fetchall() + con.execute("SELECT row_json FROM quarantine").fetchall()
    assert "ann@example.com" not in str(dump) and "Ann Lee" not in str(dump)


def test_strict_mode_quarantines_unknown_items(tmp_path):
    _write(tmp_path / "items.csv", "item_id,scope\ni1,articles")
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01\nu1,i2,2024-01-01")
    _, lenient = _load(tmp_path)
    assert lenient.rows["interactions"] == 2
    _, strict = _load(tmp_path, strict=True)
    assert strict.rows["interactions"] == 1
    assert strict.quarantined["interactions"] == {"unknown_item": 1}


def test_database_settings_win_over_the_settings_file(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01\nu2,i1,2024-01-01")
    _write(tmp_path / "settings.csv", "user_id,personalization_enabled\nu1,true\nu2,yes\nu3,maybe")
    override = _database_settings([("u1", False, False)], "2024-05-01")
    con, report = _load(tmp_path, override=override)
    assert report.quarantined["settings"] == {"unreadable_personalization_enabled": 1}
    assert con.execute("SELECT user_id, personalization_enabled FROM raw_settings ORDER BY 1").fetchall() == [
        ("u1", False),
        ("u2", True),
        ("u3", False),  # unreadable: opted out (fail closed)
    ]


def test_events_older_than_raw_retention_are_not_loaded_and_are_counted(tmp_path):
    _write(
        tmp_path / "interactions.csv",
        "user_id,item_id,occurred_at\nu1,i1,2024-05-30\nu1,i2,2023-01-01\nu2,i1,2024-05-01",
    )
    con = duckdb.connect()
    options = IngestOptions(now=NOW, raw_retention=timedelta(days=40))
    report = load_raw_tables(con, tmp_path, {}, options)
    assert report.expired == 1 and report.rows["interactions"] == 2
    assert con.execute("SELECT min(occurred_at) FROM raw_interactions").fetchall() == [(datetime(2024, 5, 1),)]
    logged = con.execute("SELECT table_name, rows, expired FROM ingest_batches ORDER BY table_name").fetchall()
    assert ("interactions", 2, 1) in logged


def test_hostile_column_names_are_data_not_sql(tmp_path):
    header = 'user_id" AS VARCHAR) AS "zz", (SELECT 42) AS "session_id" --'
    (tmp_path / "interactions.csv").write_text(
        f'"{header.replace(chr(34), chr(34) * 2)}",user_id,item_id,occurred_at\nx,u1,i1,2024-01-01\n'
    )
    con, report = _load(tmp_path)
    assert report.rows["interactions"] == 1
    assert report.dropped_columns["interactions"] == [header]
    assert con.execute("SELECT user_id, session_id FROM raw_interactions").fetchall() == [("u1", None)]


def test_malformed_lines_are_quarantined_without_their_text(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01")
    _write(tmp_path / "users.csv", "user_id,email,country_code\nu1,ann@example.com,DE\nu2,bob@example.org,FR,extra")
    con, report = _load(tmp_path)
    assert report.quarantined["users"] == {"malformed_line": 1}
    stored = con.execute("SELECT row_json FROM quarantine WHERE reason = 'malformed_line'").fetchall()
    assert json.loads(stored[0][0])["line"] == 3
    assert "bob@example.org" not in str(stored) and "FR" not in str(stored)


def test_ids_are_canonical_in_every_table_whatever_the_column_types(tmp_path):
    """Float ids in Parquet (52.0), integer ids and padded text ids name the same user everywhere."""
    pd.DataFrame(
        {"user_id": [52.0, 53.0, 7.0], "item_id": [1.0, 2.0, 1.0], "occurred_at": ["2024-01-01"] * 3}
    ).to_parquet(tmp_path / "interactions.parquet")
    pd.DataFrame({"user_id": [52, 53, 7], "country_code": ["DE", "FR", "IT"]}).to_parquet(tmp_path / "users.parquet")
    _write(tmp_path / "items.csv", "item_id,category\n\t1\u00a0,a\n 2.000 ,b")
    _write(tmp_path / "settings.csv", "user_id,personalization_enabled\n\u300052\t,false\n007,false")
    con, _ = _load(tmp_path)
    ids = {
        t: sorted(r[0] for r in con.execute(f"SELECT DISTINCT user_id FROM raw_{t}").fetchall())
        for t in ("interactions", "users", "settings")
    }
    assert ids == {"interactions": ["52", "53", "7"], "users": ["52", "53", "7"], "settings": ["007", "52"]}
    assert sorted(con.execute("SELECT item_id FROM raw_items").fetchall()) == [("1",), ("2",)]
    assert con.execute("SELECT personalization_enabled FROM raw_settings WHERE user_id = '52'").fetchall() == [
        (False,)
    ]  # the opt-out matches the float-id events; leading zeros are kept, so '007' is not '7'


def test_over_long_ids_are_quarantined_cut_short(tmp_path):
    huge = "u" * 1_000_000
    _write(
        tmp_path / "interactions.csv",
        f"user_id,item_id,occurred_at\n{huge},i1,2024-01-01\nu1,{'i' * 201},2024-01-01\nu2,i1,2024-01-01",
    )
    con, report = _load(tmp_path)
    assert report.quarantined["interactions"] == {"too_long_item_id": 1, "too_long_user_id": 1}
    assert con.execute("SELECT user_id FROM raw_interactions").fetchall() == [("u2",)]
    stored = con.execute("SELECT max(length(row_json)) FROM quarantine").fetchall()[0][0]
    assert stored < 2_000  # the evidence keeps 1,000 characters of each value


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("on", True), ("OFF", False), (" Yes ", True), ("n", False), ("1.0", True), ("0", False)],
)
def test_documented_consent_spellings_are_read(tmp_path, value, enabled):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01")
    _write(tmp_path / "settings.csv", f"user_id,personalization_enabled\nu1,{value}")
    con, report = _load(tmp_path)
    assert con.execute("SELECT personalization_enabled, fail_closed FROM raw_settings").fetchall() == [(enabled, None)]
    assert report.consent_fail_closed == {}


@pytest.mark.parametrize("value", ["", "2", "maybe", "enabled?", "tru"])
def test_unreadable_consent_opts_the_user_out(tmp_path, value):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01\nu2,i1,2024-01-01")
    _write(tmp_path / "settings.csv", f"user_id,personalization_enabled\nu1,{value}\nu2,true")
    con, report = _load(tmp_path)
    rows = con.execute(
        "SELECT user_id, personalization_enabled, data_sharing_consent, fail_closed FROM raw_settings ORDER BY 1"
    )
    assert rows.fetchall() == [("u1", False, False, "unreadable"), ("u2", True, None, None)]
    assert report.consent_fail_closed == {"unreadable": 1}
    assert report.quarantined["settings"] == {"unreadable_personalization_enabled": 1}  # kept as evidence


def test_unreadable_consent_beats_the_database_and_any_readable_row(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01")
    _write(
        tmp_path / "settings.csv",
        "user_id,personalization_enabled,data_sharing_consent,updated_at\n"
        "u1,true,true,2024-05-01\nu1,true,perhaps,2024-01-01",
    )
    database = _database_settings([("u1", True, True)])
    con, _ = _load(tmp_path, override=database)
    assert con.execute("SELECT personalization_enabled, fail_closed FROM raw_settings").fetchall() == [
        (False, "unreadable")
    ]


def test_rows_that_tie_for_latest_and_disagree_opt_the_user_out(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\n52,i1,2024-01-01\n9,i1,2024-01-01")
    _write(
        tmp_path / "settings.csv",
        "user_id,personalization_enabled,updated_at\n52,true,\n52.0,false,\n9,false,2024-01-01\n9,true,2024-02-01",
    )
    con, report = _load(tmp_path)
    assert con.execute(
        "SELECT user_id, personalization_enabled, fail_closed FROM raw_settings ORDER BY 1"
    ).fetchall() == [
        ("52", False, "conflicting"),  # '52' and '52.0' are one user who said both: opted out
        ("9", True, None),  # a later row is a change of mind, not a conflict
    ]
    assert report.consent_fail_closed == {"conflicting": 1}


def test_database_rows_are_canonicalised_and_combined_fail_closed(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\n52,i1,2024-01-01")
    database = _database_settings([("52", True, None), (" 52.0", False, None)])
    con, _ = _load(tmp_path, override=database)
    assert con.execute("SELECT user_id, personalization_enabled FROM raw_settings").fetchall() == [("52", False)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user_id,item_id,occurred_at\n", "no data rows"),
        ("user_id,item_id,occurred_at\n,i1,2024-01-01\nu1,i1,someday\n", "every row was quarantined"),
    ],
)
def test_an_input_without_usable_interactions_stops_before_anything_changes(tmp_path, content, message):
    good = tmp_path / "good"
    good.mkdir()
    _write(good / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2024-01-01\nu2,i1,2024-01-02")
    con, _ = _load(good)
    before = warehouse_checksums(con)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "interactions.csv").write_text(content)
    with pytest.raises(InputError, match=message) as info:
        _load(bad, con=con)
    assert info.value.path == str(bad / "interactions.csv")
    assert warehouse_checksums(con) == before  # raw tables, quarantine and batch log as they were


def test_an_export_older_than_retention_says_so(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,occurred_at\nu1,i1,2018-09-24\nu2,i1,2017-01-01")
    options = IngestOptions(now=NOW, raw_retention=timedelta(days=730))
    with pytest.raises(InputError) as info:
        load_raw_tables(duckdb.connect(), tmp_path, {}, options)
    text = str(info.value)
    assert "all 2 events are older than the raw-event retention of 730 days" in text
    assert "newest event 2018-09-24" in text and "PERSONALIZATION_RAW_RETENTION_DAYS=0" in text


def test_a_file_not_in_the_configured_encoding_stops_the_run_with_the_byte_offset(tmp_path):
    text = "user_id,item_id,occurred_at,device_type\nu1,i1,2024-01-01,téléphone\nu2,i2,2024-01-01,tv\n"
    (tmp_path / "interactions.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError) as info:
        _load(tmp_path)
    offset = text.encode("latin-1").index("é".encode("latin-1"))
    assert f"not valid utf-8 at byte {offset}" in str(info.value)
    assert "interactions.csv" in str(info.value) and "PERSONALIZATION_INPUT_ENCODING" in str(info.value)
    con = duckdb.connect()
    options = IngestOptions(now=NOW, encoding="latin-1")
    load_raw_tables(con, tmp_path, {}, options)
    assert con.execute("SELECT device_type FROM raw_interactions ORDER BY user_id").fetchall() == [
        ("téléphone",),
        ("tv",),
    ]
