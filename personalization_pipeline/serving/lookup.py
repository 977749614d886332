"""Read queries behind the lookup API (async, parametrised, serving tables only), each run as the
verified caller in one round trip (:func:`api_access.caller_query`, or a function that names the
caller itself)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from personalization_pipeline.serving.api_access import caller_query
from personalization_pipeline.serving.auth import Principal
from personalization_pipeline.serving.schema import EVAL, GLOBAL_RANKS, RANK_EXPLANATION, SERVED_RANKING

_RANKING_SQL = f"SELECT {SERVED_RANKING}(%(caller)s, %(role)s, %(user_id)s, %(scope)s, %(limit)s)"

_LATEST_EVAL_SQL = f"""
WITH latest AS (
    SELECT run_id, max(computed_at) AS computed_at
    FROM {EVAL} GROUP BY run_id
    ORDER BY max(computed_at) DESC, run_id DESC
    LIMIT 1)
SELECT e.run_id, l.computed_at, e.model_name, e.metric, e.k, e.value
FROM {EVAL} AS e JOIN latest AS l USING (run_id)
ORDER BY e.model_name, e.metric, e.k
"""

_EXPLANATION_SQL = f"""
SELECT model_version, generated_at, valid_until, rank, item_id, score, tags
FROM {RANK_EXPLANATION}(%(user_id)s, %(scope)s, %(limit)s)
"""


@dataclass(frozen=True)
class EvalRun:
    """The metrics of one offline evaluation run."""

    run_id: str
    computed_at: datetime
    metrics: list[dict[str, Any]]


@dataclass(frozen=True)
class Explanation:
    """A user's served personalized ranking, each item with the rationale tags that placed it."""

    user_id: str
    scope: str
    model_version: str
    generated_at: datetime
    valid_until: datetime
    items: list[dict[str, Any]]


async def fetch_ranking_json(
    pool: AsyncConnectionPool, caller: Principal, user_id: str, scope: str, limit: int
) -> str | None:
    """The response body (JSON text, :class:`api_models.RankingBody`) of the user's current ranking
    unless expired or opted out, else of the scope's global one; ``None`` when the scope has no
    global ranking. Items are cut to ``limit`` and to id, score and confidence; times are UTC.

    One statement: :data:`schema.SERVED_RANKING` names the caller for row-level security, slices
    the stored items and writes the whole document, so a read parses and validates nothing in
    Python. Global rankings hold no personal data and are replaced by every publish; they are
    served whatever their ``valid_until``, so a late or blocked nightly run degrades users to the
    fallback instead of failing every read."""
    params = {"caller": caller.user_id, "role": caller.role, "user_id": user_id, "scope": scope, "limit": limit}
    rows = await caller_query(pool, None, _RANKING_SQL, params)
    return None if rows[0][0] is None else str(rows[0][0])


async def fetch_explanation(
    pool: AsyncConnectionPool, caller: Principal, user_id: str, scope: str, limit: int
) -> Explanation | None:
    """The first ``limit`` items of the user's served personalized ranking with their rationale tags
    (admin callers only: the database refuses anyone else); ``None`` when the user has no such
    ranking (none published, expired or opted out)."""
    params = {"user_id": user_id, "scope": scope, "limit": limit}
    rows = await caller_query(pool, caller, _EXPLANATION_SQL, params, dict_row)
    if not rows:
        return None
    items = [{key: row[key] for key in ("rank", "item_id", "score", "tags")} for row in rows]
    first = rows[0]
    return Explanation(
        user_id=user_id,
        scope=scope,
        model_version=first["model_version"],
        generated_at=first["generated_at"],
        valid_until=first["valid_until"],
        items=items,
    )


async def fetch_latest_eval(pool: AsyncConnectionPool, caller: Principal) -> EvalRun | None:
    """Metrics of the most recently computed evaluation run, or ``None`` when there is none."""
    rows = await caller_query(pool, caller, _LATEST_EVAL_SQL, row_factory=dict_row)
    if not rows:
        return None
    metrics = [{key: row[key] for key in ("model_name", "metric", "k", "value")} for row in rows]
    return EvalRun(run_id=rows[0]["run_id"], computed_at=rows[0]["computed_at"], metrics=metrics)


async def anything_published(pool: AsyncConnectionPool, timeout: float | None = None) -> bool:
    """Whether a publish has happened (every publish writes the global rankings)."""
    rows = await caller_query(pool, None, f"SELECT EXISTS (SELECT 1 FROM {GLOBAL_RANKS})", None, tuple_row, timeout)
    return bool(rows and rows[0][0])
