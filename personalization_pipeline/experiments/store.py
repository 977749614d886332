"""Experiments in the serving database: definitions (created and ended by admins), the assignments
recorded the first time a user is assigned, and the users' exposure history.

The statements are shared by the command line and the pipeline (the owner login, synchronous) and
the admin routes (the API role, asynchronous, where row-level security admits admin callers only).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.rows import dict_row

from ..serving.publish import copy_arrow
from ..serving.schema import (
    EXPERIMENT_ASSIGNMENTS,
    EXPERIMENT_EXPOSURES,
    EXPERIMENT_RESULTS,
    EXPERIMENTS,
    RANKS,
    SETTINGS,
    ensure_schema,
)
from .definition import Experiment, ExperimentSpec

_COLUMNS = (
    "name",
    "description",
    "hypothesis",
    "variants",
    "success_metric",
    "min_sample_size",
    "min_lift",
    "starts_at",
    "ends_at",
    "active",
    "salt",
    "created_at",
    "ended_at",
)
_RETURNING = f"RETURNING {', '.join(_COLUMNS)}"
INSERT_SQL = f"""INSERT INTO {EXPERIMENTS}
    (name, description, hypothesis, variants, success_metric, min_sample_size, min_lift, starts_at, ends_at, salt)
VALUES (%(name)s, %(description)s, %(hypothesis)s, %(variants)s, %(success_metric)s, %(min_sample_size)s,
        %(min_lift)s, coalesce(%(starts_at)s, now()), %(ends_at)s, %(salt)s)
{_RETURNING}"""
END_SQL = f"""UPDATE {EXPERIMENTS}
SET active = false, ended_at = now(), ends_at = least(coalesce(ends_at, now()), now())
WHERE name = %(name)s AND active {_RETURNING}"""
SELECT_SQL = f"SELECT {', '.join(_COLUMNS)} FROM {EXPERIMENTS}"
RESULTS_SQL = f"SELECT * FROM {EXPERIMENT_RESULTS} WHERE name = %(name)s ORDER BY variant <> 'control', variant"
_OPTED_OUT = f"SELECT user_id FROM {SETTINGS} WHERE NOT personalization_enabled"
ONE_ACTIVE_INDEX = "personalization_experiments_one_active_idx"


class ExperimentConflict(ValueError):
    """The experiment cannot be created: the name is taken, or another experiment is active."""


def insert_params(spec: ExperimentSpec, seed: int) -> dict[str, Any]:
    """The parameters of :data:`INSERT_SQL` for ``spec``; the assignment salt is derived from the
    settings' ``seed`` and the name (names are never reused), so a run is reproducible."""
    fields = spec.model_dump(mode="json")
    salt = hashlib.sha256(f"{seed}:{spec.name}".encode()).hexdigest()[:16]
    return {**fields, "variants": json.dumps(fields["variants"]), "salt": salt}


def from_row(row: dict[str, Any]) -> Experiment:
    return Experiment.model_validate(row)


def conflict(exc: psycopg.errors.UniqueViolation, name: str) -> ExperimentConflict:
    """What a unique violation of :data:`INSERT_SQL` means, for the admin."""
    if exc.diag.constraint_name == ONE_ACTIVE_INDEX:
        return ExperimentConflict("another experiment is active: end it before starting a new one")
    return ExperimentConflict(f"an experiment named {name!r} exists already")


def create(url: str, spec: ExperimentSpec, seed: int) -> Experiment:
    """Store ``spec`` as a new active experiment. Raises :class:`ExperimentConflict`."""
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        try:
            row = conn.cursor(row_factory=dict_row).execute(INSERT_SQL, insert_params(spec, seed)).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise conflict(exc, spec.name) from None
    assert row is not None
    return from_row(row)


def end(url: str, name: str) -> Experiment | None:
    """End ``name`` now (its users get the default ranking from the next publish); ``None`` when no
    active experiment has that name."""
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        row = conn.cursor(row_factory=dict_row).execute(END_SQL, {"name": name}).fetchone()
    return from_row(row) if row is not None else None


def list_all(url: str) -> list[Experiment]:
    """Every experiment, newest first."""
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        rows = conn.cursor(row_factory=dict_row).execute(SELECT_SQL + " ORDER BY created_at DESC, name").fetchall()
    return [from_row(row) for row in rows]


