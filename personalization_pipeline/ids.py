"""Canonical ids: one rule for every table, token and request, in Python and in DuckDB SQL.

Ids are strings. Surrounding whitespace (every character Python's ``str.isspace`` knows:
tabs, no-break and other Unicode spaces) is trimmed; an integral number written as a float
becomes its integer text (``52.0`` and ``52.000`` -> ``52``, so a float64 Parquet column
matches integer ids elsewhere); everything else, leading zeros and case included, is kept.
An id longer than :data:`MAX_ID_LENGTH` characters is not an id: ingest quarantines the row
and the endpoint rejects it.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 200
STRIP_CHARS = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
_INTEGRAL_FLOAT = r"^([+-]?[0-9]+)\.0*$"
_INTEGRAL_FLOAT_RE = re.compile(_INTEGRAL_FLOAT)


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_STRIP_CLASS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in STRIP_CHARS) + "]"
_EDGE_SPACE = f"^{_STRIP_CLASS}|{_STRIP_CLASS}$"
CLEAN_TEXT_MACRO = (
    "CREATE OR REPLACE TEMP MACRO clean_text(x) AS nullif("
    f"CASE WHEN regexp_matches(x, {_sql_literal(_EDGE_SPACE)}) THEN trim(x, {_sql_literal(STRIP_CHARS)}) "
    "ELSE x END, '')"
)
"""DuckDB: ``x`` trimmed of surrounding whitespace, NULL when nothing is left. The trim by a
character set is slow, so it only runs on values that start or end with one (a regular expression
anchored at an edge)."""

CANONICAL_ID_MACRO = (
    f"CREATE OR REPLACE TEMP MACRO canonical_id(x) AS "
    f"regexp_replace(clean_text(x), {_sql_literal(_INTEGRAL_FLOAT)}, '\\1')"
)
"""DuckDB: :func:`canonical_id` as SQL (needs :data:`CLEAN_TEXT_MACRO`)."""


def canonical_id(value: object) -> str | None:
    """The canonical text of an id (see the module docstring); ``None`` for a missing or blank one."""
    if value is None:
        return None
    text = (repr(value) if isinstance(value, float) else str(value)).strip(STRIP_CHARS)
    if not text:
        return None
    return _INTEGRAL_FLOAT_RE.sub(r"\1", text)
