"""Retention cleanup of the serving tables (one transaction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from personalization_pipeline.serving import schema

_STATEMENTS: dict[str, str] = {
    "ranks": f"DELETE FROM {schema.RANKS} WHERE valid_until <= %(now)s",
    "rationale": f"""DELETE FROM {schema.RATIONALE} AS x WHERE NOT EXISTS (
        SELECT 1 FROM {schema.RANKS} AS r WHERE r.user_id = x.user_id AND r.scope = x.scope)""",
    "features": f"DELETE FROM {schema.FEATURES} WHERE computed_at < %(features_before)s",
    "evals": f"DELETE FROM {schema.EVAL} WHERE computed_at < %(evals_before)s",
    "experiment_exposures": f"""DELETE FROM {schema.EXPERIMENT_EXPOSURES}
        WHERE last_served_at < %(evals_before)s
           OR user_id IN (SELECT user_id FROM {schema.SETTINGS} WHERE NOT personalization_enabled)""",
    "experiment_assignments": f"""DELETE FROM {schema.EXPERIMENT_ASSIGNMENTS}
        WHERE user_id IN (SELECT user_id FROM {schema.SETTINGS} WHERE NOT personalization_enabled)""",
}


def purge_expired(
    url: str,
    feature_retention: timedelta | None = timedelta(days=30),
    eval_retention: timedelta | None = timedelta(days=365),
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete expired rankings (and their rationale), old features, old evaluation rows, exposure
    history last served longer ago than the evaluation's retention, and opted-out users'
    experiment assignments and exposures.

    Global rankings are kept: they hold no personal data, each publish replaces them, and
    they are the fallback when personal rankings have expired.
    A retention of ``None`` keeps that table's rows. Returns the number of rows deleted
    per table name used in :class:`publish.Snapshot`.
    """
    now = now or datetime.now(UTC)
    keep_all = datetime.min.replace(tzinfo=UTC)
    params = {
        "now": now,
        "features_before": now - feature_retention if feature_retention else keep_all,
        "evals_before": now - eval_retention if eval_retention else keep_all,
    }
    deleted: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        schema.ensure_schema(conn)
        with conn.transaction(), conn.cursor() as cur:
            for name, statement in _STATEMENTS.items():
                cur.execute(statement, params)
                deleted[name] = cur.rowcount
    return deleted
