"""The one id rule, in Python and in DuckDB SQL, agrees on every case."""

from __future__ import annotations

import duckdb
import pytest

from personalization_pipeline.ids import CANONICAL_ID_MACRO, CLEAN_TEXT_MACRO, canonical_id

CASES = [
    ("52", "52"),
    ("52.0", "52"),
    ("52.000", "52"),
    ("-3.0", "-3"),
    ("007", "007"),  # leading zeros kept
    ("007.0", "007"),
    ("5.20", "5.20"),  # not integral: kept as written
    ("ABC", "ABC"),  # case kept
    ("\t 52 \u00a0\u2003\u3000", "52"),  # tabs and Unicode spaces trimmed
    ("a b", "a b"),  # inner spaces kept
    ("", None),
    ("\u00a0\t", None),
    ("\u0085x\u2028", "x"),  # next line and line separator are spaces too
    ("\u200bx", "\u200bx"),  # a zero-width space is not
    (" \u0301x", "\u0301x"),  # a combining mark after a leading space stays
    ("x\u000b", "x"),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_python_and_sql_agree(raw, expected):
    con = duckdb.connect()
    con.execute(CLEAN_TEXT_MACRO)
    con.execute(CANONICAL_ID_MACRO)
    assert canonical_id(raw) == expected
    assert con.execute("SELECT canonical_id(?)", [raw]).fetchall() == [(expected,)]


def test_numbers_take_their_float_text_first():
    assert canonical_id(52.0) == canonical_id(52) == "52"
    assert canonical_id(None) is None
