"""Seeded random search over a grid of settings, within a trial count and a time budget.

The first trial is always the current configuration, so a search can only keep it or find one
that validates better. Later trials draw one value per dimension from the grid (a value that is
a mapping sets several settings that go together) with a seeded
generator (a configuration already tried is drawn again, up to a bound), so the same seed, grid
and trial count give the same trials and the same choice whatever the machine; the time budget
only cuts the sequence short: a trial starts only while the time spent plus the longest trial so
far fits the budget.

A score may be per user (a Series indexed by user): the trial's score is then its mean, and
:meth:`SearchResult.chosen` keeps the configuration in force unless the best trial's per-user
gain over it is significant after a Bonferroni correction for the number of trials it was
picked from: the best of many noisy trials is better than the rest partly by luck (the
winner's curse), and a change must earn its place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

Config = dict[str, Any]


@dataclass(frozen=True)
class Trial:
    number: int
    config: Config
    score: float
    seconds: float
    per_user: pd.Series | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SearchResult:
    trials: list[Trial]
    stopped_by: str
    """``trials`` (the count was reached), ``budget`` (the time was) or ``grid`` (nothing left to try)."""

    @property
    def best(self) -> Trial:
        """The best-scoring trial; ties go to the earlier one (the current configuration first)."""
        return max(self.trials, key=lambda t: (t.score, -t.number))

    def chosen(self, significance: float) -> Trial:
        """The best trial when a one-sided paired z-test of its per-user gain over the first (the
        configuration in force, over the users both scored) has a p-value below
        ``significance / (trials - 1)``, else the first; the best trial when the scores are not
        per user."""
        best, first = self.best, self.trials[0]
        if best is first or best.per_user is None or first.per_user is None:
            return best
        diff = best.per_user.sub(first.per_user).dropna().to_numpy(np.float64)
        noise = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        gain = best.score - first.score
        p_value = float(norm.sf(gain / noise)) if noise > 0 else float(gain <= 0)
        return best if p_value < significance / (len(self.trials) - 1) else first


def draw_configs(
    grid: Mapping[str, Sequence[Any]], current: Config, seed: int, max_trials: int, max_draws: int = 1000
) -> list[Config]:
    """``current`` then up to ``max_trials - 1`` distinct seeded draws from ``grid``."""
    rng = np.random.default_rng(seed)
    configs = [dict(current)]
    seen = {json.dumps(current, sort_keys=True)}
    draws = 0
    while len(configs) < max_trials and draws < max_draws:
        draws += 1
        config = dict(current)
        for name, values in grid.items():
            value = values[int(rng.integers(len(values)))]
            config.update(value if isinstance(value, Mapping) else {name: value})
        key = json.dumps(config, sort_keys=True)
        if key not in seen:
            seen.add(key)
            configs.append(config)
    return configs


def dimension_fields(name: str, values: Sequence[Any]) -> set[str]:
    """The settings a grid dimension sets: its name, or the keys of its mapping values."""
    mappings = [v for v in values if isinstance(v, Mapping)]
    return {field for v in mappings for field in v} if mappings else {name}


def random_search(
    grid: Mapping[str, Sequence[Any]],
    current: Config,
    score: Callable[[Config], float | pd.Series],
    *,
    seed: int,
    max_trials: int,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Score the configurations of :func:`draw_configs` in order until the count, the grid or the
    time budget runs out (see the module docstring); the first one is always scored."""
    configs = draw_configs(grid, current, seed, max_trials)
    started = clock()
    trials: list[Trial] = []
    for number, config in enumerate(configs):
        spent = clock() - started
        longest = max((t.seconds for t in trials), default=0.0)
        if trials and spent + longest > budget_seconds:
            return SearchResult(trials, "budget")
        begin = clock()
        value = score(config)
        seconds = clock() - begin
        if isinstance(value, pd.Series):
            trials.append(Trial(number, config, float(value.mean()) if len(value) else 0.0, seconds, value))
        else:
            trials.append(Trial(number, config, float(value), seconds))
    return SearchResult(trials, "trials" if len(configs) == max_trials else "grid")
