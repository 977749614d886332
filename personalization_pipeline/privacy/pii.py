"""PII detection: patterns (e-mail, phone, IPv4, IPv6) and the raw PII values of the users file.

Two detectors, both applied to *normalised whole string values* (see :func:`normalise`):

* **Patterns** find personal data embedded anywhere in a text: e-mail addresses, phone
  numbers (international ``+CC ...``/``00CC ...``, North American ``(202) 555-0143``,
  and national trunk-prefixed numbers with separators such as ``020 7946 0958``), IPv4 and
  IPv6 addresses. They are written not to fire on plain integers, ISO dates and
  timestamps, ids such as ``u0000123``/``i000123``, or decimal scores. A run of digits
  without separators is only a phone number with a leading ``+``: long plain integers
  are ids and counts too often.
* **Raw PII values** are the values of every column of the raw users file that the input
  contract drops (e-mail, name, birth date, whatever the column is called), read from the
  file at check time and never written anywhere. A published string is a hit when it
  *equals* one of them after normalisation; only strings are compared (text values, JSON
  keys and JSON string values), never numbers, so a count of 34 never matches an age
  "34". Substrings are not compared: an embedded e-mail or phone number is the patterns'
  job, and a name inside a longer title is not distinguishable from ordinary words.
  A raw value only counts as identifying (see :func:`is_identifying`) when it is at
  least 4 characters long, is not a short number (fewer than 7 digits: ages, postal
  codes, house numbers look like counts, hours and offsets), is not one of the
  generalisation tokens the pipeline itself publishes (``other``, ``unknown``), is not a
  user id (ids are published by design), and is held by fewer than ``k`` rows of its
  column: a value shared by a crowd (a gender, an occupation) is an attribute that
  identifies nobody, the same rule as k-anonymity.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import duckdb

from ..ingest.contract import USERS
from ..ingest.loader import find_source
from ..ingest.mapping import TableMapping, load_mapping
from ..sqlutil import quote_ident
from .k_anonymity import OTHER, UNKNOWN

_EMAIL = (
    r"(?i)(?<![\w.%+-])[a-z0-9][a-z0-9._%+-]*@"
    r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,24}(?![\w-])"
)
# +CC or 00CC, then 7-14 more digits with at most two separators between digits; the whole run
# of digits and separators must hold 8-15 digits (E.164 allows at most 15).
_PHONE_INTERNATIONAL = r"(?<![\w+])(?:\+|00(?=[1-9]\d{0,2}[ .\-/(]))[1-9](?:[ .\-/()]{0,2}\d){7,14}(?![ .\-/()]{0,2}\d)"
_PHONE_NORTH_AMERICAN = r"(?<![\w.+\-/:])(?:\(\d{3}\) ?|\d{3}[ .\-])\d{3}[ .\-]\d{4}(?![\w\-/]|\.\d)"
# Trunk prefix 0, groups split by one consistent separator, 9-12 digits in the whole run
# (so dd.mm.yyyy dates, with 8 digits, and "dd.mm.yyyy hh:mm" never qualify). One alternative
# per separator: no capturing group, which pandas' str.contains (used by GX) warns about.
_PHONE_NATIONAL = (
    r"(?<![\w.+\-/:])(?=(?:[ .\-/]?\d){9,12}(?![ .\-/]?\d))0[1-9]\d{0,4}"
    + "(?:"
    + "|".join(rf"(?:{re.escape(sep)}\d{{2,8}}){{1,5}}" for sep in " .-/")
    + r")(?![\w]|[ .\-/:]\d)"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)"
_H = r"[0-9a-f]{1,4}"
_IPV6_FORMS = (
    rf"(?:{_H}:){{7}}{_H}",
    rf"(?:{_H}:){{1,7}}:",
    *(rf"(?:{_H}:){{1,{6 - i}}}(?::{_H}){{1,{i + 1}}}" for i in range(6)),
    rf":(?::{_H}){{1,7}}",
)
_IPV6 = rf"(?i)(?<![\w:.])(?:{'|'.join(_IPV6_FORMS)})(?![\w:]|\.\d)"

PII_PATTERNS: dict[str, str] = {
    "email": _EMAIL,
    "phone": f"(?:{_PHONE_INTERNATIONAL})|(?:{_PHONE_NORTH_AMERICAN})|(?:{_PHONE_NATIONAL})",
    "ipv4": _IPV4,
    "ipv6": _IPV6,
}
"""PII kind -> regular expression (Python ``re`` syntax, flags inline), searched anywhere in a value."""

_COMPILED = {kind: re.compile(pattern) for kind, pattern in PII_PATTERNS.items()}
_WHITESPACE = re.compile(r"\s+")
_NUMBER_LIKE = re.compile(r"[\d\s.,:/+()\-]+")

MIN_IDENTIFYING_LENGTH = 4
MIN_IDENTIFYING_DIGITS = 7
PUBLISHED_TOKENS = frozenset({OTHER, UNKNOWN})


def normalise(value: str) -> str:
    """Compatibility-normalised (NFKC), case-folded, whitespace collapsed and trimmed.

    NFKC also folds look-alikes such as full-width ``＠`` to ``@`` before the patterns run.
    """
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", value)).casefold().strip()


def pii_kinds(text: str) -> list[str]:
    """The PII kinds (keys of :data:`PII_PATTERNS`) found anywhere in ``text`` (normalised first)."""
    text = normalise(text)
    return [kind for kind, pattern in _COMPILED.items() if pattern.search(text)]


def mask(value: str) -> str:
    """A value safe to show in a report: ``a***@example.com`` for an e-mail, else ``o***``."""
    value = normalise(value)
    if _COMPILED["email"].fullmatch(value):
        local, domain = value.rsplit("@", 1)
        return f"{local[0]}***@{domain}"
    return f"{value[0]}***" if len(value) > 2 else "***"


def is_identifying(value: str, holders: int, k: int) -> bool:
    """Whether a normalised raw value held by ``holders`` rows of its column may identify a person."""
    if len(value) < MIN_IDENTIFYING_LENGTH or value in PUBLISHED_TOKENS or holders >= k:
        return False
    return not (_NUMBER_LIKE.fullmatch(value) and sum(c.isdigit() for c in value) < MIN_IDENTIFYING_DIGITS)


def identifying_values(
    columns: Iterable[Iterable[str | None]], user_ids: Iterable[str | None], k: int
) -> frozenset[str]:
    """Normalised identifying values of the given raw columns (see :func:`is_identifying`)."""
    ids = {normalise(v) for v in user_ids if v is not None}
    found: set[str] = set()
    for values in columns:
        holders = Counter(normalise(v) for v in values if v is not None)
        found.update(v for v, n in holders.items() if v not in ids and is_identifying(v, n, k))
    return frozenset(found)


@dataclass(frozen=True)
class RawPii:
    """The identifying values of the raw users file's dropped columns (in memory only)."""

    source: Path | None
    columns: tuple[str, ...]
    values: frozenset[str] = field(repr=False)


