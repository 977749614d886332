"""Regression gate: the rankings about to be published against the model serving now.

Champion/challenger over the evaluation history: the challenger is the model this run ranks
with (its NDCG@K in this run's evaluation), the champion the model of most rows in
``personalization_ranks`` (its latest NDCG@K in ``personalization_eval``). The gate fails when the
challenger is worse than the champion by more than ``tolerance`` (a share of the champion's
figure) and by more than :data:`NOISE_STDERRS` standard errors of the difference (the two
figures come from different evaluation samples: on a few hundred users NDCG moves by several
per cent from one night to the next without any change in quality). Nothing serving, no figure
for the champion, or the same version: it passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import psycopg

from ..sqlutil import scalar
from .tables import EVAL_HISTORY, USER_RANKINGS

METRIC = "ndcg"
STDERR = "ndcg_stderr"
GAIN_STDERR = "ndcg_gain_stderr"
"""Of the re-ranker: the standard error of its per-user NDCG gain over the best personal model."""
NOISE_STDERRS = 2.0


@dataclass(frozen=True)
class Figure:
    model_version: str
    ndcg: float
    stderr: float = 0.0
    gain_stderr: float | None = None


@dataclass(frozen=True)
class GateResult:
    passed: bool
    challenger: Figure | None
    champion: Figure | None
    tolerance: float
    reason: str


def decide(challenger: Figure | None, champion: Figure | None, tolerance: float) -> GateResult:
    """The gate's rule (see the module docstring)."""
    if champion is None:
        return GateResult(True, challenger, None, tolerance, "nothing with an evaluation is serving: first publish")
    if challenger is None:
        return GateResult(False, None, champion, tolerance, "the new rankings' model has no evaluation in this run")
    if challenger.model_version == champion.model_version:
        return GateResult(True, challenger, champion, tolerance, "the serving model is republished")
    noise = NOISE_STDERRS * (challenger.stderr**2 + champion.stderr**2) ** 0.5
    floor = min(champion.ndcg * (1 - tolerance), champion.ndcg - noise)
    passed = challenger.ndcg >= floor
    verdict = "within" if passed else "worse than"
    reason = (
        f"{challenger.model_version} NDCG@K {challenger.ndcg:.4f} is {verdict} the tolerance of "
        f"{champion.model_version} {champion.ndcg:.4f} (floor {floor:.4f}: tolerance {tolerance:.0%}, "
        f"noise {noise:.4f})"
    )
    return GateResult(passed, challenger, champion, tolerance, reason)


def challenger_figure(con: duckdb.DuckDBPyConnection, k: int) -> Figure | None:
    """The model of most ``user_rankings`` rows and its NDCG@``k`` in the latest evaluation of it."""
    version = scalar(con, f"SELECT model_version FROM {USER_RANKINGS} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
    if version is None:
        return None
    rows = dict(
        con.execute(
            f"SELECT metric, value FROM {EVAL_HISTORY} WHERE model_version = ? AND k = ? AND metric IN (?, ?) "
            "QUALIFY row_number() OVER (PARTITION BY metric ORDER BY computed_at DESC) = 1",
            [version, k, METRIC, STDERR],
        ).fetchall()
    )
    return Figure(version, float(rows[METRIC]), float(rows.get(STDERR, 0.0))) if METRIC in rows else None


def champion_figure(url: str, k: int) -> Figure | None:
    """The model serving most users now and its latest published NDCG@``k``; None before a first publish."""
    with psycopg.connect(url) as conn:
        present = conn.execute(
            "SELECT to_regclass('personalization_ranks') IS NOT NULL "
            "AND to_regclass('personalization_eval') IS NOT NULL"
        ).fetchone()
        if not present or not present[0]:
            return None
        figure = (
            "(SELECT value FROM personalization_eval e WHERE e.model_version = s.model_version AND e.metric = %s "
            "AND e.k = %s ORDER BY computed_at DESC LIMIT 1)"
        )
        row = conn.execute(
            "WITH serving AS (SELECT model_version FROM personalization_ranks GROUP BY 1 ORDER BY count(*) DESC, 1 "
            f"LIMIT 1) SELECT s.model_version, {figure}, {figure} FROM serving s",
            [METRIC, k, STDERR, k],
        ).fetchone()
    if row is None or row[1] is None:
        return None
    return Figure(str(row[0]), float(row[1]), float(row[2] or 0.0))
