"""k-anonymity: categorical values shared by fewer than k users become 'other'."""

OTHER = "other"
UNKNOWN = "unknown"


def generalised(expression: str, k: int) -> str:
    """SQL for ``expression`` generalised over the query's rows (one row per user).

    NULL becomes 'unknown'; a value held by fewer than ``k`` rows becomes 'other'.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    value = f"coalesce({expression}, '{UNKNOWN}')"
    return f"CASE WHEN count(*) OVER (PARTITION BY {value}) >= {int(k)} THEN {value} ELSE '{OTHER}' END"
