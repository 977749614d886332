"""k-anonymity for categorical features: rare values become 'other', and 'other' is never rare.

Per column: a value held by fewer than k users is replaced by 'other' (NULL counts as the
value 'unknown'). If that leaves an 'other' group that is not empty but still smaller than
k, the rarest kept values join it (ties by value) until it reaches k or nothing is kept,
so no group of fewer than k users remains in the column.
"""

from __future__ import annotations

OTHER = "other"
UNKNOWN = "unknown"


def kept_values(counts: dict[str, int], k: int) -> set[str]:
    """The values that stay as they are, given users per value; every other value becomes 'other'."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ordered = sorted(counts.items(), key=lambda item: (item[1], item[0]))
    kept = [(value, n) for value, n in ordered if n >= k]
    other = sum(n for _, n in ordered if n < k)
    while 0 < other < k and kept:
        other += kept.pop(0)[1]
    return {value for value, _ in kept}


def with_unknown(expression: str) -> str:
    """SQL for ``expression`` with NULL shown as 'unknown'."""
    return f"coalesce(CAST({expression} AS VARCHAR), '{UNKNOWN}')"


def generalised_sql(expression: str, kept: set[str]) -> str:
    """SQL keeping ``expression`` when its value is in ``kept``, else 'other' (literals escaped)."""
    value = with_unknown(expression)
    if not kept:
        return f"'{OTHER}'"
    literals = ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(kept))
    return f"CASE WHEN {value} IN ({literals}) THEN {value} ELSE '{OTHER}' END"
