"""The evaluation split of the run's signals, shared by the evaluation and the re-ranker's training."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..recsys.splits import stratified_random_split, temporal_holdout


def split_for_evaluation(frame: pd.DataFrame, settings: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The configured split: per-user temporal holdout (default) or per-user stratified random."""
    if settings.eval_split == "random":
        return stratified_random_split(frame, fraction=settings.holdout_fraction, seed=settings.seed)
    return temporal_holdout(frame, fraction=settings.holdout_fraction)