def running(url: str, now: datetime | None = None) -> Experiment | None:
    """The experiment running at ``now`` (at most one is active), if any."""
    found = [e for e in list_all(url) if e.running(now or datetime.now(UTC))]
    return found[0] if found else None


def record_assignments(url: str, name: str, assigned: pd.DataFrame) -> pd.DataFrame:
    """Record the ``assigned`` (user_id, variant) of experiment ``name`` for users who have no
    recorded assignment yet, skipping anyone opted out in the serving database; return the recorded
    (user_id, variant) of every user of ``assigned`` not opted out, ordered by user id (a recorded
    assignment is never changed)."""
    with psycopg.connect(url) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE assigned (user_id text, variant text) ON COMMIT DROP")
        copy_arrow(cur, "assigned", pa.Table.from_pandas(assigned[["user_id", "variant"]], preserve_index=False))
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (user_id, name, variant) SELECT user_id, %s, variant FROM assigned "
                f"WHERE user_id NOT IN ({_OPTED_OUT}) ON CONFLICT (user_id, name) DO NOTHING"
            ).format(sql.Identifier(EXPERIMENT_ASSIGNMENTS)),
            (name,),
        )
        rows = cur.execute(
            sql.SQL(
                "SELECT r.user_id, r.variant FROM {} AS r JOIN assigned USING (user_id) "
                f"WHERE r.name = %s AND r.user_id NOT IN ({_OPTED_OUT}) ORDER BY r.user_id"
            ).format(sql.Identifier(EXPERIMENT_ASSIGNMENTS)),
            (name,),
        ).fetchall()
    return pd.DataFrame(rows, columns=["user_id", "variant"], dtype=object)


def read_exposures(url: str) -> pd.DataFrame:
    """The exposure history of every experiment (one row per experiment and user)."""
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        cur = conn.cursor(row_factory=dict_row)
        rows = cur.execute(
            f"SELECT name AS experiment, user_id, variant, first_served_at, last_served_at, last_valid_until, "
            f"publishes FROM {EXPERIMENT_EXPOSURES} WHERE user_id NOT IN ({_OPTED_OUT}) ORDER BY name, user_id"
        ).fetchall()
    columns = ["experiment", "user_id", "variant", "first_served_at", "last_served_at", "last_valid_until", "publishes"]
    return pd.DataFrame(rows, columns=columns)


RESULT_COLUMNS = (
    "name",
    "variant",
    "ranking",
    "sample_size",
    "acceptance_rate",
    "completion_rate",
    "engagement_rate",
    "dismissal_rate",
    "metric",
    "lift",
    "lift_low",
    "lift_high",
    "p_value",
    "verdict",
    "computed_at",
)


def publish_results(url: str, results: pd.DataFrame) -> int:
    """Replace the published results of every experiment in ``results`` (:data:`RESULT_COLUMNS`) in
    one transaction; the rows written."""
    names = sorted(set(results["name"]))
    table = pa.Table.from_pandas(results[list(RESULT_COLUMNS)], preserve_index=False)
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            cur.execute(f"DELETE FROM {EXPERIMENT_RESULTS} WHERE name = ANY(%s)", (names,))
            copy_arrow(cur, EXPERIMENT_RESULTS, table)
    return len(results)


def read_results(url: str, name: str) -> pd.DataFrame:
    """The published results of experiment ``name`` (control first)."""
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        rows = conn.cursor(row_factory=dict_row).execute(RESULTS_SQL, {"name": name}).fetchall()
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def served_lists(url: str, name: str, top: int = 10) -> pd.DataFrame:
    """Per user served in experiment ``name`` now: variant, when the list was generated, and the
    first ``top`` item ids of each of the user's lists (user_id, variant, generated_at, items)."""
    with psycopg.connect(url) as conn:
        ensure_schema(conn)
        rows = conn.execute(
            "SELECT user_id, min(variant), min(generated_at), jsonb_agg(entry ->> 'id' ORDER BY scope, position) "
            f"FROM {RANKS}, jsonb_array_elements(items) WITH ORDINALITY AS listed(entry, position) "
            "WHERE experiment = %s AND position <= %s GROUP BY user_id ORDER BY user_id",
            (name, top),
        ).fetchall()
    return pd.DataFrame(rows, columns=["user_id", "variant", "generated_at", "items"])