def dropped_user_columns(present: Iterable[str], mapping: TableMapping) -> tuple[str, ...]:
    """Columns of a users file that the contract allowlist drops, after the column mapping."""
    return tuple(c for c in present if mapping.columns.get(c, c) not in USERS.columns)


def collect_raw_pii(data_dir: Path, mapping: dict[str, TableMapping], k: int) -> RawPii:
    """Read the raw users file (found as ingest finds it) and collect its identifying dropped values."""
    table_mapping = mapping.get(USERS.name, TableMapping())
    path = find_source(Path(data_dir), USERS, table_mapping)
    if path is None:
        return RawPii(None, (), frozenset())
    with duckdb.connect() as con:
        if path.suffix == ".parquet":
            relation = con.read_parquet(str(path))
        else:
            relation = con.sql(
                "SELECT * FROM read_csv(?, header=true, all_varchar=true, ignore_errors=true)", params=[str(path)]
            )
        dropped = dropped_user_columns(relation.columns, table_mapping)
        if not dropped:
            return RawPii(path, (), frozenset())
        id_column = next((c for c in relation.columns if table_mapping.columns.get(c, c) == "user_id"), None)
        wanted = [*dropped, *([id_column] if id_column else [])]
        rows = relation.project(", ".join(f"CAST({quote_ident(c)} AS VARCHAR)" for c in wanted)).fetchall()
    columns = list(zip(*rows, strict=True)) or [()] * len(wanted)
    user_ids = columns[len(dropped)] if id_column else ()
    return RawPii(path, dropped, identifying_values(columns[: len(dropped)], user_ids, k))


def raw_pii_of_input(data_dir: Path, mapping_path: Path | None, k: int) -> RawPii:
    """:func:`collect_raw_pii` for an input directory, read once per version of its files (the
    screening and the checks of a run share one read)."""
    files = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(Path(data_dir).glob("*")))
    return _read_raw_pii(str(data_dir), str(mapping_path) if mapping_path else None, k, files)


@lru_cache(maxsize=1)
def _read_raw_pii(data_dir: str, mapping_path: str | None, k: int, files: tuple) -> RawPii:
    """``files`` (names, mtimes, sizes) is part of the cache key only: a changed input is re-read."""
    return collect_raw_pii(Path(data_dir), load_mapping(Path(mapping_path) if mapping_path else None), k)


ALLOW_SETTING = "PERSONALIZATION_PII_ALLOW"
ALLOW_FILE_SETTING = "PERSONALIZATION_PII_ALLOW_FILE"


def operator_allowlist(values: Iterable[str], path: Path | None) -> frozenset[str]:
    """Values an operator confirmed are not personal data, normalised (:func:`normalise`): the
    configured list plus one value per line of ``path`` (blank lines and ``#`` comments skipped)."""
    allowed = [*values]
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"{ALLOW_FILE_SETTING}: cannot read {path}: {exc}") from exc
        allowed += [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return frozenset(normalise(v) for v in allowed if normalise(v))
