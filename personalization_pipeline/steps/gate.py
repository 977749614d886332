"""Regression gate: the rankings about to be published against the model serving now.

Champion/challenger over the evaluation history: the challenger is the model this run ranks
with (its NDCG@K in this run's evaluation), the champion the model of most rows in
``personalization_ranks`` (its latest NDCG@K in ``personalization_eval``). The gate fails when the
challenger is worse than the champion by more than ``tolerance`` (a share of the champion's
figure). Nothing serving, no figure for the champion, or the same version: it passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import psycopg

from ..sqlutil import scalar
from .tables import EVAL_HISTORY, USER_RANKINGS

METRIC = "ndcg"


@dataclass(frozen=True)
class Figure:
    model_version: str
    ndcg: float


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
    floor = champion.ndcg * (1 - tolerance)
    passed = challenger.ndcg >= floor
    verdict = "within" if passed else "worse than"
    reason = (
        f"{challenger.model_version} NDCG@K {challenger.ndcg:.4f} is {verdict} the tolerance of "
        f"{champion.model_version} {champion.ndcg:.4f} (floor {floor:.4f}, tolerance {tolerance:.0%})"
    )
    return GateResult(passed, challenger, champion, tolerance, reason)


def challenger_figure(con: duckdb.DuckDBPyConnection, k: int) -> Figure | None:
    """The model of most ``user_rankings`` rows and its NDCG@``k`` in the latest evaluation of it."""
    version = scalar(con, f"SELECT model_version FROM {USER_RANKINGS} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
    if version is None:
        return None
    row = con.execute(
        f"SELECT value FROM {EVAL_HISTORY} WHERE model_version = ? AND metric = ? AND k = ? "
        "ORDER BY computed_at DESC LIMIT 1",
        [version, METRIC, k],
    ).fetchone()
    return Figure(version, float(row[0])) if row else None


def champion_figure(url: str, k: int) -> Figure | None:
    """The model serving most users now and its latest published NDCG@``k``; None before a first publish."""
    with psycopg.connect(url) as conn:
        present = conn.execute(
            "SELECT to_regclass('personalization_ranks') IS NOT NULL "
            "AND to_regclass('personalization_eval') IS NOT NULL"
        ).fetchone()
        if not present or not present[0]:
            return None
        row = conn.execute(
            "WITH serving AS (SELECT model_version FROM personalization_ranks GROUP BY 1 ORDER BY count(*) DESC, 1 "
            "LIMIT 1) SELECT s.model_version, (SELECT value FROM personalization_eval e WHERE e.model_version = "
            "s.model_version AND e.metric = %s AND e.k = %s ORDER BY computed_at DESC LIMIT 1) FROM serving s",
            [METRIC, k],
        ).fetchone()
    if row is None or row[1] is None:
        return None
    return Figure(str(row[0]), float(row[1]))
